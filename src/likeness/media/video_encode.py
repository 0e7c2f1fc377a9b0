"""Chunked, resumable encoding of upright RGB frames into a job folder: :class:`VideoEncoder`.

This is a building block for ``likeness.disclosure``, not a writer of outputs. Invariant 1 says only
the disclosure module puts media on disk under a name a user sees; so the encoder writes only inside
the job folder its caller gives it and returns the finished file there (:attr:`EncodedVideo.path`).
It never writes, renames to, or even knows the final output name. The disclosure writer labels and
watermarks every frame before :meth:`VideoEncoder.write`, signs the finished file, and renames it to
the final name itself (same filesystem: keep the job folder next to the output).

Job folder layout (everything else in the folder is left alone)::

    manifest.json            fingerprint (source file, settings, caller key), caller meta, finished segments
    seg_00000.mkv / .json    a finished segment and its packet timestamps (exact, in the source time base)
    seg_00003.partial.mkv    the segment being encoded (deleted or overwritten on resume)
    output.partial.mp4       the final mux in progress
    output.mp4               the finished file, handed back by finish()

Segments. Frames are encoded in segments of ``segment_seconds`` (each a fresh encoder, so each starts
with a keyframe). A segment is finished when the first frame of the next one arrives (or at
:meth:`finish`): its file is flushed, hashed, fsynced and renamed, then the manifest is replaced
atomically. A kill at any moment leaves at most a ``.partial`` file and no ``output.*``. Reopening the
same job folder with the same source, settings and ``key`` reuses every finished segment whose hash
still matches; the caller resumes decoding after :attr:`VideoEncoder.resume_after_pts`. Because a
segment boundary always falls on the frame where the previous run started a new segment, a resumed
job produces the same packets as an uninterrupted one.

Timing. Each frame keeps its source pts and time base (CFR stays CFR, VFR keeps every frame's time);
the average rate is written as the stream rate. Segment files are Matroska for every codec, but their
timestamps are taken from the ``.json`` side file, so Matroska's millisecond clock never rounds them.

Rotation (``settings.rotation``). ``"bake"`` (default): frames are written upright and the output
carries no display matrix, so every player, editor and watermark reader sees the same pixels the
label and watermark were placed on. ``"keep"``: frames are turned back to the coded orientation and
the source's display matrix is written, for workflows that must keep the camera's coded layout.

Audio (``settings.audio``). ``"copy"`` (default): every audio stream is remuxed packet for packet,
untouched, with its original timestamps; where the output container cannot carry the codec (e.g.
Vorbis or PCM in MP4) that stream alone is re-encoded — PCM to ALAC (lossless), anything else to AAC —
and :attr:`EncodedVideo.notes` says so. ``"copy-only"``: refuse (before any frame is encoded) instead
of re-encoding. ``"none"``: no audio. Subtitle, data and cover-art streams are not carried.

Colour. YUV outputs are converted with the matrix the reader decoded with (:attr:`VideoInfo.color_matrix`)
and tagged with it, the source's primaries and transfer, limited range.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import heapq
import io
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np

from likeness.errors import BadInput, LikenessError, UsageError
from likeness.fsutil import fsync_dir, fsync_file, sha256_file
from likeness.media.background import SerialWorker
from likeness.media.video_probe import MATRICES, VideoInfo

VideoCodec = Literal["h264", "ffv1", "prores"]
Container = Literal["mp4", "mov", "matroska"]
AudioPolicy = Literal["copy", "copy-only", "none"]
RotationPolicy = Literal["bake", "keep"]

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
_CONTAINERS = {"h264": ("mp4", ".mp4", "video/mp4"), "ffv1": ("matroska", ".mkv", "video/x-matroska")}
_CONTAINERS["prores"] = ("mov", ".mov", "video/quicktime")
_CONTAINER_FILES = {
    "mp4": (".mp4", "video/mp4"),
    "mov": (".mov", "video/quicktime"),
    "matroska": (".mkv", "video/x-matroska"),
}
# Containers each codec may be written in (the first is the default). FFV1 in MP4 is read by
# ffmpeg-based tools and, unlike Matroska, can carry an embedded C2PA manifest.
_CODEC_CONTAINERS: dict[str, tuple[str, ...]] = {
    "h264": ("mp4", "mov", "matroska"),
    "ffv1": ("matroska", "mp4"),
    "prores": ("mov",),
}
_PRORES_PROFILES = {"proxy": 0, "lt": 1, "standard": 2, "hq": 3, "4444": 4}
# Audio codecs copied as they are into MP4 / MOV (widely playable there). Matroska takes anything
# ffmpeg can mux into it. The rest is re-encoded under audio="copy".
_MP4_AUDIO = {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}
_MOV_AUDIO = {"aac", "mp3", "alac", "ac3", "eac3"}
_X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)


@dataclass(frozen=True)
class EncodeSettings:
    """How to encode. ``codec``: ``"h264"`` → MP4 (libx264, ``crf``/``preset``, yuv420p);
    ``"ffv1"`` → MKV, lossless RGB (bit-exact to the frames written: the VFX intermediate);
    ``"prores"`` → MOV (prores_ks, ``prores_profile``; 10-bit 4:2:2, 4:4:4 for ``"4444"``).
    ``container`` overrides the codec's default container (h264: mp4/mov/matroska; ffv1:
    matroska/mp4; prores: mov)."""

    codec: VideoCodec = "h264"
    crf: int = 18
    preset: str = "medium"
    prores_profile: str = "hq"
    segment_seconds: float = 10.0
    audio: AudioPolicy = "copy"
    rotation: RotationPolicy = "bake"
    threads: int = 0
    """Encoder threads; 0 lets the encoder choose."""
    container: Container | None = None

    def validate(self) -> None:
        if self.codec not in _CONTAINERS:
            raise UsageError(f"unknown video codec {self.codec!r}", hint="choose h264, ffv1 or prores")
        if self.container is not None and self.container not in _CODEC_CONTAINERS[self.codec]:
            raise UsageError(
                f"{self.codec} cannot be written in {self.container}",
                hint=f"choose one of {', '.join(_CODEC_CONTAINERS[self.codec])}",
            )
        if not 0 <= self.crf <= 51:
            raise UsageError(
                f"crf {self.crf} is outside 0–51", hint="18 is visually lossless, 23 the x264 default"
            )
        if self.preset not in _X264_PRESETS:
            raise UsageError(
                f"unknown x264 preset {self.preset!r}", hint=f"choose one of {', '.join(_X264_PRESETS)}"
            )
        if self.prores_profile not in _PRORES_PROFILES:
            raise UsageError(
                f"unknown ProRes profile {self.prores_profile!r}",
                hint=f"choose one of {', '.join(_PRORES_PROFILES)}",
            )
        if not self.segment_seconds > 0:
            raise UsageError(f"segment_seconds must be positive, not {self.segment_seconds}")
        if self.audio not in ("copy", "copy-only", "none"):
            raise UsageError(f"unknown audio policy {self.audio!r}", hint="choose copy, copy-only or none")
        if self.rotation not in ("bake", "keep"):
            raise UsageError(f"unknown rotation policy {self.rotation!r}", hint="choose bake or keep")

    @property
    def container_format(self) -> str:
        """The ffmpeg muxer name: ``container`` if given, else the codec's default."""
        return self.container or _CONTAINERS[self.codec][0]

    @property
    def suffix(self) -> str:
        return _CONTAINER_FILES[self.container_format][0]

    @property
    def media_type(self) -> str:
        return _CONTAINER_FILES[self.container_format][1]


