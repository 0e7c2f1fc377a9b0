"""The footage speed-ups keep what the serial road did: same frames, same decisions, bounded memory.

Functional properties only (speed lives in bench/swap_video.py): the background decoder, encoder and
swap pool hand back exactly what the caller's thread would have made, in order, with errors where
they belong, never run more than their queues ahead, and stop with the job; the lazy dlib detection
embeds exactly like a full analysis and only when a face is gated or re-checked. Real photos, real
H.264 clips, a real SQLite registry.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import video_fixtures as vf
from likeness.consent.gate import Involvement, check_consent
from likeness.consent.policy import add_years
from likeness.consent.registry import Registry
from likeness.errors import BadInput
from likeness.faces.detect_scale import DetectScale, misses
from likeness.faces.tracking import iou
from likeness.faces.types import LazyAnalyzer, has_embedding
from likeness.home import Home
from likeness.jobs.enrol import enrol_identity
from likeness.jobs.inputs import FirstScan, InputReader
from likeness.jobs.requests import EnrolRequest, VideoSwapRequest
from likeness.jobs.selection import SwapTransform
from likeness.jobs.tracks import FootageFrames
from likeness.media.background import SerialWorker, in_background, prefetch
from likeness.media.frames import ResumePoint
from likeness.media.image import load_image
from likeness.media.video import EncodeSettings, VideoEncoder, iter_frames, open_frames, probe_video
from likeness.progress import StageTimer
from likeness.swap.backends import load_swapper

FPS = 25
PURPOSE = "research"


# -- the thread helpers ---------------------------------------------------------------------------------


def test_prefetch_hands_out_the_same_items_and_never_runs_more_than_its_queue_ahead() -> None:
    made: list[int] = []

    def source():
        for i in range(40):
            made.append(i)
            yield i

    taken = []
    ahead = []
    for item in prefetch(source, 3):
        taken.append(item)
        time.sleep(0.002)  # a slow consumer: the producer fills the queue and waits
        ahead.append(len(made) - len(taken))
    assert taken == list(range(40))
    assert max(ahead) <= 3 + 1  # the queue, plus the item the producer holds while it waits
    assert max(ahead) >= 2  # it did run ahead


def test_prefetch_raises_after_the_good_items_and_stops_its_thread_when_the_consumer_stops() -> None:
    def failing():
        yield from range(5)
        raise ValueError("damaged at item 5")

    got = []
    with pytest.raises(ValueError, match="damaged at item 5"):
        for item in prefetch(failing, 2):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]

    closed = threading.Event()

    def endless():
        try:
            yield from itertools.count()
        finally:
            closed.set()

    before = {t.ident for t in threading.enumerate()}
    items = prefetch(endless, 2, name="endless")
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()  # type: ignore[attr-defined]
    assert closed.is_set()  # the source was closed in its own thread before close() returned
    assert {t.ident for t in threading.enumerate()} <= before


def test_serial_worker_runs_in_order_and_raises_a_failed_job_at_the_next_call() -> None:
    done: list[int] = []
    worker = SerialWorker(2)
    for i in range(10):
        worker.submit(lambda i=i: done.append(i))
    worker.join()
    assert done == list(range(10))

    worker = SerialWorker(2)
    ran: list[int] = []

    def job(i: int) -> None:
        if i == 3:
            raise OSError("No space left on device")
        ran.append(i)

    with pytest.raises(OSError, match="No space left"):
        for i in range(50):
            worker.submit(lambda i=i: job(i))
    worker.abandon()
    assert ran == [0, 1, 2]  # nothing after the failed job ran


def test_in_background_hands_over_the_value_or_the_error_and_never_leaves_its_thread() -> None:
    threads = threading.active_count()
    started = threading.Event()
    with in_background(lambda: (started.set(), threading.current_thread().name)[1], name="prep") as made:
        assert started.wait(5)
        assert made.result().startswith("prep")
    assert threading.active_count() == threads

    def fails() -> None:
        raise OSError("No space left on device")

    with in_background(fails, name="prep") as failed, pytest.raises(OSError, match="No space left"):
        failed.result()
    assert threading.active_count() == threads

    finished: list[bool] = []

    def slow() -> None:
        time.sleep(0.2)
        finished.append(True)

    with pytest.raises(ValueError, match="refused"), in_background(slow, name="prep"):
        raise ValueError("refused")  # the block fails while the call still runs: it is waited for
    assert finished == [True] and threading.active_count() == threads


# -- decoding and encoding in their own threads ------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    frames = list(vf.pan_frames(vf.load_rgb(faces_dir / vf.PERSON_A), count=50))
    return vf.write_clip(tmp_path_factory.mktemp("clip") / "pan.mp4", frames, fps=FPS)


def test_prefetched_decoding_gives_the_same_frames_and_the_same_damage_report(
    clip: Path, tmp_path: Path
) -> None:
    def read(path: Path, ahead: int) -> tuple[list[tuple[int, int, bytes]], str | None]:
        frames, error = [], None
        try:
            with open_frames(path, prefetch=ahead) as reader:
                for frame in reader:
                    frames.append((frame.index, frame.pts, frame.pixels.tobytes()))
        except BadInput as exc:
            error = exc.reason
        return frames, error

    assert read(clip, 4) == read(clip, 0)
    assert len(read(clip, 4)[0]) == 50
    vf.corrupt_packet(clip, tmp_path / "bad.mp4", 30)
    serial, threaded = read(tmp_path / "bad.mp4", 0), read(tmp_path / "bad.mp4", 4)
    assert serial[1] is not None and "corrupt video data at frame" in serial[1]
    assert threaded == serial

    # Stopping early stops the decoder thread before the file is closed.
    before = {t.ident for t in threading.enumerate()}
    with open_frames(clip, prefetch=4) as reader:
        first = next(iter(reader))
    assert first.index == 0
    assert {t.ident for t in threading.enumerate()} <= before


def test_background_encoding_writes_the_same_frames_and_checkpoints_in_the_callers_thread(
    clip: Path, tmp_path: Path
) -> None:
    # FFV1 is lossless, so the frames read back are exactly the frames the encoder was given
    # (x264 is not bit-reproducible from run to run, threaded or not).
    info = probe_video(clip)
    settings = EncodeSettings(codec="ffv1", segment_seconds=0.5)
    results = {}
    for background in (False, True):
        threads: set[int] = set()
        written = [0]

        def checkpoint(written=written, threads=threads) -> dict[str, int]:
            threads.add(threading.get_ident())
            return {"frames_made": written[0]}

        job = tmp_path / f"job-{background}"
        with VideoEncoder(job, info, settings, checkpoint=checkpoint, background=background) as encoder:
            for frame in iter_frames(clip, info=info):
                pixels = frame.pixels.copy()
                encoder.write(pixels, frame.pts)
                pixels[:] = 0  # the caller may reuse its array at once
                written[0] += 1
            encoded = encoder.finish()
        manifest = json.loads((job / "manifest.json").read_text())
        segments = [(s["frames"], s["first_pts"], s["last_pts"]) for s in manifest["segments"]]
        decoded = [(f.pts, f.pixels.tobytes()) for f in iter_frames(encoded.path)]
        results[background] = (decoded, segments, manifest["resume_state"])
        assert threads == {threading.get_ident()}
    assert len(results[True][1]) == 4  # 50 frames at 25 fps: segments start at frames 0, 13, 26, 39
    assert results[True][2] == {"frames_made": 50}
    assert results[True] == results[False]
    assert [pixels for _, pixels in results[True][0]] == [f.pixels.tobytes() for f in iter_frames(clip)]


# -- lazy detection --------------------------------------------------------------------------------------


def test_lazy_detection_embeds_exactly_like_a_full_analysis(analyzer, faces_dir: Path) -> None:
    assert isinstance(analyzer, LazyAnalyzer)
    for name in ("obama/1.jpg", "biden/2.jpg", "kit_harington/3.jpg"):
        pixels = load_image(faces_dir / name).pixels
        full = analyzer.analyze(pixels)
        lazy = analyzer.detect(pixels)
        assert [f.box for f in lazy] == [f.box for f in full] and full
        assert not any(has_embedding(f) for f in lazy)
        for whole, found in zip(full, lazy, strict=True):
            np.testing.assert_array_equal(whole.landmarks, found.landmarks)
            np.testing.assert_array_equal(analyzer.embed(pixels, found).embedding, whole.embedding)

    # In a 1080p frame, scanning at the scale that keeps the face ~100 px finds the same face.
    pixels = load_image(faces_dir / "obama/1.jpg").pixels
    frame = np.full((1080, 1920, 3), 90, np.uint8)
    big = vf.resize(pixels, pixels.shape[1] * 2, pixels.shape[0] * 2)[:1080, :1920]
    frame[: big.shape[0], : big.shape[1]] = big
    (full,) = analyzer.detect(frame)
    scale = DetectScale().choose([full.size], since_full_s=0.0)
    assert scale is not None and scale < 0.5
    (scaled,) = analyzer.detect(frame, scale=scale)
    assert iou(scaled.box, full.box) > 0.7


def test_detection_scale_follows_the_smallest_face_with_full_scans_when_needed() -> None:
    rule = DetectScale(keep_face_px=100, full_every_s=2.0)
    assert rule.choose([], 0.1) is None  # nothing followed: full scale
    assert rule.choose([400], None) is None  # never scanned at full scale
    assert rule.choose([400], 2.0) is None  # a full scan is due
    assert rule.choose([400, 250], 0.5) == pytest.approx(0.4)  # the smaller face stays 100 px
    assert rule.choose([110], 0.5) is None  # not worth a resized copy
    assert misses([(0, 0, 100, 100)], [(5, 5, 105, 105)]) is False
    assert misses([(0, 0, 100, 100), (300, 0, 400, 100)], [(5, 5, 105, 105)]) is True


# -- the pipelined footage source ----------------------------------------------------------------------


class CountingAnalyzer:
    """The real dlib analyzer, counting the embeddings it computes."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name, self.embedding_space = inner.name, inner.embedding_space
        self.embeds = 0
        self.scans: list[tuple[str, float | None]] = []
        """(thread name, scale) of each detector scan."""

    def analyze(self, pixels):
        return self.inner.analyze(pixels)

    def detect(self, pixels, *, scale=None):
        self.scans.append((threading.current_thread().name, scale))
        return self.inner.detect(pixels, scale=scale)

    def find(self, pixels, *, scale=None):  # the scan that footage runs ahead, in a thread of its own
        self.scans.append((threading.current_thread().name, scale))
        return self.inner.find(pixels, scale=scale)

    def finish(self, found, *, embed=True):
        return self.inner.finish(found, embed=embed)

    def embed(self, pixels, face):
        self.embeds += 1
        return self.inner.embed(pixels, face)

    def distance(self, a, b):
        return self.inner.distance(a, b)

    def describe(self):
        return self.inner.describe()

    def model_files(self):
        return self.inner.model_files()


