"""Source frames a footage job leaves out are said, never silent: a clip cut short (``--on-corrupt
skip``) and frames whose timestamps repeat or go backwards (dropped in either mode).

Real clips written with PyAV (a truncated MP4 whose header declares every frame, a Matroska file
whose packets carry out-of-order pts), swapped through the real road with the demo portraits
(Darwin's likeness on Lincoln's, both public-domain 19th-century portraits, purpose education),
the real dlib backend, a real SQLite registry and ledger and real C2PA credentials. Each test
checks the outcome's JSON, the notes, the C2PA manifest and the output's ledger entry.
"""

from __future__ import annotations

import datetime as dt
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import video_fixtures as vf
from likeness.consent.registry import Registry
from likeness.demo import asset
from likeness.disclosure.credentials import read_credentials
from likeness.disclosure.footage_sink import job_folder
from likeness.errors import BadInput, Cancelled
from likeness.home import Home
from likeness.jobs.enrol import enrol_identity
from likeness.jobs.requests import EnrolRequest, SwapOutcome, VideoSwapRequest
from likeness.jobs.road import swap_video
from likeness.media.image import load_image
from likeness.media.video import iter_frames, open_frames, probe_video
from likeness.progress import CancelToken

PURPOSE = "education"
USES = "tests of likeness's footage pipeline on public-domain 19th-century portraits"
FPS = 25
FRAMES = 20
SIZE = (320, 240)


def portrait_frames(count: int = FRAMES) -> list[np.ndarray]:
    """Lincoln's portrait (about 150 px tall) on a grey canvas, drifting 1 px a frame."""
    import cv2

    photo = load_image(asset("lincoln_1.jpg")).pixels
    scale = 150 / photo.shape[0]
    small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    width, height = SIZE
    frames = []
    for i in range(count):
        frame = np.full((height, width, 3), 90, np.uint8)
        x0, y0 = 80 + i, 40
        frame[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small[:, : width - x0]
        frames.append(frame)
    return frames


def encode(path: Path, frames: list[np.ndarray], *, pts: list[int] | None = None, **container) -> Path:
    """H.264 at 25 fps without B-frames (decoded in the order shown; all-intra, in a 1/1000 time base,
    when ``pts`` is given); returns ``path``."""
    import av

    with av.open(str(path), "w", **container) as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        stream.options = {"x264-params": "bframes=0" + (":keyint=1" if pts is not None else "")}
        if pts is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i if pts is None else pts[i]
            if pts is not None:
                frame.time_base = Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def truncated_clip(folder: Path) -> Path:
    """20 frames whose header (moved to the front) declares all of them; the data cut after the
    sixth packet (over 0.5 s short: an early end, not a rounding of the declared duration)."""
    import av

    whole = encode(folder / "whole.mp4", portrait_frames(), options={"movflags": "faststart"})
    with av.open(str(whole)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    pos, size = packets[5]
    cut = folder / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: pos + size])
    return cut


def out_of_order_clip(folder: Path, stamps: list[int]) -> Path:
    """All-intra frames remuxed into Matroska with packet ``i`` stamped ``stamps[i]`` ms (+ 200)."""
    import av

    intra = encode(
        folder / "intra.mp4", portrait_frames(len(stamps)), pts=[i * 40 for i in range(len(stamps))]
    )
    target = folder / "stamps.mkv"
    with av.open(str(intra)) as source, av.open(str(target), "w", format="matroska") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for number, packet in enumerate(p for p in source.demux(video=0) if p.size):
            packet.stream = stream
            packet.dts, packet.pts, packet.duration = number * 40, stamps[number] + 200, 40
            packet.time_base = Fraction(1, 1000)
            out.mux(packet)
    return target


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """Darwin (source) and Lincoln (target), video consents for education (rights expired)."""
    home = Home(root=tmp_path_factory.mktemp("drops") / "home").ensure()
    for name, photo, role, died in (
        ("Charles Darwin", "darwin_1.jpg", "source", dt.date(1882, 4, 19)),
        ("Abraham Lincoln", "lincoln_1.jpg", "target", dt.date(1865, 4, 15)),
    ):
        identity = enrol_identity(EnrolRequest(name=name, photos=[asset(photo)], backend="dlib"), home=home)
        with Registry.open(home) as registry:
            registry.grant(
                identity.id,
                purposes=[PURPOSE],
                roles=[role],
                media=["video"],
                valid_until=dt.date.today() + dt.timedelta(days=30),
                uses=USES,
                operator="tester",
                capacity="rights_expired",
                date_of_death=died,
                jurisdiction="GB",
                basis="died over 125 years ago",
                grantor="tester",
            )
    return home