@dataclass(frozen=True)
class SegmentRecord:
    """A finished segment, as listed in the manifest."""

    number: int
    file: str
    frames: int
    first_pts: int
    last_pts: int
    sha256: str


@dataclass(frozen=True)
class EncodedVideo:
    """The finished temp file inside the job folder, for the disclosure writer to sign and rename."""

    path: Path
    media_type: str
    codec: str
    frames: int
    duration: float
    segments: int
    reused_segments: int
    audio: tuple[str, ...]
    """One line per source audio stream: how it got into the output."""
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class _AudioPlan:
    index: int
    action: Literal["copy", "encode", "drop"]
    target: str | None
    note: str


@dataclass
class _Segment:
    number: int
    container: Any
    stream: Any
    partial: Path
    first_pts: int
    first_time: Fraction
    last_pts: int
    frames: int = 0
    packets: list[list[int]] = field(default_factory=list)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _our_files(job_dir: Path) -> list[Path]:
    patterns = (
        "seg_*.mkv",
        "seg_*.json",
        "seg_*.tmp",
        "output.*",
        "output.partial.*",
        MANIFEST,
        MANIFEST + ".tmp",
    )
    found: set[Path] = set()
    for pattern in patterns:
        found.update(job_dir.glob(pattern))
    return sorted(found)