def _enrol(home: Home, faces_dir: Path, name: str, photos: list[str], role: str) -> str:
    identity = enrol_identity(
        EnrolRequest(name, [faces_dir / p for p in photos], operator="tester", backend="dlib"), home=home
    ).id
    with Registry.open(home) as registry:
        registry.grant(
            identity,
            purposes=[PURPOSE],
            roles=[role],
            media=["video"],
            valid_until=add_years(dt.date.today(), 1),
            uses="replace the stunt double's face with the lead actor's likeness in scene 4",
            operator="tester",
        )
    return identity


def test_pipelined_footage_frames_are_the_serial_ones_and_embed_only_when_needed(
    home: Home, faces_dir: Path, analyzer, tmp_path: Path
) -> None:
    a, b = vf.scene_photos(faces_dir)
    scene = vf.Scene(a, b, size=(400, 300), face_px=100, b_enters=20, count=50)
    clip = vf.write_clip(tmp_path / "shot.mp4", scene.frames(), fps=FPS)
    _enrol(home, faces_dir, "Kit Harington", ["kit_harington/1.jpg", "kit_harington/2.jpg"], "source")
    obama = _enrol(home, faces_dir, "Barack Obama", ["obama/2.jpg", "obama/3.jpg"], "target")
    source = load_image(faces_dir / "kit_harington/3.jpg")
    (source_face,) = analyzer.analyze(source.pixels)
    transform = SwapTransform(load_swapper("dlib", home), source.pixels, source_face)
    request = VideoSwapRequest(
        source=source.path, target=clip, purpose=PURPOSE, out=tmp_path / "out.mp4", operator="tester"
    )
    info = probe_video(clip)
    runs, scans = {}, {}
    with Registry.open(home) as registry:
        decision = check_consent(
            registry,
            [Involvement(face=source_face, role="source", label="source")],
            purpose=PURPOSE,
            media_kind="video",
            analyzer=analyzer,
            operator="tester",
        )
        with InputReader(request, analyzer, footage=True) as reading:  # as the road reads footage
            _, first_scan = reading.target()
        assert isinstance(first_scan, FirstScan) and first_scan.index == 0
        # Scans that are not this job's first frame's are not taken: another frame's index (a job that
        # resumes later in the file) or other pixels.
        elsewhere = FirstScan(17, first_scan.pixels, first_scan.found)
        other = FirstScan(0, np.zeros_like(first_scan.pixels), first_scan.found)
        cases = [(False, None), (True, None), ("first scan", first_scan)]
        cases += [("another index", elsewhere), ("other pixels", other)]
        for pipeline, first in cases:
            counting = CountingAnalyzer(analyzer)
            frames = FootageFrames(
                request=request,
                info=info,
                registry=registry,
                analyzer=counting,  # type: ignore[arg-type]
                transform=transform,
                source_matches=decision.matches,
                timer=StageTimer(),
                pipeline=bool(pipeline),
                first_scan=first,
            )
            made = [(f.index, f.pts, f.pixels.tobytes()) for f in frames.frames(ResumePoint())]
            runs[pipeline] = (made, frames.tracks(), counting.embeds)
            scans[pipeline] = counting.scans
    serial, piped = runs[False], runs[True]
    assert len(piped[0]) == 50
    assert piped == serial  # same pixels, same track reports, same embeddings computed
    assert runs["first scan"] == serial  # the first frame scanned while the models loaded: the same
    assert scans["first scan"] == scans[True][1:]  # and not scanned again
    for ignored in ("another index", "other pixels"):  # frame 0 scanned again, as without them
        assert runs[ignored] == serial and scans[ignored] == scans[True], ignored
    # The same scans at the same scales; pipelined, the scheduled ones in the detection thread.
    assert [scale for _, scale in scans[True]] == [scale for _, scale in scans[False]]
    here = threading.current_thread().name
    assert {name for name, _ in scans[False]} == {here}
    ahead = [name for name, _ in scans[True] if name != here]
    assert len(ahead) >= 9 and all(name.startswith("detect") for name in ahead), scans[True]
    tracks = piped[1]
    swapped = [t for t in tracks if t.decision == "swapped"]
    assert [t.identity_id for t in swapped] == [obama] and swapped[0].frames_swapped >= 45
    # Obama: gated once, re-checked every 0.5 s; Biden (not enrolled): 3 tries, then every 0.5 s.
    # Embedding every detection (every 5 frames) would take 10 + 6 = 16.
    assert 4 <= piped[2] <= 12, piped[2]


