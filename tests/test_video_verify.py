"""The video writer's disclosure and reading it back: label and watermark on every frame, C2PA on
the MP4, a ledger entry, per-window findings that survive re-encoding at CRF 28 and 480p, and a job
killed between recording and renaming.

The frames come from a renderer that passes the source frames through unchanged (no faces needed:
this is about disclosure). Clips are generated from a real photo with a real AAC track; every file
is written under pytest's tmp.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import video_fixtures as vf
from likeness.consent.records import GateDecision
from likeness.consent.registry import Registry
from likeness.disclosure.footage_read import read_video_disclosure
from likeness.disclosure.footage_sink import job_folder
from likeness.disclosure.label import detect_label
from likeness.disclosure.types import Ingredient, SealedOutput
from likeness.disclosure.write import UnsealedVideo, seal_video
from likeness.home import Home
from likeness.media.frames import ResumePoint
from likeness.media.video import (
    DecodedFrame,
    EncodeSettings,
    VideoInfo,
    iter_frames,
    open_frames,
    probe_video,
)

FPS = 25


class Passthrough:
    """A FrameRenderer that hands the source frames on unchanged."""

    def __init__(self, path: Path, info: VideoInfo) -> None:
        self.path, self.info = path, info

    def frames(self, start: ResumePoint) -> Iterator[DecodedFrame]:
        with open_frames(
            self.path, info=self.info, after_pts=start.after_pts, first_index=start.first_index
        ) as reader:
            yield from reader

    def checkpoint(self) -> dict[str, Any]:
        return {}

    def consent_ids(self) -> list[str]:
        return []


def unsealed(path: Path, **settings: Any) -> UnsealedVideo:
    info = probe_video(path)
    return UnsealedVideo(
        info=info,
        renderer=Passthrough(path, info),
        settings=EncodeSettings(**{"preset": "veryfast", "segment_seconds": 1.0, **settings}),
        kind="swap",
        purpose="research",
        ingredients=[Ingredient(role="target", path=path, sha256="0" * 64, format="video/mp4")],
        tools={"renderer": {"name": "passthrough"}},
        operator="tester",
        key={"test": "1"},
    )


def record_into(registry: Registry):
    decision = GateDecision(
        matches=[],
        embedding_space="dlib_resnet_v1",
        threshold=0.525,
        model={},
        checked_at=dt.datetime.now(dt.UTC),
        purpose="research",
        media_kind="video",
    )

    def record(sealed: SealedOutput) -> None:
        registry.record_output(sealed, decision=decision, operator="tester")

    return record


def recorded_in(registry: Registry):
    def recorded_sha256(output_id: str) -> str | None:
        found = registry.get_output(output_id)
        return None if found is None else found.sha256

    return recorded_sha256


def seal(path: Path, out: Path, home: Home, **settings: Any):
    with Registry.open(home) as registry:
        return seal_video(
            unsealed(path, **settings),
            out,
            home=home,
            record=record_into(registry),
            recorded_sha256=recorded_in(registry),
        )


def reencode(source: Path, target: Path, *, crf: int, height: int | None = None) -> Path:
    """What a platform does: decode, optionally downscale (area), encode H.264 at ``crf``."""
    import av

    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        stream = src.streams.video[0]
        width, tall = stream.codec_context.width, stream.codec_context.height
        if height is not None:
            width, tall = round(width * height / tall / 2) * 2, height
        out = dst.add_stream("libx264", rate=stream.average_rate)
        out.width, out.height, out.pix_fmt = width, tall, "yuv420p"
        out.options = {"crf": str(crf), "preset": "veryfast"}
        out.codec_context.time_base = stream.time_base
        for frame in src.decode(stream):
            scaled = frame.reformat(width=width, height=tall, format="yuv420p", interpolation="AREA")
            scaled.pts, scaled.time_base = frame.pts, frame.time_base
            dst.mux(out.encode(scaled))
        dst.mux(out.encode(None))
    return target


@pytest.fixture(scope="module")
def sealed_720p(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path):
    """A 1280×720, 2 s panning shot with AAC audio, through the video writer."""
    folder = tmp_path_factory.mktemp("v720")
    photo = vf.load_rgb(faces_dir / vf.PERSON_A)
    source = vf.write_clip(folder / "shot.mp4", vf.pan_frames(photo, size=(1280, 720), count=50), fps=FPS)
    home = Home(root=folder / "home").ensure()
    (folder / "outs").mkdir()
    result = seal(source, folder / "outs" / "out.mp4", home)
    return source, result, home


def test_every_frame_is_labelled_and_watermarked_and_the_file_signed_and_recorded(sealed_720p) -> None:
    source, result, home = sealed_720p
    out = result.output.path
    assert [p.name for p in out.parent.iterdir()] == ["out.mp4"]
    frames = list(iter_frames(out))
    assert len(frames) == 50 == result.frames
    assert all(detect_label(f.pixels) for f in frames)

    report = read_video_disclosure(out, window_seconds=0.5, home=home)
    assert len(report.windows) == 4 and sum(w.frames for w in report.windows) == 50
    assert report.output_id == result.output.output_id and report.agreement == 1.0 and not report.other_ids
    assert all(w.label_detected for w in report.windows) and report.label_detected
    assert report.c2pa is not None and report.c2pa.state == "trusted"
    assert report.c2pa.output_id == result.output.output_id
    assert report.sha256 == result.output.sha256
    assert result.self_check.windows_with_id == result.self_check.windows >= 1

    info, src_info = probe_video(out), probe_video(source)
    assert (info.width, info.height, info.fps, info.frame_count) == (1280, 720, src_info.fps, 50)
    assert vf.packet_bytes(out) == vf.packet_bytes(source), "audio copied untouched"
    with Registry.open(home) as registry:
        recorded = registry.get_output(result.output.output_id)
    assert recorded is not None and recorded.sha256 == result.output.sha256
    assert recorded.media_type == "video/mp4"


@pytest.mark.parametrize("height", [None, 480], ids=["crf28", "480p-crf28"])
def test_the_id_survives_reencoding_at_crf_28_and_downscaling_to_480p(
    sealed_720p, tmp_path: Path, height: int | None
) -> None:
    _, result, home = sealed_720p
    attacked = reencode(result.output.path, tmp_path / "attacked.mp4", crf=28, height=height)
    report = read_video_disclosure(attacked, window_seconds=1.0, home=home)
    assert report.height == (height or 720) and len(report.windows) == 2
    assert report.output_id == result.output.output_id, report.describe_windows()
    assert report.agreement == 1.0 and not report.other_ids
    assert report.label_detected
    assert report.c2pa is not None and report.c2pa.state == "absent"  # re-encoding drops the manifest


def test_a_clean_video_reports_nothing(sealed_720p) -> None:
    source, _, home = sealed_720p
    report = read_video_disclosure(source, window_seconds=0.5, home=home)
    assert not report.watermark.found and report.output_id is None and report.agreement == 0.0
    assert not report.label_detected and not any(w.label_detected for w in report.windows)
    assert report.c2pa is not None and report.c2pa.state == "absent"


def remux(source: Path, target: Path, container: str) -> Path:
    """The video stream copied, packet for packet, into another container (no re-encoding)."""
    import av

    with av.open(str(source)) as src, av.open(str(target), "w", format=container) as dst:
        stream = src.streams.video[0]
        out = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is not None:
                packet.stream = out
                dst.mux(packet)
    return target


@pytest.mark.parametrize(("container", "suffix"), [("mpegts", ".jpg"), ("flv", ".png")])
def test_a_video_named_like_a_still_reads_as_the_video_it_is(
    sealed_720p, tmp_path: Path, container: str, suffix: str
) -> None:
    """The still reader refuses a container it does not know (its header is not sniffed as video),
    so the video reader reads it: the same verdict as under its right name."""
    from likeness.jobs.verify import verify_file

    _, result, home = sealed_720p
    right = remux(result.output.path, tmp_path / f"copy.{container}", container)
    wrong = tmp_path / f"copy{suffix}"
    wrong.write_bytes(right.read_bytes())
    report = verify_file(wrong, home=home)
    assert report.disclosure.unreadable is None and hasattr(report.disclosure, "windows")
    assert report.disclosure.watermark.output_id == result.output.output_id
    assert report.ledger["found"] and report.ledger["matched_by"] == "watermark"
    assert report.status == "synthetic"
    expected = verify_file(right, home=home)
    data, want = report.to_dict(), expected.to_dict()
    for item in (data, want):
        item["file"].pop("path")
    assert data == want


def test_a_video_spliced_from_two_outputs_names_both(faces_dir: Path, tmp_path: Path, home: Home) -> None:
    photo = vf.load_rgb(faces_dir / vf.PERSON_A)
    clip = vf.write_clip(tmp_path / "clip.mp4", vf.pan_frames(photo, size=(480, 270), count=25), fps=FPS)
    outs = tmp_path / "outs"
    outs.mkdir()
    first, second = seal(clip, outs / "one.mp4", home), seal(clip, outs / "two.mp4", home)
    pixels = [f.pixels for f in iter_frames(first.output.path)] + [
        f.pixels for f in iter_frames(second.output.path)
    ]
    spliced = vf.write_clip(tmp_path / "spliced.mp4", pixels, fps=FPS, audio=None, options={"crf": "18"})
    report = read_video_disclosure(spliced, window_seconds=0.5)
    ids = {w.output_id for w in report.windows}
    assert ids == {first.output.output_id, second.output.output_id}
    assert len(report.other_ids) == 1 and report.agreement == pytest.approx(0.5, abs=0.2)
    assert any("DIFFERENT OUTPUT" in line for line in report.describe_windows())


RUNNER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[4])
    from test_video_verify import Registry, record_into, recorded_in, seal_video, unsealed
    from likeness.home import Home

    source, out, home = Path(sys.argv[1]), Path(sys.argv[2]), Home(root=Path(sys.argv[3]))
    with Registry.open(home) as registry:
        record = record_into(registry)

        def record_then_die(sealed):
            record(sealed)
            print("recorded", sealed.output_id, sealed.sha256, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # after the ledger entry, before the rename

        seal_video(
            unsealed(source), out, home=home, record=record_then_die, recorded_sha256=recorded_in(registry)
        )
    """
)