def request(target: Path, out: Path, **changes) -> VideoSwapRequest:
    settings = {"preset": "veryfast", "operator": "tester", **changes}
    return VideoSwapRequest(source=asset("darwin_1.jpg"), target=target, purpose=PURPOSE, out=out, **settings)


def recorded(home: Home, outcome: SwapOutcome) -> tuple[list, list, list]:
    """The dropped spans as the outcome's JSON, the C2PA manifest and the output's ledger entry say."""
    data = json.loads(json.dumps(outcome.to_dict()))
    manifest = read_credentials(outcome.output, home).disclosure or {}
    with Registry.open(home) as registry:
        entry = next(
            e.payload
            for e in registry.ledger_entries("output")
            if e.payload["output_id"] == outcome.output_id
        )
    return (
        data["frames_dropped"],
        manifest.get("source_frames_dropped"),
        entry.get("disclosure", {}).get("source_frames_dropped"),
    )


def test_frames_lost_to_a_cut_are_said_in_the_outcome_the_notes_the_manifest_and_the_ledger(
    home: Home, tmp_path: Path
) -> None:
    clip = truncated_clip(tmp_path)
    assert probe_video(clip).frame_count == FRAMES
    with pytest.raises(BadInput, match="truncated"):  # fail-closed without the opt-in, as before
        swap_video(request(clip, tmp_path / "stopped.mp4"), home=home)

    outcome = swap_video(request(clip, tmp_path / "out.mp4", on_corrupt="skip"), home=home)
    assert outcome.video is not None
    kept = outcome.video.frames
    assert 0 < kept < FRAMES
    in_json, in_manifest, in_ledger = recorded(home, outcome)
    expected = [
        {
            "start": round(kept / FPS, 4),
            "end": FRAMES / FPS,
            "frames": FRAMES - kept,
            "reason": "stream ends early",
        }
    ]
    assert in_json == expected and in_manifest == expected and in_ledger == expected
    note = f"{FRAMES - kept} frames of the source were dropped"
    assert any(n.startswith(note) and f"{kept / FPS:.3f}–0.800 s" in n for n in outcome.notes), outcome.notes
    assert any(note in n for n in outcome.video.output.notes)


@pytest.mark.parametrize(
    ("stamps", "dropped"),
    [
        # packet 3 goes back to 60 ms after 80, packet 5 to 120 after 160: both dropped
        ([0, 40, 80, 60, 160, 120, 240, 280, 320, 360], [(0.26, 0.26, 1), (0.32, 0.32, 1)]),
        # 80 ms three times: the first is kept, the two repeats make one span
        ([0, 40, 80, 80, 80, 200, 240, 280, 320, 360], [(0.28, 0.28, 2)]),
    ],
    ids=["backwards", "repeated"],
)
def test_frames_with_out_of_order_timestamps_are_dropped_and_said_without_any_opt_in(
    home: Home, tmp_path: Path, stamps: list[int], dropped: list[tuple[float, float, int]]
) -> None:
    clip = out_of_order_clip(tmp_path, stamps)
    outcome = swap_video(request(clip, tmp_path / "out.mp4"), home=home)  # on_corrupt="stop"
    assert outcome.video is not None
    assert outcome.video.frames == len(stamps) - sum(n for _, _, n in dropped)
    assert len(list(iter_frames(outcome.output))) == outcome.video.frames
    expected = [
        {"start": start, "end": end, "frames": n, "reason": "timestamp not after the previous frame's"}
        for start, end, n in dropped
    ]
    in_json, in_manifest, in_ledger = recorded(home, outcome)
    assert in_json == expected and in_manifest == expected and in_ledger == expected
    total = sum(n for _, _, n in dropped)
    assert any(n.startswith(f"{total} frames of the source were dropped") for n in outcome.notes)
    # The app's result says it too (its banner, built from the same outcome).
    from likeness.webapp.studio import VideoResult
    from likeness.webapp.views import video_banner

    banner = video_banner(VideoResult(outcome=outcome, source_name="Charles Darwin", names={}), None)
    assert f"{total} frames of the source were dropped" in banner


