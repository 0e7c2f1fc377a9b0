"""What a video file holds, checked before anything is decoded: :func:`probe_video` → :class:`VideoInfo`.

Refusals raise :class:`~likeness.errors.BadInput` naming the file and the reason: missing or empty
file, a container ffmpeg cannot read, no video stream (audio only, or only cover art), dimensions
over the limit (checked from the container header, before a single frame is decoded), a codec this
build cannot decode, a first frame that does not decode.

Colour: :attr:`VideoInfo.color_matrix` is the YUV↔RGB matrix the reader decodes with and the encoder
encodes with, so a decode → encode round trip keeps colours. A tagged stream uses its tag; an untagged
one is read as BT.709 from 720 lines up and BT.601 below (what mpv and VLC do). Primaries and transfer
tags are passed through unchanged: pixels are never linearised, only converted YUV↔RGB, so an HLG or
PQ clip keeps its (8-bit quantised) code values and its tags.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from likeness.errors import BadInput

# 8K DCI is 8192×4320 (35.4 MP): allowed. Anything wider or taller, or over 40 MP a frame, is refused.
DEFAULT_MAX_SIDE = 8192
DEFAULT_MAX_FRAME_PIXELS = 40_000_000
# Packets whose timestamps are read (not decoded) to tell constant from variable frame rate.
VFR_SCAN_PACKETS = 600

# AVColorSpace values (libavutil/pixfmt.h) → the matrix name used here.
_MATRIX_BY_TAG = {
    0: "rgb",
    1: "bt709",
    4: "fcc",
    5: "bt601",
    6: "bt601",
    7: "smpte240m",
    9: "bt2020",
    10: "bt2020",
}
# matrix name → (swscale colour space name for reformat(), AVColorSpace tag written on output)
MATRICES: dict[str, tuple[str, int]] = {
    "bt709": ("ITU709", 1),
    "bt601": ("ITU601", 6),
    "bt2020": ("BT2020", 9),
    "fcc": ("FCC", 4),
    "smpte240m": ("SMPTE240M", 7),
}
# Default primaries / transfer tags for an untagged stream, by the matrix guessed for it.
_DEFAULT_PRIMARIES = {"bt709": 1, "bt601": 6, "bt2020": 9, "fcc": 4, "smpte240m": 7}
_DEFAULT_TRC = {"bt709": 1, "bt601": 6, "bt2020": 14, "fcc": 4, "smpte240m": 7}
_UNSPECIFIED = 2
_HDR_TRC = {16: "PQ (HDR10)", 18: "HLG"}
# ffmpeg's demuxers for single pictures: a JPEG opens as a one-frame "video" otherwise.
_STILL_FORMATS = {"image2", "image2pipe", "webp_pipe", "png_pipe", "jpeg_pipe"}


@dataclass(frozen=True)
class AudioStreamInfo:
    """One audio stream, copied untouched into the output when the container can hold its codec."""

    index: int
    codec: str
    sample_rate: int
    channels: int
    layout: str
    duration: float | None
    bit_rate: int | None
    language: str | None


@dataclass(frozen=True)
class VideoInfo:
    """A probed video file. ``width``/``height`` are the upright (displayed) size, rotation applied."""

    path: Path
    size_bytes: int
    container: str
    codec: str
    width: int
    height: int
    coded_width: int
    coded_height: int
    rotation: int
    """Degrees clockwise the coded picture is turned for display: 0, 90, 180 or 270 (phones: 90)."""
    fps: Fraction
    """Average frame rate (for a VFR clip: frames over duration)."""
    time_base: Fraction
    start_time: float
    duration: float | None
    """Seconds of video, from the container; ``None`` when the container does not say."""
    frame_count: int
    """Frames in the stream: exact when ``frame_count_exact`` (the container indexes them),
    else duration × fps."""
    frame_count_exact: bool
    is_vfr: bool
    """True when frame durations in the first packets differ by more than rounding."""
    pixel_format: str
    bit_depth: int
    color_matrix: str
    color_range: str
    color_primaries: int
    color_trc: int
    sample_aspect_ratio: Fraction | None
    audio: tuple[AudioStreamInfo, ...] = ()
    notes: tuple[str, ...] = field(default=())
    """Things the caller may want to tell the user (HDR handled as 8-bit, other streams dropped, …)."""

    @property
    def has_audio(self) -> bool:
        return bool(self.audio)

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    @property
    def frame_duration(self) -> float:
        """Nominal seconds per frame (1 / fps)."""
        return float(1 / self.fps) if self.fps else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        for key in ("fps", "time_base", "sample_aspect_ratio"):
            value = data[key]
            data[key] = None if value is None else str(value)
        return data


def _sniff(head: bytes) -> str:
    if head.startswith(b"\xff\xd8\xff"):
        return "a JPEG picture (name it .jpg: likeness reads a file by its suffix)"
    if head.startswith(b"\x89PNG"):
        return "a PNG picture (name it .png: likeness reads a file by its suffix)"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    if head[4:8] == b"ftyp" or head.startswith(b"\x1aE\xdf\xa3") or head.startswith(b"RIFF"):
        return "a video container whose contents are damaged or truncated"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "a text file"
    return "unknown binary data"


VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mxf", ".mts", ".m2ts", ".ts", ".mpg", ".mpeg"}
)
"""File suffixes treated as video without looking inside."""


def looks_like_video(path: str | Path) -> bool:
    """Whether ``path`` should go down the video road: a video suffix, or a video container's header.

    Cheap (reads 16 bytes, decodes nothing): it routes a job, it does not promise the file is
    usable — :func:`probe_video` says that.
    """
    path = Path(path)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError:
        return False
    if head[4:8] == b"ftyp":
        return head[8:12] not in (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1")
    return head.startswith(b"\x1aE\xdf\xa3") or (head.startswith(b"RIFF") and head[8:12] == b"AVI ")


def check_file(path: Path) -> int:
    """Return the file's size, or raise :class:`BadInput` for a missing, unreadable or empty file."""
    if not path.exists():
        raise BadInput(f"{path}: file not found", hint="check the path")
    if path.is_dir():
        raise BadInput(f"{path}: is a folder, not a video file", hint="pass a video file")
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as exc:
        raise BadInput(f"{path}: cannot be read ({exc.strerror})", hint="check its permissions") from exc
    if size == 0:
        raise BadInput(f"{path}: the file is empty (0 bytes)", hint="re-export or re-copy the video")
    return size