def _colour_detail(pixel_format: str | None) -> tuple[float, str] | None:
    """The colour samples a pixel format keeps per pixel (1 for 4:4:4 and RGB, 0.25 for 4:2:0) and
    its name (``4:2:0``, ``RGB``), from libav's own description of the format; ``None`` for grey,
    palettes and names libav does not know."""
    import av

    try:
        described = av.VideoFormat(pixel_format or "", 16, 16)
    except ValueError:
        return None
    parts = described.components
    if len(parts) < 3 or described.has_palette:
        return None
    luma, chroma = parts[0], parts[1]
    share = (chroma.width * chroma.height) / (luma.width * luma.height)
    if described.is_rgb:
        return share, "RGB"
    across = 4 * chroma.width // luma.width
    return share, f"4:{across}:{across if chroma.height == luma.height else 0}"


def _after(last_dts: int | None, pts: int, dts: int, segment: Path) -> int:
    """A packet's decoding time, moved just after the previous packet's where it is not after it.

    Each segment has its own encoder, which starts its decoding times before its first frame's
    presentation time by as long as its frames take to reorder: after a pause in the footage (frames
    dropped, or variable timing) that can reach back before the previous segment's last packet, and
    a container refuses decoding times that go back. Moved up by a tick at a time, they stay at or
    before the packets' presentation times, which are not touched (frames show when they did)."""
    if last_dts is None or dts > last_dts:
        return dts
    if last_dts + 1 > pts:
        raise LikenessError(
            f"{segment}: its frames cannot follow the previous segment's in this time base (decoding time "
            f"{last_dts + 1} after presentation time {pts})",
            hint="encode again with longer segments (--segment-seconds)",
        )
    return last_dts + 1


def remove_job(job_dir: str | Path) -> None:
    """Delete what a :class:`VideoEncoder` wrote in ``job_dir`` (and the folder if that empties it)."""
    job_dir = Path(job_dir)
    if not job_dir.is_dir():
        return
    for path in [*_our_files(job_dir), job_dir / ".lock"]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    with contextlib.suppress(OSError):
        job_dir.rmdir()


def plan_audio(info: VideoInfo, settings: EncodeSettings) -> list[_AudioPlan]:
    """Decide, per source audio stream, copy / re-encode / drop (and refuse early under copy-only)."""
    plans: list[_AudioPlan] = []
    for audio in info.audio:
        if settings.audio == "none":
            plans.append(
                _AudioPlan(audio.index, "drop", None, f"audio #{audio.index} ({audio.codec}) dropped")
            )
            continue
        if _can_copy(audio.codec, settings.container_format):
            plans.append(
                _AudioPlan(audio.index, "copy", None, f"audio #{audio.index} ({audio.codec}) copied")
            )
            continue
        if settings.audio == "copy-only":
            raise UsageError(
                f"{info.path}: audio stream #{audio.index} ({audio.codec}) cannot be copied into "
                f"{settings.container_format.upper()} and audio='copy-only' forbids re-encoding it",
                hint="use the lossless ffv1/MKV output (Matroska carries any audio), or allow re-encoding",
            )
        target = "alac" if audio.codec.startswith("pcm_") else "aac"
        plans.append(
            _AudioPlan(
                audio.index,
                "encode",
                target,
                f"audio #{audio.index} ({audio.codec}) re-encoded to {target.upper()}: "
                f"{settings.container_format.upper()} cannot carry {audio.codec}"
                + (" (lossless)" if target == "alac" else ""),
            )
        )
    return plans