@pytest.mark.kill
def test_a_kill_between_recording_and_renaming_is_finished_by_the_rerun(
    faces_dir: Path, tmp_path: Path, home: Home
) -> None:
    photo = vf.load_rgb(faces_dir / vf.PERSON_A)
    clip = vf.write_clip(tmp_path / "clip.mp4", vf.pan_frames(photo, size=(320, 240), count=30), fps=FPS)
    outs = tmp_path / "outs"
    outs.mkdir()
    out = outs / "out.mp4"
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent / "src"), str(tests)])}
    run = subprocess.run(
        [sys.executable, str(script), str(clip), str(out), str(home.root), str(tests)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == -9, run.stderr
    _, output_id, sha256 = run.stdout.split()
    assert not out.exists() and job_folder(out).is_dir()

    with Registry.open(home) as registry:
        finished = seal_video(
            unsealed(clip),
            out,
            home=home,
            record=record_into(registry),
            recorded_sha256=recorded_in(registry),
        )
        assert [o.output_id for o in registry.list_outputs()] == [output_id]
    assert (finished.output.output_id, finished.output.sha256) == (output_id, sha256)
    assert out.exists() and not job_folder(out).exists()
    assert read_video_disclosure(out, home=home).output_id == output_id


def test_frame_timing_of_a_vfr_clip_is_kept(faces_dir: Path, tmp_path: Path, home: Home) -> None:
    photo = vf.load_rgb(faces_dir / vf.PERSON_A)
    frames = list(vf.pan_frames(photo, size=(320, 240), count=30))
    steps = [1, 1, 2, 1, 3, 1, 1, 2] * 4
    pts = list(np.cumsum([0, *steps[: len(frames) - 1]]) * 40)
    clip = vf.write_clip(tmp_path / "vfr.mp4", frames, pts=pts, time_base=Fraction(1, 1000), fps=FPS)
    assert probe_video(clip).is_vfr
    outs = tmp_path / "outs"
    outs.mkdir()
    result = seal(clip, outs / "out.mp4", home)
    assert [f.time for f in iter_frames(result.output.path)] == pytest.approx(
        [f.time for f in iter_frames(clip)], abs=1e-6
    )


def test_a_phone_clip_keeps_its_rotation_and_reads_back_upright(
    faces_dir: Path, tmp_path: Path, home: Home
) -> None:
    frames = list(vf.pan_frames(vf.load_rgb(faces_dir / vf.PERSON_A), count=20))
    phone = vf.write_clip(tmp_path / "phone.mp4", frames, rotation=-90)  # "turn 90° clockwise to show"
    outs = tmp_path / "outs"
    outs.mkdir()
    result = seal(phone, outs / "out.mp4", home, rotation="keep")
    info = probe_video(result.output.path)
    assert (info.rotation, info.width, info.height) == (90, 240, 320)
    upright = list(iter_frames(result.output.path))
    assert upright[0].pixels.shape == (320, 240, 3)
    assert all(detect_label(f.pixels) for f in upright)  # placed on the picture as it is shown
    report = read_video_disclosure(result.output.path, home=home)
    assert report.output_id == result.output.output_id and report.c2pa.state == "trusted"


def test_a_second_job_on_the_same_output_leaves_the_running_one_alone(
    faces_dir: Path, tmp_path: Path, home: Home
) -> None:
    from likeness.errors import UsageError
    from likeness.media.video import VideoEncoder

    photo = vf.load_rgb(faces_dir / vf.PERSON_A)
    clip = vf.write_clip(tmp_path / "clip.mp4", vf.pan_frames(photo, size=(320, 240), count=10), fps=FPS)
    outs = tmp_path / "outs"
    outs.mkdir()
    out = outs / "out.mp4"
    with VideoEncoder(job_folder(out), probe_video(clip), EncodeSettings(container="mp4")) as running:
        running.write(vf.load_rgb(faces_dir / vf.PERSON_A)[:240, :320].copy(), 0)
        with pytest.raises(UsageError, match="in use by another likeness process"):
            seal(clip, out, home)
        assert (job_folder(out) / "manifest.json").exists() and not out.exists()


def test_the_self_check_reads_every_frame_before_refusing_a_clip_whose_keyframes_alone_do_not_carry_it(
    tmp_path: Path, faces_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyframes are the fast check; a short clip's one keyframe may be too little evidence. The
    keyframe reading is made to miss here (the real reading with its ids dropped): the sink then
    reads every frame of the real encoded file, finds its id there and seals."""
    import dataclasses

    from likeness.disclosure import read as disclosure_read

    real = disclosure_read.read_video_disclosure
    samples: list[str] = []

    def keyframes_miss(path: Path, *args: Any, sample: str = "all", **kwargs: Any):
        samples.append(sample)
        report = real(path, *args, sample=sample, **kwargs)
        if sample != "keyframes":
            return report
        windows = [dataclasses.replace(w, output_id=None) for w in report.windows]
        return dataclasses.replace(report, windows=windows)

    monkeypatch.setattr(disclosure_read, "read_video_disclosure", keyframes_miss)
    photo = vf.load_rgb(faces_dir / vf.PERSON_A)
    source = vf.write_clip(tmp_path / "short.mp4", vf.pan_frames(photo, size=(320, 240), count=40), fps=FPS)
    home = Home(root=tmp_path / "home").ensure()
    result = seal(source, tmp_path / "out.mp4", home)
    assert samples == ["keyframes", "all"]
    assert result.self_check.windows_with_id == result.self_check.windows >= 1
    assert read_video_disclosure(result.output.path).output_id == result.output.output_id