def open_input(path: Path) -> Any:
    """Open ``path`` with PyAV, mapping ffmpeg's refusals to :class:`BadInput`."""
    import av

    try:
        return av.open(str(path), mode="r", metadata_errors="replace")
    except (av.error.InvalidDataError, av.error.EOFError) as exc:
        with path.open("rb") as handle:
            head = handle.read(16)
        raise BadInput(
            f"{path}: not a video container that can be read (it looks like {_sniff(head)})",
            hint="re-export the video as MP4 (H.264) or MKV, or re-copy it if the copy was cut short",
        ) from exc
    except av.FFmpegError as exc:
        raise BadInput(f"{path}: cannot be opened as a video ({exc})", hint="re-export the video") from exc


def video_stream_of(container: Any, path: Path) -> Any:
    """The first real video stream (cover art and thumbnails do not count), or :class:`BadInput`."""
    from av.stream import Disposition

    for stream in container.streams.video:
        if stream.disposition & (Disposition.attached_pic | Disposition.timed_thumbnails):
            continue
        if stream.codec_context is None:
            raise BadInput(
                f"{path}: its video stream uses a codec this build of ffmpeg does not know",
                hint="re-export the video as MP4 (H.264)",
            )
        return stream
    audio = len(container.streams.audio)
    what = f"{audio} audio stream{'s' if audio != 1 else ''}" if audio else "no audio either"
    raise BadInput(
        f"{path}: no video stream in this file (it has {what})",
        hint="pass a video file; an audio-only or still-image file cannot be processed as video",
    )