# -- model load (stills and footage) ---------------------------------------------------------------------


def test_the_saved_hog_detector_finds_what_the_built_in_one_finds_and_a_changed_copy_is_replaced(
    home: Home, faces_dir: Path
) -> None:
    import dlib

    from likeness.faces.dlib_backend import FRONTAL_DETECTOR_SHA256, frontal_face_detector
    from likeness.fsutil import sha256_file

    expected = FRONTAL_DETECTOR_SHA256.get(str(dlib.__version__))
    if expected is None:
        pytest.skip(f"no pinned detector hash for dlib {dlib.__version__}")
    built_in = dlib.get_frontal_face_detector()
    first = frontal_face_detector(home)  # builds it and saves the copy
    (saved,) = (home.root / "cache").glob("*frontal_face_detector.svm")
    assert sha256_file(saved) == expected
    loaded = frontal_face_detector(home)  # from the copy
    for detector in (first, loaded):
        for name in ("obama/1.jpg", "biden/2.jpg", "kit_harington/1.jpg"):
            pixels = load_image(faces_dir / name).pixels
            rects, scores, kinds = detector.run(pixels, 1, 0.0)
            want_rects, want_scores, want_kinds = built_in.run(pixels, 1, 0.0)
            assert [(r.left(), r.top(), r.right(), r.bottom()) for r in rects] == [
                (r.left(), r.top(), r.right(), r.bottom()) for r in want_rects
            ]
            assert list(scores) == list(want_scores) and list(kinds) == list(want_kinds)

    saved.write_bytes(saved.read_bytes()[:-64] + b"\0" * 64)  # a changed copy is not loaded
    detector = frontal_face_detector(home)
    assert sha256_file(saved) == expected  # written again from the built-in one
    rects, _, _ = detector.run(load_image(faces_dir / "obama/1.jpg").pixels, 1, 0.0)
    assert len(rects) == 1


def test_the_small_assignment_solver_agrees_with_scipy() -> None:
    from scipy.optimize import linear_sum_assignment

    from likeness.faces.tracking import assign

    rng = np.random.default_rng(14)
    for _ in range(200):
        rows, cols = (int(v) for v in rng.integers(1, 9, 2))
        cost = rng.random((rows, cols))
        want_rows, want_cols = linear_sum_assignment(cost)
        assert assign(cost) == ([int(r) for r in want_rows], [int(c) for c in want_cols])
    assert assign(np.zeros((0, 3))) == ([], [])
