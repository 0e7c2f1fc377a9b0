"""Video probe, streaming decode and chunked encode on generated clips made from real face photos.

Every clip has a real audio track (a synthesised chirp encoded as AAC, Opus, MP3, PCM or Vorbis) so
"audio copied untouched" is checked packet for packet.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import video_fixtures as vf
from likeness.errors import BadInput, UsageError
from likeness.media.video import (
    EncodeSettings,
    VideoEncoder,
    VideoInfo,
    iter_frames,
    open_frames,
    probe_video,
    remove_job,
)

FPS = 25
FRAMES = 50  # 2 s at 25 fps, 320×240


@dataclass(frozen=True)
class Clip:
    path: Path
    codec: str
    audio: str
    frames: int


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> dict[str, Clip]:
    """One small clip per container/codec, all from the same panning shot of a real photo."""
    folder = tmp_path_factory.mktemp("clips")
    frames = list(vf.pan_frames(vf.load_rgb(faces_dir / vf.PERSON_A), count=FRAMES))
    specs = {
        "mp4-h264-aac": ("clip.mp4", "libx264", "aac", "h264", "aac", {}),
        "mkv-vp9-opus": ("clip.mkv", "libvpx-vp9", "libopus", "vp9", "opus", {}),
        "avi-mpeg4-mp3": ("clip.avi", "mpeg4", "libmp3lame", "mpeg4", "mp3", {}),
        "mov-h264-pcm": ("clip.mov", "libx264", "pcm_s16le", "h264", "pcm_s16le", {}),
        "mkv-mpeg4-vorbis": ("vorbis.mkv", "mpeg4", "vorbis", "mpeg4", "vorbis", {}),
    }
    made = {}
    for name, (file, codec, audio, codec_name, audio_name, options) in specs.items():
        path = vf.write_clip(
            folder / file, frames, codec=codec, audio=audio, fps=FPS, options=options or None
        )
        made[name] = Clip(path, codec_name, audio_name, FRAMES)
    return made


def encode(source: Path, job: Path, settings: EncodeSettings | None = None, **kwargs: object):
    info = probe_video(source)
    with VideoEncoder(job, info, settings or EncodeSettings(preset="veryfast"), **kwargs) as encoder:  # type: ignore[arg-type]
        for frame in iter_frames(source, info=info):
            encoder.write(frame.pixels, frame.pts)
        return encoder.finish()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


# -- probe ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mp4-h264-aac", "mkv-vp9-opus", "avi-mpeg4-mp3", "mov-h264-pcm"])
def test_probe_describes_each_container(clips: dict[str, Clip], name: str) -> None:
    clip = clips[name]
    info = probe_video(clip.path)
    assert (info.width, info.height, info.rotation) == (320, 240, 0)
    assert info.codec == clip.codec
    assert info.fps == FPS
    assert info.duration == pytest.approx(FRAMES / FPS, abs=0.05)
    assert abs(info.frame_count - FRAMES) <= 1
    assert not info.is_vfr
    assert info.has_audio and info.audio[0].codec == clip.audio
    assert (info.audio[0].sample_rate, info.audio[0].channels) == (48000, 2)
    assert info.pixel_format == "yuv420p" and info.bit_depth == 8


def test_frames_stream_upright_rgb_with_increasing_pts(clips: dict[str, Clip]) -> None:
    clip = clips["mp4-h264-aac"]
    direct = vf.decode_all(clip.path)
    frames = list(iter_frames(clip.path))
    assert [f.index for f in frames] == list(range(FRAMES))
    assert [f.pts for f in frames] == [pts for pts, _, _ in direct]
    assert all(f.pixels.shape == (240, 320, 3) and f.pixels.dtype == np.uint8 for f in frames)
    assert frames[10].time == pytest.approx(10 / FPS, abs=1e-6)
    # Same picture as an independent PyAV decode (colour conversion may differ by rounding).
    assert psnr(frames[25].pixels, direct[25][1]) > 40


@pytest.mark.parametrize("keyint", [None, 10])
def test_resuming_after_a_pts_yields_exactly_the_remaining_frames(
    faces_dir: Path, tmp_path: Path, keyint: int | None
) -> None:
    frames = list(vf.pan_frames(vf.load_rgb(faces_dir / vf.PERSON_A), count=FRAMES))
    options = {"preset": "veryfast", **({"g": str(keyint)} if keyint else {})}
    source = vf.write_clip(tmp_path / "clip.mp4", frames, options=options)  # B-frames: pts ≠ decode order
    full = list(iter_frames(source))
    with open_frames(source, after_pts=full[31].pts, first_index=32) as reader:
        tail = list(reader)
    assert reader.resumed_by == "seek"
    # One keyframe: the seek lands on frame 0. A keyframe every 10 frames: on frame 10 or 20.
    assert reader.decoded_from == (0.0 if keyint is None else pytest.approx(20 / FPS))
    assert [f.pts for f in tail] == [f.pts for f in full[32:]]
    assert [f.index for f in tail] == list(range(32, FRAMES))
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(tail, full[32:], strict=True))


# -- round trips: every container in, audio untouched out -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("mp4-h264-aac", "h264"),
        ("mkv-vp9-opus", "h264"),
        ("avi-mpeg4-mp3", "h264"),
        ("mov-h264-pcm", "prores"),
        ("mkv-mpeg4-vorbis", "ffv1"),
    ],
)
def test_encode_preserves_picture_timing_and_audio_bytes(
    clips: dict[str, Clip], tmp_path: Path, name: str, codec: str
) -> None:
    clip = clips[name]
    source = probe_video(clip.path)
    result = encode(
        clip.path, tmp_path / "job", EncodeSettings(codec=codec, preset="veryfast", segment_seconds=0.7)
    )
    assert result.path.parent == tmp_path / "job" and result.path.name.startswith("output.")
    assert result.segments == 3 and result.frames == len(list(iter_frames(clip.path)))
    out = probe_video(result.path)
    assert out.codec == {"h264": "h264", "prores": "prores", "ffv1": "ffv1"}[codec]
    assert (out.width, out.height) == (source.width, source.height)
    if clip.path.suffix != ".avi":  # ffmpeg reads this AVI's packed B-frames as pts 0, 2, 3, …: not 25 fps
        assert out.fps == pytest.approx(float(source.fps), rel=0.02)
    assert out.duration == pytest.approx(source.duration, abs=0.05)
    # Audio: the very same packets, byte for byte.
    assert out.audio[0].codec == clip.audio
    assert vf.packet_bytes(result.path) == vf.packet_bytes(clip.path)
    assert result.audio == (f"audio #1 ({clip.audio}) copied",)
    # Picture: each output frame is the source frame at the same time.
    src_frames = list(iter_frames(clip.path))
    out_frames = list(iter_frames(result.path))
    assert len(out_frames) == len(src_frames)
    start = out_frames[0].time - src_frames[0].time  # Matroska may shift everything by the AAC priming
    for a, b in zip(src_frames, out_frames, strict=True):
        assert b.time - start == pytest.approx(a.time, abs=0.0011)
    assert min(psnr(a.pixels, b.pixels) for a, b in zip(src_frames, out_frames, strict=True)) > 35


@pytest.mark.parametrize("container", [None, "mp4"])
def test_ffv1_output_is_bit_exact_rgb(clips: dict[str, Clip], tmp_path: Path, container: str | None) -> None:
    clip = clips["mp4-h264-aac"]
    info = probe_video(clip.path)
    rng = np.random.default_rng(3)
    written = []
    settings = EncodeSettings(codec="ffv1", segment_seconds=1, container=container)  # type: ignore[arg-type]
    with VideoEncoder(tmp_path / "job", info, settings) as encoder:
        for frame in iter_frames(clip.path, info=info):
            pixels = frame.pixels.copy()
            pixels[:8] = rng.integers(0, 256, pixels[:8].shape, dtype=np.uint8)  # hard-to-compress rows
            written.append(pixels)
            encoder.write(pixels, frame.pts)
        result = encoder.finish()
    assert result.path.suffix == (".mp4" if container == "mp4" else ".mkv")
    decoded = [f.pixels for f in iter_frames(result.path)]
    assert len(decoded) == len(written)
    assert all(np.array_equal(a, b) for a, b in zip(written, decoded, strict=True))


def test_audio_the_container_cannot_carry_is_reencoded_and_said_so(
    clips: dict[str, Clip], tmp_path: Path
) -> None:
    import av

    pcm = clips["mov-h264-pcm"]
    result = encode(pcm.path, tmp_path / "pcm")
    assert probe_video(result.path).audio[0].codec == "alac"
    assert "re-encoded to ALAC" in result.audio[0] and "lossless" in result.audio[0]

    def samples(path: Path) -> np.ndarray:
        """Decoded samples as (channels, n), whatever the decoder's planar/packed layout."""
        with av.open(str(path)) as container:
            parts = []
            for frame in container.decode(audio=0):
                array = frame.to_ndarray()
                parts.append(array if frame.format.is_planar else array.reshape(-1, 2).T)
            return np.concatenate(parts, axis=1)

    original, copied = samples(pcm.path), samples(result.path)
    assert original.dtype == copied.dtype == np.int16
    assert original.shape == copied.shape and np.array_equal(original, copied)  # lossless, sample for sample

    vorbis = clips["mkv-mpeg4-vorbis"]
    result = encode(vorbis.path, tmp_path / "vorbis")
    assert probe_video(result.path).audio[0].codec == "aac"
    assert result.audio == ("audio #1 (vorbis) re-encoded to AAC: MP4 cannot carry vorbis",)