def check_dimensions(path: Path, width: int, height: int, *, max_side: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise BadInput(
            f"{path}: the video stream declares no picture size ({width}×{height}); it cannot be decoded",
            hint="re-export the video",
        )
    if max(width, height) > max_side or width * height > max_pixels:
        raise BadInput(
            f"{path}: frames of {width}×{height} ({width * height / 1e6:.1f} megapixels) are over the limit "
            f"of {max_side} px a side and {max_pixels / 1e6:.0f} megapixels a frame",
            hint="downscale the video first (8K DCI, 8192×4320, is the largest accepted)",
        )


def rotation_of(frame: Any) -> int:
    """Clockwise display rotation (0/90/180/270) from a decoded frame's display matrix."""
    counter_clockwise = round(frame.rotation or 0)
    return (-round(counter_clockwise / 90) * 90) % 360


def matrix_for(colorspace_tag: int, coded_height: int, pixel_format: str) -> str:
    if pixel_format.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "0rgb", "0bgr")):
        return "rgb"
    name = _MATRIX_BY_TAG.get(int(colorspace_tag))
    if name is None:
        name = "bt709" if coded_height >= 720 else "bt601"
    return name


def _bit_depth(frame_format: Any) -> int:
    try:
        return max(int(c.bits) for c in frame_format.components)
    except (AttributeError, ValueError):
        return 8


def _stream_duration(stream: Any, container: Any, *, only_stream: bool) -> float | None:
    if stream.duration is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag:
        try:
            hours, minutes, seconds = tag.split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        except ValueError:
            pass
    if only_stream and container.duration:
        return container.duration / 1_000_000
    return None


def _codec_name(ctx: Any) -> str:
    """The codec's own name ("mp3"), not the decoder's ("mp3float")."""
    return str(getattr(ctx.codec, "canonical_name", None) or ctx.name)


def _audio_info(container: Any) -> tuple[AudioStreamInfo, ...]:
    streams = []
    for stream in container.streams.audio:
        ctx = stream.codec_context
        duration = float(stream.duration * stream.time_base) if stream.duration else None
        streams.append(
            AudioStreamInfo(
                index=int(stream.index),
                codec=_codec_name(ctx) if ctx is not None else "unknown",
                sample_rate=int(getattr(ctx, "sample_rate", 0) or 0),
                channels=int(getattr(ctx, "channels", 0) or 0),
                layout=str(getattr(getattr(ctx, "layout", None), "name", "")),
                duration=duration,
                bit_rate=int(ctx.bit_rate) if ctx is not None and ctx.bit_rate else None,
                language=stream.metadata.get("language"),
            )
        )
    return tuple(streams)


def _scan(container: Any, stream: Any, path: Path) -> tuple[Any, list[int]]:
    """Decode the first frame and read the timestamps of the first packets (without decoding them)."""
    import av

    first = None
    stamps: list[int] = []
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size:
                stamps.append(int(packet.pts))
            if first is None:
                for frame in packet.decode():
                    first = frame
                    break
            if first is not None and len(stamps) >= VFR_SCAN_PACKETS:
                break
        if first is None:
            for frame in stream.decode(None):
                first = frame
                break
    except av.FFmpegError as exc:
        if first is None:
            raise BadInput(
                f"{path}: the first video frame cannot be decoded ({exc}); the file is corrupt or uses an "
                "unsupported codec variant",
                hint="re-export the video as MP4 (H.264)",
            ) from exc
    if first is None:
        raise BadInput(f"{path}: the video stream holds no frames", hint="re-export the video")
    return first, sorted(stamps)