def _can_copy(codec: str, container: str) -> bool:
    if container == "mp4":
        return codec in _MP4_AUDIO
    if container == "mov":
        return codec in _MOV_AUDIO or codec.startswith("pcm_")
    import av

    with av.open(io.BytesIO(), "w", format=container) as probe:
        return codec in probe.supported_codecs


class VideoEncoder:
    """Encode upright RGB frames into ``job_dir`` in resumable segments; see the module docstring.

    ``key``: strings that must match for a job folder to be resumed (e.g. the request's hash, the
    source's sha256, model versions): a mismatch discards the old segments. ``meta``: JSON data
    stored when the job is created and handed back unchanged on resume (e.g. the output id that
    every frame's watermark carries) — read it from :attr:`meta`, not from what you passed.
    ``on_segment`` is called with each :class:`SegmentRecord` as it is finished (for progress).
    ``checkpoint`` is called as each segment is finished; the JSON data it returns is stored in
    the same atomic manifest write that lists the segment, and handed back on resume as
    :attr:`resume_state` (e.g. the consent decisions the frames so far were made under). It is
    called after the caller has produced the first frame of the next segment, so it may describe
    a little more than the finished segments hold, never less; it is always called in the caller's
    thread.

    ``background``: convert and encode in a background thread (:class:`~likeness.media.background.
    SerialWorker`), at most ``queue_frames`` frames behind :meth:`write`, so the caller's next frame is
    made on the other core meanwhile. :meth:`write` copies the pixels first (the caller may reuse its
    array); the packets, segments and manifests are the same as without it. An error in the thread
    (a full disk) is raised by the next :meth:`write` or by :meth:`finish`. ``on_segment`` is then
    called in that thread. ``busy_seconds``: time spent converting and encoding frames (either thread;
    not the last segment's flush in :meth:`finish`).
    """

    def __init__(
        self,
        job_dir: str | Path,
        source: VideoInfo,
        settings: EncodeSettings | None = None,
        *,
        key: Mapping[str, str] | None = None,
        meta: Mapping[str, Any] | None = None,
        on_segment: Callable[[SegmentRecord], None] | None = None,
        checkpoint: Callable[[], Mapping[str, Any]] | None = None,
        background: bool = False,
        queue_frames: int = 4,
    ) -> None:
        self.settings = settings or EncodeSettings()
        self.settings.validate()
        self.source = source
        self.job_dir = Path(job_dir)
        self.on_segment = on_segment
        self.checkpoint = checkpoint
        self.resume_state: dict[str, Any] = {}
        """What ``checkpoint`` returned when the last reused segment was finished ({} for a fresh job)."""
        self.notes: list[str] = []
        self.audio_plan = plan_audio(source, self.settings)
        self.job_dir.mkdir(parents=True, exist_ok=True)
        self._lock = self._acquire_lock()
        self._time_base = Fraction(source.time_base)
        self._geometry()
        stat = source.path.stat()
        self._fingerprint = {
            "version": MANIFEST_VERSION,
            "source": {
                "path": str(source.path.resolve()),
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
            },
            "settings": asdict(self.settings),
            "key": {str(k): str(v) for k, v in (key or {}).items()},
        }
        self.segments: list[SegmentRecord] = []
        self.meta: dict[str, Any] = {}
        self._load_or_start(dict(meta or {}))
        self.reused_segments = len(self.segments)
        self._segment: _Segment | None = None
        self._last_pts: int | None = self.resume_after_pts
        self._segment_start: Fraction | None = None
        """Where the segment the caller is writing into started (the caller's thread's view)."""
        self._finished: EncodedVideo | None = None
        self.busy_seconds = 0.0
        self._worker = SerialWorker(queue_frames, name=f"encode {self.job_dir.name}") if background else None

    # -- job state -----------------------------------------------------------------------------------

    def _acquire_lock(self) -> Any:
        handle = (self.job_dir / ".lock").open("a+")
        try:
            import fcntl
        except ImportError:  # not POSIX: no advisory lock
            return handle
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise UsageError(
                f"{self.job_dir}: this job folder is in use by another likeness process",
                hint="wait for it to finish, or stop it first",
            ) from exc
        return handle

    def _load_or_start(self, meta: dict[str, Any]) -> None:
        manifest = _read_json(self.job_dir / MANIFEST)
        if isinstance(manifest, dict) and manifest.get("fingerprint") == self._fingerprint:
            for raw in manifest.get("segments", []):
                try:
                    record = SegmentRecord(**raw)
                except TypeError:
                    self.notes.append(
                        "the manifest lists a segment it cannot describe; re-encoding from there"
                    )
                    break
                path = self.job_dir / record.file
                stamps = _read_json(self.job_dir / f"seg_{record.number:05d}.json")
                if (
                    record.number != len(self.segments)
                    or not path.is_file()
                    or not isinstance(stamps, dict)
                    or len(stamps.get("packets", [])) < record.frames
                    or sha256_file(path) != record.sha256
                ):
                    self.notes.append(f"segment {record.number} was damaged; re-encoding from there")
                    break
                self.segments.append(record)
            self.meta = dict(manifest.get("meta", {}))
            state = manifest.get("resume_state")
            if self.segments and isinstance(state, dict):
                self.resume_state = state
            # Forget anything after the last good segment.
            for stale in _our_files(self.job_dir):
                if stale.name.startswith("seg_") and not any(
                    stale.name.startswith(r.file[:9]) for r in self.segments
                ):
                    stale.unlink()
                elif stale.name.startswith("output"):
                    stale.unlink()
            self._save_manifest()
            return
        if manifest is not None:
            self.notes.append(
                "the job folder held a different job (source, settings or key changed); started over"
            )
        for stale in _our_files(self.job_dir):
            stale.unlink()
        self.meta = meta
        self._save_manifest()

    def _save_manifest(self) -> None:
        _write_json_atomic(
            self.job_dir / MANIFEST,
            {
                "fingerprint": self._fingerprint,
                "meta": self.meta,
                "resume_state": self.resume_state,
                "segments": [asdict(s) for s in self.segments],
            },
        )

    @property
    def resume_frames(self) -> int:
        """Frames already encoded in finished segments (the index of the next frame to write)."""
        return sum(s.frames for s in self.segments)

    @property
    def resume_after_pts(self) -> int | None:
        """The pts of the last finished frame: write only frames after it. ``None`` for a fresh job."""
        return self.segments[-1].last_pts if self.segments else None

    # -- geometry and colour ---------------------------------------------------------------------------

    def _geometry(self) -> None:
        info, settings = self.source, self.settings
        self._unrotate = info.rotation if settings.rotation == "keep" else 0
        width, height = (info.width, info.height)
        if self._unrotate in (90, 270):
            width, height = height, width
        self._pix_fmt = {
            "h264": "yuv420p",
            "ffv1": "bgr0",
            "prores": "yuv444p10le" if settings.prores_profile == "4444" else "yuv422p10le",
        }[settings.codec]
        pad_w = width % 2 if self._pix_fmt.startswith(("yuv420", "yuv422")) else 0
        pad_h = height % 2 if self._pix_fmt.startswith("yuv420") else 0
        if pad_w or pad_h:
            self.notes.append(
                f"{width}×{height} padded to {width + pad_w}×{height + pad_h} (edge pixels repeated): "
                f"{self._pix_fmt} needs even dimensions"
            )
        self._pad = (pad_h, pad_w)
        self._size = (width + pad_w, height + pad_h)
        kept, written = _colour_detail(info.pixel_format), _colour_detail(self._pix_fmt)
        if kept is not None and written is not None and written[0] < kept[0]:
            self.notes.append(
                f"the source's colour detail ({info.pixel_format}, {kept[1]}) is written as "
                f"{written[1]} ({self._pix_fmt}); --codec ffv1 keeps it whole"
            )
        if info.color_matrix in MATRICES:
            self._matrix = info.color_matrix
        else:
            self._matrix = "bt709" if info.height >= 720 else "bt601"

    def _rgb_frame(self, pixels: np.ndarray) -> Any:
        """The frame to encode as an RGB ``av.VideoFrame`` (a copy of ``pixels``), turned and padded."""
        import av

        if self._unrotate:
            pixels = np.rot90(pixels, k=self._unrotate // 90)
        if self._pad != (0, 0):
            pixels = np.pad(pixels, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")

    def _to_frame(self, frame: Any, pts: int) -> Any:
        """``frame`` (from :meth:`_rgb_frame`) in the encoder's pixel format, stamped ``pts``."""
        if self._pix_fmt == "bgr0":
            frame = frame.reformat(format="bgr0")
        else:
            frame = frame.reformat(
                format=self._pix_fmt, dst_colorspace=MATRICES[self._matrix][0], dst_color_range="MPEG"
            )
        frame.pts = pts
        frame.time_base = self._time_base
        return frame

    # -- writing -------------------------------------------------------------------------------------

    def write(self, pixels: np.ndarray, pts: int) -> None:
        """Encode one upright H×W×3 uint8 RGB frame shown at ``pts`` (source time base)."""
        if self._finished is not None:
            raise RuntimeError("write() after finish()")
        expected = (self.source.height, self.source.width, 3)
        if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.shape != expected:
            raise ValueError(
                f"frames must be {expected} uint8 RGB (the source's upright size), got "
                f"{getattr(pixels, 'shape', None)} {getattr(pixels, 'dtype', type(pixels).__name__)}"
            )
        pts = int(pts)
        if self._last_pts is not None and pts <= self._last_pts:
            raise ValueError(
                f"pts must increase: {pts} after {self._last_pts} "
                "(a resumed job takes only frames after resume_after_pts)"
            )
        shown = pts * self._time_base
        starts = self._segment_start is None or shown - self._segment_start >= Fraction(
            self.settings.segment_seconds
        )
        state = self._checkpoint() if starts and self._segment_start is not None else None
        if starts:
            self._segment_start = shown
        self._last_pts = pts
        if self._worker is None:
            self._encode(self._rgb_frame(pixels), pts, starts, state)
        else:
            self._worker.submit(functools.partial(self._encode, self._rgb_frame(pixels), pts, starts, state))

    def _checkpoint(self) -> dict[str, Any] | None:
        return None if self.checkpoint is None else dict(self.checkpoint())

    def _encode(self, rgb: Any, pts: int, starts: bool, state: dict[str, Any] | None) -> None:
        """Encode one frame (in the worker thread with ``background``); a segment ``starts`` with it."""
        started = time.perf_counter()
        if starts:
            self._close_segment(state)
            self._segment = self._open_segment(pts)
        segment = self._segment
        assert segment is not None
        for packet in segment.stream.encode(self._to_frame(rgb, pts)):
            self._mux_segment_packet(segment, packet)
        segment.frames += 1
        segment.last_pts = pts
        self.busy_seconds += time.perf_counter() - started

    def _open_segment(self, pts: int) -> _Segment:
        import av

        number = len(self.segments)
        partial = self.job_dir / f"seg_{number:05d}.partial.mkv"
        container = av.open(str(partial), "w", format="matroska")
        settings, info = self.settings, self.source
        codec = {"h264": "libx264", "ffv1": "ffv1", "prores": "prores_ks"}[settings.codec]
        stream = container.add_stream(codec, rate=info.fps)
        stream.width, stream.height = self._size
        stream.pix_fmt = self._pix_fmt
        ctx = stream.codec_context
        ctx.time_base = self._time_base
        ctx.thread_count = settings.threads
        if info.sample_aspect_ratio:
            ctx.sample_aspect_ratio = info.sample_aspect_ratio
        if settings.codec == "h264":
            stream.options = {"crf": str(settings.crf), "preset": settings.preset}
        elif settings.codec == "ffv1":
            stream.options = {"level": "3", "slicecrc": "1", "g": "1"}
        else:
            stream.options = {"profile": str(_PRORES_PROFILES[settings.prores_profile])}
        ctx.colorspace = 0 if self._pix_fmt == "bgr0" else MATRICES[self._matrix][1]
        ctx.color_range = 1 if self._pix_fmt != "bgr0" else 2
        ctx.color_primaries = info.color_primaries
        ctx.color_trc = info.color_trc
        return _Segment(number, container, stream, partial, pts, pts * self._time_base, pts)

    @staticmethod
    def _mux_segment_packet(segment: _Segment, packet: Any) -> None:
        segment.packets.append(
            [int(packet.pts), int(packet.dts), int(packet.duration or 0), 1 if packet.is_keyframe else 0]
        )
        segment.container.mux(packet)

    def _close_segment(self, state: dict[str, Any] | None) -> None:
        """Finish the segment in progress; ``state`` is what ``checkpoint`` said when it ended."""
        segment = self._segment
        if segment is None:
            return
        for packet in segment.stream.encode(None):
            self._mux_segment_packet(segment, packet)
        segment.container.close()
        self._segment = None
        fsync_file(segment.partial)
        final = self.job_dir / f"seg_{segment.number:05d}.mkv"
        record = SegmentRecord(
            number=segment.number,
            file=final.name,
            frames=segment.frames,
            first_pts=segment.first_pts,
            last_pts=segment.last_pts,
            sha256=sha256_file(segment.partial),
        )
        extradata = segment.stream.codec_context.extradata or b""
        _write_json_atomic(
            self.job_dir / f"seg_{segment.number:05d}.json",
            {
                "time_base": str(self._time_base),
                "packets": segment.packets,
                "extradata_sha256": hashlib.sha256(extradata).hexdigest(),
            },
        )
        os.replace(segment.partial, final)
        fsync_dir(self.job_dir)
        self.segments.append(record)
        if state is not None:
            self.resume_state = state
        self._save_manifest()
        if self.on_segment is not None:
            self.on_segment(record)

    # -- finishing -------------------------------------------------------------------------------------

    def finish(self) -> EncodedVideo:
        """Close the last segment, join the segments, mux the audio; return the file in the job folder."""
        if self._finished is not None:
            return self._finished
        if self._worker is not None:
            worker, self._worker = self._worker, None
            worker.join()  # the frames still queued are encoded first; a failed one raises here
        self._close_segment(self._checkpoint() if self._segment is not None else None)
        if not self.segments:
            raise BadInput(f"{self.source.path}: no frames were encoded", hint="the video yielded no frames")
        self._check_segments_join()
        settings = self.settings
        partial = self.job_dir / f"output.partial{settings.suffix}"
        final = self.job_dir / f"output{settings.suffix}"
        try:
            audio_lines = self._mux_final(partial)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            raise
        fsync_file(partial)
        os.replace(partial, final)
        fsync_dir(self.job_dir)
        first, last = self.segments[0], self.segments[-1]
        last_stamps = _read_json(self.job_dir / f"seg_{last.number:05d}.json") or {"packets": []}
        last_duration = max((p[2] for p in last_stamps["packets"] if p[0] == last.last_pts), default=0)
        if not last_duration:
            last_duration = round(1 / (self.source.fps * self._time_base)) if self.source.fps else 0
        duration = float((last.last_pts - first.first_pts + last_duration) * self._time_base)
        self._finished = EncodedVideo(
            path=final,
            media_type=settings.media_type,
            codec=settings.codec,
            frames=sum(s.frames for s in self.segments),
            duration=duration,
            segments=len(self.segments),
            reused_segments=self.reused_segments,
            audio=tuple(audio_lines),
            notes=(*self.source.notes, *self.notes),
        )
        return self._finished

    def _check_segments_join(self) -> None:
        hashes = {
            (_read_json(self.job_dir / f"seg_{s.number:05d}.json") or {}).get("extradata_sha256")
            for s in self.segments
        }
        if len(hashes) != 1:
            raise LikenessError(
                f"{self.job_dir}: the segments were encoded with different codec headers "
                "and cannot be joined",
                hint="delete the job folder and encode again",
            )

    def _video_packets(self, out_stream: Any) -> Iterator[tuple[float, int, Any]]:
        import av

        tb = self._time_base
        last_dts: int | None = None
        for record in self.segments:
            stamps = _read_json(self.job_dir / f"seg_{record.number:05d}.json")["packets"]
            count = 0
            with av.open(str(self.job_dir / record.file)) as segment:
                stream = segment.streams.video[0]
                for packet in segment.demux(stream):
                    if not packet.size:
                        continue
                    if count >= len(stamps):
                        break
                    pts, dts, duration, _key = stamps[count]
                    count += 1
                    dts = _after(last_dts, pts, dts, self.job_dir / record.file)
                    last_dts = dts
                    packet.pts, packet.dts = pts, dts
                    packet.duration = duration
                    packet.time_base = tb
                    packet.stream = out_stream
                    yield (float(dts * tb), 0, packet)
            if count != len(stamps) or count < record.frames:
                raise LikenessError(
                    f"{self.job_dir / record.file}: its packets do not match its side file "
                    f"({count} read, {len(stamps)} listed)",
                    hint="delete the job folder and encode again",
                )

    def _audio_packets(
        self, source: Any, routes: dict[int, tuple[str, Any]]
    ) -> Iterator[tuple[float, int, Any]]:
        from av.stream import Discard

        streams = [source.streams[i] for i in routes]
        if not streams:
            return
        for stream in source.streams:
            if stream.index not in routes:
                stream.discard = Discard.all
        last: dict[int, float] = {}
        for packet in source.demux(*streams):
            action, out_stream = routes[packet.stream.index]
            if action == "copy":
                if packet.size:
                    yield self._timed(packet, out_stream, last)
                continue
            for frame in packet.decode() if packet.size else []:
                for encoded in out_stream.encode(frame):
                    yield self._timed(encoded, out_stream, last)
        for action, out_stream in routes.values():
            if action == "encode":
                for encoded in out_stream.encode(None):
                    yield self._timed(encoded, out_stream, last)

    @staticmethod
    def _timed(packet: Any, out_stream: Any, last: dict[int, float]) -> tuple[float, int, Any]:
        stamp = packet.dts if packet.dts is not None else packet.pts
        when = float(stamp * packet.time_base) if stamp is not None else last.get(out_stream.index, 0.0)
        last[out_stream.index] = when
        packet.stream = out_stream
        return (when, 1 + out_stream.index, packet)

    def _mux_final(self, partial: Path) -> list[str]:
        import av

        settings = self.settings
        options = {"movflags": "+faststart"} if settings.container_format in ("mp4", "mov") else {}
        lines: list[str] = []
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(
                av.open(str(partial), "w", format=settings.container_format, container_options=options)
            )
            first = stack.enter_context(av.open(str(self.job_dir / self.segments[0].file)))
            video = out.add_stream_from_template(first.streams.video[0])
            video.time_base = self._time_base
            video.codec_context.framerate = self.source.fps
            if self._unrotate:
                video.set_display_rotation(-self._unrotate)
            routes: dict[int, tuple[str, Any]] = {}
            source = None
            if any(plan.action != "drop" for plan in self.audio_plan):
                source = stack.enter_context(av.open(str(self.source.path), metadata_errors="replace"))
            for plan in self.audio_plan:
                lines.append(plan.note)
                if plan.action == "drop" or source is None:
                    continue
                in_stream = source.streams[plan.index]
                if plan.action == "copy":
                    out_stream = out.add_stream_from_template(in_stream)
                else:
                    ctx = in_stream.codec_context
                    out_stream = out.add_stream(plan.target, rate=ctx.sample_rate, layout=ctx.layout.name)
                    if plan.target == "aac":
                        out_stream.bit_rate = 96_000 * max(1, ctx.channels)
                    else:  # ALAC at the source's sample size, so the samples come back identical
                        out_stream.codec_context.format = "s16p" if ctx.format.bytes <= 2 else "s32p"
                language = in_stream.metadata.get("language")
                if language:
                    out_stream.metadata["language"] = language
                routes[plan.index] = (plan.action, out_stream)
            streams = [self._video_packets(video)]
            if source is not None:
                streams.append(self._audio_packets(source, routes))
            for _, _, packet in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
                out.mux(packet)
        return lines

    # -- lifetime --------------------------------------------------------------------------------------

    def close(self) -> None:
        """Abandon the segment in progress (finished segments stay for a resume) and release the folder."""
        if self._worker is not None:
            worker, self._worker = self._worker, None
            worker.abandon()
        segment = self._segment
        self._segment = None
        if segment is not None:
            with contextlib.suppress(Exception):
                segment.container.close()
            with contextlib.suppress(FileNotFoundError):
                segment.partial.unlink()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