def test_copy_only_refuses_before_encoding_anything(clips: dict[str, Clip], tmp_path: Path) -> None:
    info = probe_video(clips["mkv-mpeg4-vorbis"].path)
    with pytest.raises(UsageError, match=r"vorbis.*cannot be copied into MP4"):
        VideoEncoder(tmp_path / "job", info, EncodeSettings(audio="copy-only"))
    assert not (tmp_path / "job").exists() or not any((tmp_path / "job").glob("seg_*"))


def test_vfr_timing_is_kept_frame_by_frame(faces_dir: Path, tmp_path: Path) -> None:
    frames = list(vf.pan_frames(vf.load_rgb(faces_dir / vf.PERSON_A), count=40))
    steps = [3000, 6000, 4500, 3000, 3000, 9000]  # 1/30, 1/15, 1/20 … s in a 1/90000 clock
    pts = [0]
    for i in range(len(frames) - 1):
        pts.append(pts[-1] + steps[i % len(steps)])
    source = vf.write_clip(tmp_path / "vfr.mp4", frames, pts=pts, time_base=Fraction(1, 90000))
    info = probe_video(source)
    assert info.is_vfr
    result = encode(source, tmp_path / "job", EncodeSettings(preset="veryfast", segment_seconds=0.5))
    out = probe_video(result.path)
    assert out.is_vfr
    out_times = [f.time for f in iter_frames(result.path)]
    assert out_times == pytest.approx([p / 90000 for p in pts], abs=1e-3)