def _is_vfr(stamps: list[int]) -> bool:
    if len(stamps) < 3:
        return False
    deltas = [b - a for a, b in itertools.pairwise(stamps) if b > a]
    if not deltas:
        return False
    low, high = min(deltas), max(deltas)
    median = sorted(deltas)[len(deltas) // 2]
    # Timestamps rounded to the container's clock (e.g. 29.97 fps in milliseconds: 33/34) are CFR.
    return high - low > max(2, 0.1 * median)


def probe_video(
    path: str | Path,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    max_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
) -> VideoInfo:
    """Describe the video at ``path``, or raise :class:`BadInput` saying why it cannot be used.

    Order of checks: file exists and is non-empty → container opens → a video stream exists →
    its declared size is within limits (from the header; nothing decoded yet) → a decoder exists →
    the first frame decodes (this also gives rotation and colour tags) → packet timestamps of the
    first ``VFR_SCAN_PACKETS`` packets tell CFR from VFR.
    """
    import av

    path = Path(path)
    size = check_file(path)
    container = open_input(path)
    try:
        if container.format.name in _STILL_FORMATS or container.format.name.endswith("_pipe"):
            raise BadInput(
                f"{path}: is a still image ({container.format.name}), not a video",
                hint="a picture is read as one when its name ends .jpg, .jpeg or .png",
            )
        stream = video_stream_of(container, path)
        ctx = stream.codec_context
        check_dimensions(path, int(ctx.width), int(ctx.height), max_side=max_side, max_pixels=max_pixels)
        try:
            av.Codec(ctx.name, "r")
        except (av.FFmpegError, ValueError) as exc:
            raise BadInput(
                f"{path}: its video codec {ctx.name!r} cannot be decoded by this build of ffmpeg",
                hint="re-export the video as MP4 (H.264)",
            ) from exc
        stream.thread_type = "AUTO"
        first, stamps = _scan(container, stream, path)
        rotation = rotation_of(first)
        coded_w, coded_h = int(first.width), int(first.height)
        check_dimensions(path, coded_w, coded_h, max_side=max_side, max_pixels=max_pixels)
        width, height = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)
        pixel_format = str(first.format.name)
        matrix = matrix_for(first.colorspace, coded_h, pixel_format)
        primaries = int(first.color_primaries) if hasattr(first, "color_primaries") else _UNSPECIFIED
        trc = int(first.color_trc) if hasattr(first, "color_trc") else _UNSPECIFIED
        if primaries == _UNSPECIFIED:
            primaries = _DEFAULT_PRIMARIES.get(matrix, 1)
        if trc == _UNSPECIFIED:
            trc = _DEFAULT_TRC.get(matrix, 1)
        notes: list[str] = []
        depth = _bit_depth(first.format)
        if depth > 8:
            notes.append(f"{depth}-bit video ({pixel_format}) is processed as 8-bit RGB")
        if trc in _HDR_TRC:
            notes.append(
                f"HDR transfer {_HDR_TRC[trc]}: pixels keep their code values and tags, quantised to 8 bits"
            )
        others = [s for s in container.streams if s.type not in ("video", "audio")]
        extra_video = [s for s in container.streams.video if s.index != stream.index]
        if others or extra_video:
            notes.append(
                f"{len(others) + len(extra_video)} other stream(s) (subtitles, data, cover art, extra video) "
                "are not carried into the output"
            )

        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
        duration = _stream_duration(stream, container, only_stream=len(container.streams) == 1)
        if stream.frames and stream.frames > 0:
            # MP4/MOV index every frame; other containers count packets (AVI adds a B-frame placeholder).
            frame_count, exact = int(stream.frames), container.format.name.startswith("mov")
        elif duration and fps:
            frame_count, exact = max(1, round(duration * float(fps))), False
        else:
            frame_count, exact = 0, False
        if not fps:
            fps = Fraction(frame_count, 1) / Fraction(duration) if duration and frame_count else Fraction(25)
        start = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
        sar = ctx.sample_aspect_ratio
        return VideoInfo(
            path=path,
            size_bytes=size,
            container=str(container.format.name),
            codec=_codec_name(ctx),
            width=width,
            height=height,
            coded_width=coded_w,
            coded_height=coded_h,
            rotation=rotation,
            fps=Fraction(fps),
            time_base=time_base,
            start_time=start,
            duration=duration,
            frame_count=frame_count,
            frame_count_exact=exact,
            is_vfr=_is_vfr(stamps),
            pixel_format=pixel_format,
            bit_depth=depth,
            color_matrix=matrix,
            color_range="full"
            if int(first.color_range) == 2 or pixel_format.startswith("yuvj")
            else "limited",
            color_primaries=primaries,
            color_trc=trc,
            sample_aspect_ratio=Fraction(sar) if sar else None,
            audio=_audio_info(container),
            notes=tuple(notes),
        )
    finally:
        container.close()