def test_a_resumed_job_still_reports_the_frames_dropped_before_it_was_interrupted(
    home: Home, tmp_path: Path
) -> None:
    """Cancelled once every segment was encoded: the rerun reads no frame again (all are in finished
    segments), so the dropped span can only come from the job's checkpoint."""
    clip = truncated_clip(tmp_path)
    out = tmp_path / "out.mp4"
    job = request(clip, out, on_corrupt="skip", segment_seconds=0.2)
    token = CancelToken()

    def cancel_when_joining(stage: str, fraction: float) -> None:
        if stage.startswith("joining"):
            token.cancel()

    with pytest.raises(Cancelled):
        swap_video(job, home=home, progress=cancel_when_joining, cancel=token)
    assert not out.exists() and job_folder(out).is_dir()

    outcome = swap_video(job, home=home)
    assert outcome.video is not None and outcome.video.reused_segments == outcome.video.segments >= 1
    kept = outcome.video.frames
    expected = [
        {
            "start": round(kept / FPS, 4),
            "end": FRAMES / FPS,
            "frames": FRAMES - kept,
            "reason": "stream ends early",
        }
    ]
    assert recorded(home, outcome) == (expected, expected, expected)
    assert any(n.startswith(f"{FRAMES - kept} frames of the source were dropped") for n in outcome.notes)


class CancelAtFrame(CancelToken):
    """A Ctrl-C that lands just before output frame ``frame`` is sealed."""

    def __init__(self, frame: int) -> None:
        super().__init__()
        self.frame = frame

    def check(self, where: str, *, hint: str | None = None) -> None:
        if where.startswith(f"at frame {self.frame} "):
            self.cancel()
        super().check(where, hint=hint)


def test_a_job_resumed_mid_clip_reports_each_dropped_frame_once(home: Home, tmp_path: Path) -> None:
    """Two damaged frames in an all-intra clip, the job interrupted between them once the first segment
    is finished: the checkpoint holds both spans (the reader runs ahead of the segment), the resumed
    run reads the second damage again, and each is reported once, counted once."""
    clip = encode(tmp_path / "intra.mp4", portrait_frames(), pts=[i * 40 for i in range(FRAMES)])
    vf.corrupt_packet(clip, tmp_path / "one.mp4", 3)
    damaged = tmp_path / "two.mp4"
    vf.corrupt_packet(tmp_path / "one.mp4", damaged, 14)
    with open_frames(damaged, on_corrupt="skip") as reader:
        kept = len(list(reader))
    expected = [span.to_dict() for span in reader.skipped]
    assert len(expected) == 2 and sum(span.frames or 0 for span in reader.skipped) == FRAMES - kept

    out = tmp_path / "out.mp4"
    job = request(damaged, out, on_corrupt="skip", segment_seconds=0.4)
    with pytest.raises(Cancelled):
        swap_video(job, home=home, cancel=CancelAtFrame(10))
    assert not out.exists() and job_folder(out).is_dir()

    outcome = swap_video(job, home=home)
    assert outcome.video is not None and 0 < outcome.video.reused_segments < outcome.video.segments
    assert outcome.video.frames == kept
    assert recorded(home, outcome) == (expected, expected, expected)
    assert any(n.startswith(f"{FRAMES - kept} frames of the source were dropped") for n in outcome.notes)


def test_the_swap_command_says_the_dropped_frames_in_text_and_json(home: Home, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from likeness.cli import main

    clip = truncated_clip(tmp_path)
    source = str(asset("darwin_1.jpg"))

    def swap(out: str, *extra: str):
        args = ["--home", str(home.root), "swap", "--source", source, "--target", str(clip)]
        args += ["--purpose", PURPOSE, "--out", str(tmp_path / out), "--on-corrupt", "skip", *extra]
        return CliRunner().invoke(main, args, catch_exceptions=False)

    text = swap("text.mp4")
    assert text.exit_code == 0, text.stderr
    kept = int(text.stdout.split("video: ")[1].split(" frames")[0])
    assert f"note: {FRAMES - kept} frames of the source were dropped" in text.stdout
    assert f"{kept / FPS:.3f}–0.800 s (stream ends early)" in text.stdout

    as_json = swap("json.mp4", "--json")
    assert as_json.exit_code == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["video"]["frames"] == kept
    assert [(s["frames"], s["reason"]) for s in data["frames_dropped"]] == [
        (FRAMES - kept, "stream ends early")
    ]
    assert any(n.startswith(f"{FRAMES - kept} frames of the source were dropped") for n in data["notes"])