def test_a_pause_just_after_a_segment_starts_joins(faces_dir: Path, tmp_path: Path) -> None:
    """A segment's encoder starts decoding before its first frame by as long as its first frames take
    to reorder; after a pause (frames dropped as damaged, or variable timing) that reached back past
    the previous segment's last packet, and the join was refused ("Invalid argument")."""
    frames = list(vf.pan_frames(vf.load_rgb(faces_dir / vf.PERSON_A), count=25))
    pts = [40 * i for i in range(12)] + [680 + 40 * i for i in range(13)]  # 0.44 s, then 0.24 s later
    source = vf.write_clip(tmp_path / "pause.mkv", frames, pts=pts, time_base=Fraction(1, 1000), audio=None)
    result = encode(source, tmp_path / "job", EncodeSettings(preset="veryfast", segment_seconds=0.4))
    assert result.segments >= 2
    assert [f.time for f in iter_frames(result.path)] == pytest.approx([p / 1000 for p in pts], abs=1e-3)
    import av

    with av.open(str(result.path)) as joined:
        decode_times = [p.dts for p in joined.demux(joined.streams.video[0]) if p.size]
    assert len(decode_times) == len(pts) and decode_times == sorted(set(decode_times)), "they only go forward"


def test_colour_detail_the_output_cannot_keep_is_said(faces_dir: Path, tmp_path: Path) -> None:
    frames = list(vf.pan_frames(vf.load_rgb(faces_dir / vf.PERSON_A), count=6))
    source = vf.write_clip(tmp_path / "full.mp4", frames, pix_fmt="yuv444p", audio=None)
    assert probe_video(source).pixel_format == "yuv444p"
    h264 = encode(source, tmp_path / "h264", EncodeSettings(preset="veryfast"))
    assert any("(yuv444p, 4:4:4) is written as 4:2:0 (yuv420p)" in note for note in h264.notes), h264.notes
    lossless = encode(source, tmp_path / "ffv1", EncodeSettings(codec="ffv1"))
    assert not any("colour detail" in note for note in lossless.notes), lossless.notes
    plain = encode(vf.write_clip(tmp_path / "plain.mp4", frames, audio=None), tmp_path / "plain")
    assert not any("colour detail" in note for note in plain.notes), plain.notes


