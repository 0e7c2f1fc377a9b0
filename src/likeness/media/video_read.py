"""Streaming decode: :func:`open_frames` / :func:`iter_frames` yield upright RGB frames one at a time.

Memory is bounded by the decoder's own buffers plus the frame being handed out: nothing keeps
earlier frames. Each :class:`DecodedFrame` carries its presentation timestamp in the stream's time
base, so a variable-frame-rate clip can be re-encoded with its exact timing.

Damaged data. Fail-closed by default (``on_corrupt="stop"``): the first sign of damage raises
:class:`~likeness.errors.BadInput` naming the frame number and time. Signs of damage are: the
demuxer or decoder reporting invalid data, a frame flagged corrupt by the decoder, frames missing
from a constant-frame-rate stream (a timestamp gap over 2.5 frame durations), and a stream that ends
well before the duration its container declares. With ``on_corrupt="skip"`` (the user's opt-in) the
reader drops the damaged frames instead — after a decode error it also drops every frame until the
next keyframe, because those frames are predicted from the broken one — and lists each dropped span
in :attr:`FrameReader.skipped`. Frames keep their own pts, so an encoder fed the survivors holds the
last good picture over a gap and the audio stays in sync.

Out-of-order timestamps. A frame whose pts is not after the previous frame's (a repeat, or one that
goes backwards) cannot be encoded in order, so it is dropped in both modes (at a repeated time the
first frame shown is kept); each such drop is listed in :attr:`FrameReader.skipped` too (one span per
run of consecutive drops), so a job can say how many frames it left out and where
(:func:`dropped_note`).

Where: decoders running on several threads report an error a few packets after the damaged one, so
the error names the next frame number and brackets the time between the last good frame and the
packet that failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np

from likeness.errors import BadInput
from likeness.media.background import prefetch
from likeness.media.video_probe import (
    DEFAULT_MAX_FRAME_PIXELS,
    DEFAULT_MAX_SIDE,
    MATRICES,
    VideoInfo,
    open_input,
    probe_video,
    rotation_of,
    video_stream_of,
)

OnCorrupt = Literal["stop", "skip"]
# A gap larger than this many nominal frame durations in a CFR stream means frames were lost.
GAP_FRAMES = 2.5
# A stream ending this much (or 3 frames, whichever is more) before its declared duration is cut short.
EARLY_END_S = 0.5


@dataclass(frozen=True)
class DecodedFrame:
    """One frame: ``pixels`` is H×W×3 uint8 RGB, upright (the display rotation applied)."""

    index: int
    """0-based position among the frames yielded (continuing from ``first_index`` after a resume)."""
    pts: int
    """Presentation timestamp in ``time_base`` units; strictly increasing."""
    time: float
    time_base: Fraction
    pixels: np.ndarray = field(repr=False)
    key_frame: bool = False
    """Whether the source coded this frame as a keyframe (decodable on its own)."""


OUT_OF_ORDER = "timestamp not after the previous frame's"
"""The reason of a span of frames dropped for their timestamps (see the module docstring)."""


@dataclass(frozen=True)
class SkippedSpan:
    """Frames the reader dropped: damaged ones (``on_corrupt="skip"``), from ``start`` up to (not
    including) ``end`` seconds (``None``: the end of the file), or frames with out-of-order
    timestamps (:data:`OUT_OF_ORDER`, in both modes), at ``start`` to ``end`` (their first and last
    time). A decode error's span starts at the last good frame (see the module docstring).
    ``frames``: how many were dropped (an estimate from the frame rate where the data was lost;
    ``None``: unknown)."""

    start: float
    end: float | None
    reason: str
    frames: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 4),
            "end": None if self.end is None else round(self.end, 4),
            "frames": self.frames,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SkippedSpan:
        end, frames = data.get("end"), data.get("frames")
        return cls(
            start=float(data["start"]),
            end=None if end is None else float(end),
            reason=str(data["reason"]),
            frames=None if frames is None else int(frames),
        )

    def describe(self) -> str:
        """E.g. ``21 frames at 0.360–1.200 s (stream ends early)``."""
        count = "frames (how many is unknown)" if self.frames is None else _frames(self.frames)
        if self.end is None:
            where = f"from {self.start:.3f} s to the end"
        elif self.end - self.start < 1e-6:
            where = f"at {self.start:.3f} s"
        else:
            where = f"at {self.start:.3f}–{self.end:.3f} s"
        return f"{count} {where} ({self.reason})"


def _frames(count: int) -> str:
    return f"{count} frame{'' if count == 1 else 's'}"


NOTE_SPANS = 5
"""Spans named in :func:`dropped_note` (the full list goes with the outcome and the credentials)."""


def dropped_note(spans: list[SkippedSpan]) -> str | None:
    """One line saying how many source frames were dropped, and where (``None`` if none were)."""
    if not spans:
        return None
    known = sum(s.frames or 0 for s in spans)
    total = _frames(known) if all(s.frames is not None for s in spans) else f"at least {_frames(known)}"
    listed = "; ".join(s.describe() for s in spans[:NOTE_SPANS])
    more = f"; and {len(spans) - NOTE_SPANS} more span(s)" if len(spans) > NOTE_SPANS else ""
    verb = "was" if total == _frames(1) else "were"
    return f"{total} of the source {verb} dropped (not in the output): {listed}{more}"


def _estimate(start: float, end: float | None, nominal: float, *, from_good: bool) -> int | None:
    """Frames lost between ``start`` and ``end`` at ``nominal`` seconds a frame (``from_good``:
    ``start`` is the last good frame, shown, so it is not counted)."""
    if end is None or nominal <= 0:
        return None
    return max(round((end - start) / nominal) - (1 if from_good else 0), 0)


class FrameReader:
    """Iterate the frames of one video file. Use as a context manager (it holds the file open).

    ``after_pts``: yield only frames whose pts is greater (resuming a chunked encode); the reader
    seeks to a keyframe a little before it, and falls back to decoding from the start unless
    decoding restarts at a keyframe at or before ``after_pts``. ``first_index`` numbers the first
    yielded frame.

    ``keyframes_only``: the decoder skips every frame that is not a keyframe (fast sampling, e.g.
    for reading a watermark back); ``index`` then counts decoded keyframes, and the missing-frame
    and early-end checks are off, since gaps are expected. ``min_interval``: yield a frame only if
    it is at least this many seconds after the last one yielded (the others are decoded but not
    converted to RGB; an all-intra file sampled with ``keyframes_only`` would otherwise convert
    every frame).

    ``prefetch``: decode (and convert to RGB) in a background thread, at most this many frames ahead
    of the consumer (0: in the caller's thread). The frames, their order and every error are the
    same; :meth:`close` stops the thread before it closes the file.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        info: VideoInfo | None = None,
        on_corrupt: OnCorrupt = "stop",
        after_pts: int | None = None,
        first_index: int = 0,
        max_side: int = DEFAULT_MAX_SIDE,
        max_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
        threads: int = 0,
        keyframes_only: bool = False,
        min_interval: float | None = None,
        prefetch: int = 0,
    ) -> None:
        if on_corrupt not in ("stop", "skip"):
            raise ValueError(f"on_corrupt must be 'stop' or 'skip', not {on_corrupt!r}")
        self.path = Path(path)
        self.info = info or probe_video(self.path, max_side=max_side, max_pixels=max_pixels)
        self.on_corrupt: OnCorrupt = on_corrupt
        self.after_pts = after_pts
        self.first_index = first_index
        self.threads = threads
        self.keyframes_only = keyframes_only
        self.min_interval = min_interval
        self.prefetch = prefetch
        self.skipped: list[SkippedSpan] = []
        self.resumed_by: Literal["seek", "decode"] | None = None
        """How ``after_pts`` was reached: a keyframe seek, or decoding (and dropping) from the start."""
        self.decoded_from: float | None = None
        """Time of the first frame the decoder produced (after a seek: the keyframe it restarted at)."""
        self._container: Any = None
        self._ahead: Iterator[DecodedFrame] | None = None

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.close()  # type: ignore[attr-defined] # a generator: joins the decoder thread
        self._close_container()

    def _close_container(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    # -- decoding ------------------------------------------------------------------------------------

    def _open(self) -> Any:
        from av.stream import Discard

        self._close_container()
        self._container = open_input(self.path)
        stream = video_stream_of(self._container, self.path)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = self.threads
        if self.keyframes_only:
            stream.codec_context.skip_frame = "NONKEY"
        for other in self._container.streams:
            if other.index != stream.index:
                other.discard = Discard.all
        return stream

    def _damage(self, index: int, start: float, end: float | None, detail: str) -> None:
        """Stop (default) or let the caller note the damage; returns only in skip mode.

        ``start``–``end`` brackets where the damage is: decoders running on several threads report an
        error a few packets late, so the span runs from the last good frame to the packet that failed.
        """
        if self.on_corrupt == "stop":
            where = (
                f"{start:.3f} s"
                if end is None or end - start < 1e-3
                else f"between {start:.3f} s and {end:.3f} s"
            )
            raise BadInput(
                f"{self.path}: corrupt video data at frame {index} ({where}): {detail}",
                hint="repair or re-export the file; to drop the damaged frames instead, opt in with "
                "on_corrupt='skip' (CLI: --on-corrupt skip)",
            )

    def _convert(self, frame: Any) -> np.ndarray:
        info = self.info
        kwargs: dict[str, Any] = {"format": "rgb24"}
        if info.color_matrix in MATRICES:
            kwargs["src_colorspace"] = MATRICES[info.color_matrix][0]
            kwargs["src_color_range"] = "JPEG" if info.color_range == "full" else "MPEG"
        pixels = frame.to_ndarray(**kwargs)
        rotation = rotation_of(frame)
        if rotation:
            # rotation is clockwise for display; np.rot90 turns counter-clockwise for positive k.
            pixels = np.ascontiguousarray(np.rot90(pixels, k=-rotation // 90))
        if pixels.shape[:2] != (info.height, info.width):
            raise BadInput(
                f"{self.path}: the picture size changes mid-stream (from {info.width}×{info.height} to "
                f"{pixels.shape[1]}×{pixels.shape[0]} at {float(frame.time or 0):.3f} s)",
                hint="split the video where the size changes, or re-export it at one size",
            )
        return pixels

    def _seek(self, stream: Any) -> bool:
        """Seek near ``after_pts``; True if it worked (else the caller decodes from the start)."""
        import av

        # A quarter second early, so B-frame reordering (pts after dts) cannot put the keyframe
        # past after_pts.
        margin = round(Fraction(1, 4) / Fraction(stream.time_base))
        try:
            self._container.seek(int(self.after_pts) - margin, stream=stream, backward=True, any_frame=False)
        except av.FFmpegError:
            return False
        return True

    def __iter__(self) -> Iterator[DecodedFrame]:
        if self.prefetch <= 0:
            yield from self._frames()
            return
        self._ahead = prefetch(self._frames, self.prefetch, name=f"decode {self.path.name}")
        yield from self._ahead

    def _frames(self) -> Iterator[DecodedFrame]:
        stream = self._open()
        if self.after_pts is not None and self._seek(stream):
            self.resumed_by = "seek"
            try:
                yield from self._decode(stream, check_seek=True)
                return
            except _SeekLandedLate:
                stream = self._open()
                self.decoded_from = None
        if self.after_pts is not None:
            self.resumed_by = "decode"
        yield from self._decode(stream, check_seek=False)

    def _decode(self, stream: Any, *, check_seek: bool) -> Iterator[DecodedFrame]:
        import av

        info = self.info
        tb = Fraction(stream.time_base)
        nominal = float(1 / info.fps) if info.fps else 0.04
        gap_limit = GAP_FRAMES * nominal
        index = self.first_index
        last_pts: int | None = None
        last_time: float | None = None
        first_seen = False
        resync_until: int | None = None  # skip mode: drop frames before this keyframe pts
        resync_pending = False  # skip mode: waiting for the next keyframe packet
        damage_start: float | None = None
        last_yielded: float | None = None
        dropping = False  # the frame before was dropped for its timestamp

        def frames_of(packet: Any) -> list[Any]:
            return list(packet.decode()) if packet is not None else list(stream.decode(None))

        packets = stream.container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                packet = None
            except av.FFmpegError as exc:
                at = last_time if last_time is not None else info.start_time
                self._damage(index, at, None, f"the container cannot be read past this point ({exc})")
                self.skipped.append(SkippedSpan(at, None, f"unreadable container data: {exc}"))
                packet = None
            if packet is not None and not packet.size and packet.pts is None:
                continue  # demuxer flush marker
            if packet is not None and resync_pending and packet.is_keyframe:
                resync_pending = False
                resync_until = packet.pts
            packet_time = (
                float(packet.pts * tb) if packet is not None and packet.pts is not None else last_time
            )
            try:
                decoded = frames_of(packet)
            except av.FFmpegError as exc:
                good = last_time if last_time is not None else info.start_time
                self._damage(index, good, packet_time, f"the decoder rejected the data ({exc})")
                damage_start = good if damage_start is None else damage_start
                resync_pending, resync_until = True, None
                if packet is None:
                    break
                continue
            for frame in decoded:
                pts = frame.pts if frame.pts is not None else frame.dts
                if pts is None:
                    pts = (last_pts + round(nominal / tb)) if last_pts is not None else 0
                pts = int(pts)
                time = float(pts * tb)
                if self.decoded_from is None:
                    self.decoded_from = time
                if check_seek and not first_seen:
                    # The seek is trusted only if decoding restarts at a keyframe at or before after_pts;
                    # anything else (landed late, open-GOP leading frames) falls back to a full decode.
                    first_seen = True
                    if not frame.key_frame or pts > int(self.after_pts):  # type: ignore[arg-type]
                        raise _SeekLandedLate
                if resync_pending or (resync_until is not None and pts < resync_until):
                    continue
                before_resume = self.after_pts is not None and pts <= self.after_pts
                resynced = damage_start is not None
                if resynced:
                    if not before_resume:  # else the run that wrote the frames up to after_pts noted it
                        frames = _estimate(damage_start, time, nominal, from_good=True)
                        if info.is_vfr:
                            frames = None  # no steady rate to count by
                        self.skipped.append(
                            SkippedSpan(damage_start, time, "decode error: dropped until keyframe", frames)
                        )
                    damage_start, resync_until = None, None
                if before_resume:
                    continue
                if frame.is_corrupt:
                    self._damage(index, time, None, "the decoder flagged this frame as damaged")
                    self.skipped.append(SkippedSpan(time, time + nominal, "frame flagged corrupt", 1))
                    continue
                if last_pts is not None and pts <= last_pts:
                    # Cannot be encoded in order: dropped (at a repeated time the first frame is kept),
                    # and listed; consecutive drops make one span.
                    self._out_of_order(time, dropping_since=dropping)
                    dropping = True
                    continue
                dropping = False
                if (
                    last_time is not None
                    and not resynced
                    and not info.is_vfr
                    and not self.keyframes_only
                    and time - last_time > gap_limit
                ):
                    missing = round((time - last_time) / nominal) - 1
                    self._damage(index, last_time, time, f"about {missing} frame(s) are missing")
                    self.skipped.append(SkippedSpan(last_time + nominal, time, "frames missing", missing))
                if (
                    self.min_interval is not None
                    and last_yielded is not None
                    and time - last_yielded < self.min_interval
                ):
                    index += 1
                    last_pts, last_time = pts, time
                    continue
                last_yielded = time
                pixels = self._convert(frame)
                yield DecodedFrame(
                    index=index,
                    pts=pts,
                    time=time,
                    time_base=tb,
                    pixels=pixels,
                    key_frame=bool(frame.key_frame),
                )
                index += 1
                last_pts, last_time = pts, time
            if packet is None:
                break
        if check_seek and not first_seen:
            raise _SeekLandedLate
        if damage_start is not None:
            end = None if info.duration is None else info.start_time + info.duration
            frames = None if info.is_vfr else _estimate(damage_start, end, nominal, from_good=True)
            self.skipped.append(
                SkippedSpan(damage_start, end, "decode error near the end: frames dropped", frames)
            )
        else:  # (after a decode error near the end, that span already runs to the declared end)
            self._check_end(index, last_time, nominal)

    def _out_of_order(self, time: float, *, dropping_since: bool) -> None:
        """List a frame dropped because its timestamp is not after the previous frame's."""
        last = self.skipped[-1] if self.skipped else None
        if dropping_since and last is not None and last.reason == OUT_OF_ORDER:
            self.skipped[-1] = SkippedSpan(
                min(last.start, time), max(last.end or time, time), OUT_OF_ORDER, (last.frames or 0) + 1
            )
            return
        self.skipped.append(SkippedSpan(time, time, OUT_OF_ORDER, 1))

    def _check_end(self, index: int, last_time: float | None, nominal: float) -> None:
        info = self.info
        if info.duration is None or last_time is None or self.keyframes_only:
            return
        declared_end = info.start_time + info.duration
        shown_until = last_time + nominal
        if declared_end - shown_until > max(EARLY_END_S, 3 * nominal):
            self._damage(
                index,
                shown_until,
                None,
                f"the video stops at {shown_until:.3f} s but the file declares {declared_end:.3f} s "
                "(truncated, or data lost mid-file)",
            )
            frames = _estimate(shown_until, declared_end, nominal, from_good=False)
            if info.is_vfr:  # no steady rate: the frames the container indexes, less those handed out
                dropped = sum(s.frames or 0 for s in self.skipped)
                left = info.frame_count - index - dropped
                frames = left if info.frame_count_exact and left > 0 else None
            self.skipped.append(SkippedSpan(shown_until, declared_end, "stream ends early", frames))


class _SeekLandedLate(Exception):
    """The seek went past ``after_pts``; decode from the start instead."""


def open_frames(path: str | Path, **options: Any) -> FrameReader:
    """A :class:`FrameReader` over ``path`` (probing it first unless ``info=`` is given)."""
    return FrameReader(path, **options)


def iter_frames(
    path: str | Path,
    *,
    on_corrupt: OnCorrupt = "stop",
    after_pts: int | None = None,
    first_index: int = 0,
    info: VideoInfo | None = None,
) -> Iterator[DecodedFrame]:
    """Yield the frames of ``path`` in presentation order; see :class:`FrameReader`."""
    with FrameReader(
        path, info=info, on_corrupt=on_corrupt, after_pts=after_pts, first_index=first_index
    ) as r:
        yield from r