@pytest.mark.parametrize("policy", ["bake", "keep"])
def test_rotated_phone_clip_comes_out_upright(faces_dir: Path, tmp_path: Path, policy: str) -> None:
    frames = list(vf.pan_frames(vf.load_rgb(faces_dir / vf.PERSON_A), count=20))
    # A phone held upright stores landscape pixels plus "turn 90° clockwise to display".
    source = vf.write_clip(tmp_path / "phone.mp4", frames, rotation=-90)
    info = probe_video(source)
    assert info.rotation == 90
    assert (info.width, info.height, info.coded_width, info.coded_height) == (240, 320, 320, 240)
    coded = vf.decode_all(source)
    upright = list(iter_frames(source, info=info))
    assert upright[0].pixels.shape == (320, 240, 3)
    assert np.array_equal(upright[0].pixels, np.rot90(coded[0][1], k=-1))  # turned clockwise

    result = encode(source, tmp_path / "job", EncodeSettings(preset="veryfast", rotation=policy))
    out = probe_video(result.path)
    assert (out.width, out.height) == (240, 320)
    assert out.rotation == (0 if policy == "bake" else 90)
    again = list(iter_frames(result.path))
    assert min(psnr(a.pixels, b.pixels) for a, b in zip(upright, again, strict=True)) > 35


# -- bad input ---------------------------------------------------------------------------------------------


def test_corrupt_frame_mid_file_stops_naming_frame_and_time(clips: dict[str, Clip], tmp_path: Path) -> None:
    clip = clips["mp4-h264-aac"]
    pts, _, _, _ = vf.corrupt_packet(clip.path, tmp_path / "bad.mp4", 30)
    damaged_at = float(pts * probe_video(clip.path).time_base)
    info = probe_video(tmp_path / "bad.mp4")  # the header is intact: probing succeeds
    frames_seen = []
    with pytest.raises(BadInput) as error:
        for frame in iter_frames(tmp_path / "bad.mp4", info=info):
            frames_seen.append(frame.time)
    reason = error.value.reason
    assert "corrupt video data at frame" in reason and "--on-corrupt skip" in error.value.hint
    frame_number = int(reason.split("at frame ")[1].split(" ")[0])
    assert frame_number == len(frames_seen)
    assert max(frames_seen) < damaged_at  # nothing at or after the damage was handed out
    span = re.search(r"between ([\d.]+) s and ([\d.]+) s", reason)
    assert span, reason
    low, high = float(span[1]), float(span[2])
    assert low <= damaged_at <= high + 1e-6


def test_corrupt_data_can_be_skipped_when_asked(clips: dict[str, Clip], tmp_path: Path) -> None:
    clip = clips["avi-mpeg4-mp3"]  # MPEG-4 part 2: the decoder recovers at the next keyframe
    vf.corrupt_packet(clip.path, tmp_path / "bad.avi", 30, skip=0)
    with open_frames(tmp_path / "bad.avi", on_corrupt="skip") as reader:
        frames = list(reader)
    assert 0 < len(frames) < FRAMES
    assert reader.skipped and all(span.start < FRAMES / FPS for span in reader.skipped)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(b.pts > a.pts for a, b in itertools.pairwise(frames))


def test_a_skipped_span_counts_its_frames_and_a_resume_past_it_does_not_report_it_again(
    clips: dict[str, Clip], tmp_path: Path
) -> None:
    """The span names how many frames the output lacks; a job resumed after it (the earlier run noted
    it) decodes the damage again on its way to the resume point, and must not report it a second time,
    least of all as one running from the start of the clip."""
    clip = clips["avi-mpeg4-mp3"]
    bad = tmp_path / "bad.avi"
    vf.corrupt_packet(clip.path, bad, 30, skip=0)
    with open_frames(bad, on_corrupt="skip") as reader:
        frames = list(reader)
    span = reader.skipped[0]
    assert span.end is not None
    kept = {f.pts for f in frames}
    lost = [f.pts for f in iter_frames(clip.path) if span.start < f.time < span.end]
    assert lost and not kept & set(lost)
    assert span.frames == len(lost)
    after = next(f.pts for f in frames if f.time >= span.end)
    with open_frames(bad, on_corrupt="skip", after_pts=after) as resumed:
        rest = [f.pts for f in resumed]
    assert rest == [f.pts for f in frames if f.pts > after]
    assert [s for s in resumed.skipped if s.start <= span.start] == []


def test_container_damage_is_caught_as_an_early_end(clips: dict[str, Clip], tmp_path: Path) -> None:
    data = clips["mkv-vp9-opus"].path.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput, match=r"stops at .* but the file declares 2\.0"):
        list(iter_frames(tmp_path / "cut.mkv"))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty (0 bytes)"),
        (
            b"just some notes, not a video\n" * 20,
            "not a video container that can be read (it looks like a text file)",
        ),
    ],
)
def test_unusable_files_are_refused_clearly(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "input.mp4"
    path.write_bytes(content)
    with pytest.raises(BadInput) as error:
        probe_video(path)
    assert str(path) in error.value.reason and expected in error.value.reason


def test_truncated_mp4_and_still_image_and_audio_only(
    clips: dict[str, Clip], tmp_path: Path, faces_dir: Path
) -> None:
    data = clips["mp4-h264-aac"].path.read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput, match="damaged or truncated"):
        probe_video(tmp_path / "half.mp4")
    with pytest.raises(BadInput, match="still image"):
        probe_video(faces_dir / vf.PERSON_A)
    vf.write_audio_only(tmp_path / "voice.m4a")
    with pytest.raises(BadInput, match=r"no video stream in this file \(it has 1 audio stream\)"):
        probe_video(tmp_path / "voice.m4a")


def test_huge_dimensions_are_refused_from_the_header(tmp_path: Path) -> None:
    huge = vf.write_huge_clip(tmp_path / "huge.mkv")
    # Keep only the header: if the size check needed a decoded frame, this file would fail as corrupt.
    header_only = vf.truncate_at_first_packet(huge, tmp_path / "header_only.mkv")
    for path in (huge, header_only):
        with pytest.raises(BadInput, match=r"9000×4800 \(43\.2 megapixels\) are over the limit"):
            probe_video(path)
    with pytest.raises(BadInput, match="over the limit"):
        list(iter_frames(header_only))


# -- memory, jobs, resume ------------------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc to read memory use")
def test_memory_stays_flat_while_streaming_1080p(faces_dir: Path, tmp_path: Path) -> None:
    photo = vf.load_rgb(faces_dir / vf.PERSON_A)
    count = 60  # whole-clip buffering would hold 60 × 6.2 MB = 373 MB of RGB
    source = vf.write_clip(
        tmp_path / "hd.mp4",
        vf.pan_frames(photo, size=(1920, 1080), count=count),
        fps=30,
        options={"preset": "ultrafast"},
    )
    info = probe_video(source)
    rss: list[float] = []
    with VideoEncoder(
        tmp_path / "job", info, EncodeSettings(preset="ultrafast", segment_seconds=0.5)
    ) as encoder:
        for frame in iter_frames(source, info=info):
            encoder.write(frame.pixels, frame.pts)
            rss.append(_rss_mb())
        result = encoder.finish()
    assert result.frames == count
    warm = rss[10]  # decoder and encoder buffers are allocated by then
    growth = max(rss[10:]) - warm
    print(
        f"\n1080p decode+encode: RSS after 10 frames {warm:.0f} MB, "
        f"growth over the next {count - 10}: {growth:.1f} MB"
    )
    assert growth < 40


def test_encoder_checks_its_input_and_locks_its_folder(clips: dict[str, Clip], tmp_path: Path) -> None:
    info = probe_video(clips["mp4-h264-aac"].path)
    with VideoEncoder(tmp_path / "job", info) as encoder:
        with pytest.raises(ValueError, match="frames must be"):
            encoder.write(np.zeros((10, 10, 3), np.uint8), 0)
        encoder.write(np.zeros((240, 320, 3), np.uint8), 512)
        with pytest.raises(ValueError, match="pts must increase"):
            encoder.write(np.zeros((240, 320, 3), np.uint8), 512)
        with pytest.raises(UsageError, match="in use by another likeness process"):
            VideoEncoder(tmp_path / "job", info)
    # closed without finish(): the unfinished segment is gone, no output
    assert not list((tmp_path / "job").glob("*.partial.*")) and not list((tmp_path / "job").glob("output*"))


def test_a_job_folder_from_other_settings_is_started_over(clips: dict[str, Clip], tmp_path: Path) -> None:
    source = clips["mp4-h264-aac"].path
    first = encode(source, tmp_path / "job", EncodeSettings(preset="veryfast", crf=30, segment_seconds=0.5))
    assert first.segments == 4
    info = probe_video(source)
    with VideoEncoder(tmp_path / "job", info, EncodeSettings(preset="veryfast", crf=20)) as encoder:
        assert encoder.resume_after_pts is None and encoder.reused_segments == 0
        assert any("started over" in note for note in encoder.notes)
    with VideoEncoder(
        tmp_path / "job", info, EncodeSettings(preset="veryfast", crf=20), key={"request": "a"}
    ) as encoder:
        assert encoder.resume_frames == 0
    remove_job(tmp_path / "job")
    assert not (tmp_path / "job").exists()


RUNNER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from likeness.media.video import EncodeSettings, VideoEncoder, iter_frames, probe_video

    source, job, final, delay = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
    info = probe_video(source)
    settings = EncodeSettings(preset="ultrafast", segment_seconds=0.4)
    report = lambda record: print("segment", record.number, flush=True)
    with VideoEncoder(job, info, settings, key={"request": "r1"}, meta={"output_id": sys.argv[5]},
                      on_segment=report) as encoder:
        print("reused", encoder.reused_segments, "meta", encoder.meta["output_id"], flush=True)
        for frame in iter_frames(source, info=info, after_pts=encoder.resume_after_pts,
                                 first_index=encoder.resume_frames):
            time.sleep(delay)
            encoder.write(frame.pixels, frame.pts)
        result = encoder.finish()
    os.replace(result.path, final)  # what the disclosure writer does after signing
    print("done", result.frames, flush=True)
    """
)


@pytest.mark.kill
def test_killed_job_leaves_no_output_and_resumes_to_the_same_file(
    clips: dict[str, Clip], tmp_path: Path
) -> None:
    source = clips["mkv-vp9-opus"].path
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    job, final = tmp_path / "job", tmp_path / "final.mp4"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    command = [sys.executable, str(script), str(source), str(job), str(final)]

    child = subprocess.Popen([*command, "0.05", "id-first"], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        lines.append(line.strip())
        if not line or line.startswith("segment 1"):
            break  # EOF (the child died early: the assert below shows what it printed) or time to kill
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert "segment 1" in lines, lines
    assert not final.exists()
    assert not list(job.glob("output*"))
    finished = sorted(p.name for p in job.glob("seg_*.mkv") if ".partial" not in p.name)
    assert finished[:2] == ["seg_00000.mkv", "seg_00001.mkv"]

    rerun = subprocess.run([*command, "0", "id-second"], capture_output=True, text=True, env=env, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    reused = int(rerun.stdout.split("reused ")[1].split()[0])
    assert reused >= 2
    assert "meta id-first" in rerun.stdout  # the stored meta, not the new one
    assert final.exists() and f"done {FRAMES}" in rerun.stdout

    # Same packets as a job that was never interrupted.
    straight = encode(
        source,
        tmp_path / "straight",
        EncodeSettings(preset="ultrafast", segment_seconds=0.4),
        key={"request": "r1"},
    )
    assert vf.packet_bytes(final, "video") == vf.packet_bytes(straight.path, "video")
    assert vf.packet_bytes(final) == vf.packet_bytes(source)
    assert [f.time for f in iter_frames(final)] == pytest.approx(
        [f.time for f in iter_frames(source)], abs=1e-6
    )


def test_info_round_trips_to_json(clips: dict[str, Clip]) -> None:
    import json

    info: VideoInfo = probe_video(clips["mp4-h264-aac"].path)
    data = json.loads(json.dumps(info.to_dict()))
    assert data["fps"] == "25" and data["audio"][0]["codec"] == "aac" and data["rotation"] == 0


def test_keyframe_sampling_decodes_only_keyframes_and_spaces_them(faces_dir: Path, tmp_path: Path) -> None:
    frames = list(vf.pan_frames(vf.load_rgb(faces_dir / vf.PERSON_A), count=FRAMES))
    source = vf.write_clip(tmp_path / "gop.mp4", frames, options={"preset": "veryfast", "g": "10"})
    keys = [pts for pts, _, _, key in vf.packet_info(source) if key]
    with open_frames(source, keyframes_only=True) as reader:
        sampled = list(reader)
    assert [f.pts for f in sampled] == sorted(keys) and all(f.key_frame for f in sampled)
    assert reader.skipped == []  # gaps between keyframes are expected, not damage
    with open_frames(source, keyframes_only=True, min_interval=0.7) as reader:
        spaced = [f.time for f in reader]
    assert spaced == pytest.approx([0.0, 0.8, 1.6])
    full = list(iter_frames(source))
    assert sum(f.key_frame for f in full) == len(keys)


def test_video_files_are_told_from_images_by_suffix_or_header(clips: dict[str, Clip], tmp_path: Path) -> None:
    from likeness.media.video import looks_like_video

    assert all(looks_like_video(clip.path) for clip in clips.values())
    unnamed = tmp_path / "clip.bin"
    unnamed.write_bytes(clips["mp4-h264-aac"].path.read_bytes())
    assert looks_like_video(unnamed)
    photo = tmp_path / "photo.bin"
    photo.write_bytes((Path(__file__).parent / "conftest.py").read_bytes())
    assert not looks_like_video(photo) and not looks_like_video(tmp_path / "missing.jpg")


def test_containers_are_checked_per_codec() -> None:
    assert EncodeSettings(codec="ffv1", container="mp4").suffix == ".mp4"
    assert EncodeSettings(codec="prores").media_type == "video/quicktime"
    with pytest.raises(UsageError, match="prores cannot be written in mp4"):
        EncodeSettings(codec="prores", container="mp4").validate()  # type: ignore[arg-type]
