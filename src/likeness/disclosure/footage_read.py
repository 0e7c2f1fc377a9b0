"""Footage's view of disclosure (part of the one reader, :mod:`likeness.disclosure.read`): the watermark
window by window, the visible label, agreement.

A video carries the same watermark as an image on every frame (the output id, check-coded), so any
stretch of it identifies the output. What a re-encoder does to it differs by frame type: a keyframe
keeps the mark about as well as a JPEG would; a predicted frame is built from motion-compensated
blocks of earlier frames, so at a high CRF the static mark is partly replaced by a moved copy.
Reading therefore works on **windows** of ``window_seconds`` (default 2 s):

* the window's frames are downscaled (shorter side ``WORK_SHORT_SIDE``; the mark lives at 256 px)
  and **averaged**: the mark is the same in every frame, the picture and the codec noise are not, so
  the average carries it more strongly than any single frame;
* each keyframe is also decoded on its own;
* the window's id is the average's, else the one its keyframes agree on; the visible label is
  looked for on the window's first frame at full size.

The summary reports the id most windows carry, the share of windows that carry it
(``agreement``), and any *other* id found (``other_ids``: parts of different outputs spliced
together). A window that reads no id is not evidence against the others: dark or flat stretches
(fades) can hold too little texture for the mark.

``sample="keyframes"`` makes the decoder skip all other frames (fast; the writer's self-check
uses it on its own output, whose every segment starts with a keyframe); it reads at most
``KEYFRAMES_PER_WINDOW`` frames a window, so an all-intra file (FFV1, ProRes) costs no more.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from likeness.disclosure.implicit import read_aigc
from likeness.disclosure.label import Plate, find_plates
from likeness.disclosure.phash import phash
from likeness.disclosure.watermark import WatermarkReading, decode
from likeness.fsutil import sha256_file
from likeness.home import Home
from likeness.media.video import SkippedSpan, VideoInfo, open_frames, probe_video

if TYPE_CHECKING:
    from likeness.disclosure.credentials import CredentialReport

WINDOW_SECONDS = 2.0
WORK_SHORT_SIDE = 512
"""Frames are averaged at this shorter side (the watermark's working scale is 256)."""
KEYFRAMES_PER_WINDOW = 2
"""Keyframes read on their own per window (all-intra files have nothing but keyframes)."""
Sample = Literal["all", "keyframes"]


@dataclass(frozen=True)
class WindowFinding:
    """What one stretch of the video says about itself."""

    start: float
    end: float
    frames: int
    output_id: str | None
    """The window's verdict: the averaged frames' id, else the id its keyframes agree on."""
    average: WatermarkReading | None
    """The watermark read from the window's frames averaged (``None`` when only keyframes were read)."""
    keyframe_ids: tuple[str | None, ...]
    label_detected: bool
    plates: tuple[Plate, ...] = ()
    """The label plates found on the window's first frame (where, how tall their text)."""

    @property
    def confidence(self) -> float:
        return self.average.confidence if self.average is not None and self.average.found else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "frames": self.frames,
            "output_id": self.output_id,
            "average": None if self.average is None else self.average.to_dict(),
            "keyframe_ids": list(self.keyframe_ids),
            "label_detected": self.label_detected,
        }


@dataclass(frozen=True)
class VideoDisclosureReport:
    """The video's disclosure, window by window, with a summary shaped like an image's report."""

    path: Path
    sha256: str
    phash: str
    format: str
    codec: str
    width: int
    height: int
    duration: float | None
    windows: tuple[WindowFinding, ...]
    watermark: WatermarkReading
    """Summary: ``output_id`` is the id most windows carry; ``confidence`` their median."""
    label_detected: bool
    """The label was seen in at least half of the windows."""
    agreement: float
    """Share of windows whose id is the summary id (0 when no window reads one)."""
    other_ids: tuple[str, ...] = ()
    """Ids read in other windows: the file joins parts of different outputs."""
    skipped: tuple[SkippedSpan, ...] = ()
    """Stretches the decoder could not read (damaged data is skipped when verifying)."""
    sample: Sample = "all"
    c2pa: CredentialReport | None = None
    """The content credentials, validated with the home's trust anchors (``None``: not read)."""
    info: VideoInfo | None = field(default=None, repr=False)
    aigc: dict[str, str] | None = None
    """The AIGC implicit label in the file's metadata (GB 45438-2025), if any."""
    unreadable: str | None = None
    """Always ``None`` here: footage whose frames do not decode is reported by
    :func:`likeness.disclosure.read.read_file` without this view."""
    first_frame_plates: tuple[Plate, ...] = ()
    """Label plates anywhere on the first frame read (the start label, the corner label)."""

    @property
    def phash_variants(self) -> tuple[str, ...]:
        """Perceptual hashes to look the file up by (its first frame's), as for images."""
        return (self.phash,) if self.phash else ()

    @property
    def output_id(self) -> str | None:
        return self.watermark.output_id

    @property
    def windows_with_id(self) -> int:
        return sum(1 for w in self.windows if w.output_id is not None and w.output_id == self.output_id)

    def to_dict(self) -> dict[str, object]:
        return {
            "file": {
                "path": str(self.path),
                "sha256": self.sha256,
                "phash": self.phash,
                "format": self.format,
                "codec": self.codec,
                "width": self.width,
                "height": self.height,
                "duration": self.duration,
            },
            "watermark": {**self.watermark.to_dict(), "agreement": round(self.agreement, 4)},
            "label": {
                "detected": self.label_detected,
                "windows": sum(1 for w in self.windows if w.label_detected),
            },
            "c2pa": self.c2pa.to_dict()
            if self.c2pa is not None
            else {"state": "not-checked", "reason": "content credentials were not read"},
            "video": {
                "sample": self.sample,
                "windows": [w.to_dict() for w in self.windows],
                "windows_with_id": self.windows_with_id,
                "other_ids": list(self.other_ids),
                "skipped": [
                    {"start": s.start, "end": s.end, "reason": s.reason, "frames": s.frames}
                    for s in self.skipped
                ],
            },
        }

    def describe_windows(self) -> list[str]:
        """One line per window, for people."""
        lines = []
        for w in self.windows:
            mark = w.output_id or "no id"
            other = " (DIFFERENT OUTPUT)" if w.output_id and w.output_id != self.output_id else ""
            label = "label" if w.label_detected else "no label"
            lines.append(f"{w.start:8.2f}–{w.end:8.2f} s  {w.frames:4d} frames  {mark}{other}  {label}")
        return lines


def _work(pixels: np.ndarray) -> np.ndarray:
    """The frame at the averaging size (never enlarged), float32."""
    import cv2

    height, width = pixels.shape[:2]
    scale = WORK_SHORT_SIDE / min(height, width)
    if scale >= 1.0:
        return pixels.astype(np.float32)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA).astype(np.float32)


@dataclass
class _Window:
    start: float
    end: float = 0.0
    frames: int = 0
    total: np.ndarray | None = None
    keyframe_ids: list[str | None] = field(default_factory=list)
    label_detected: bool = False
    plates: tuple[Plate, ...] = ()

    def add(self, pixels: np.ndarray, time: float, *, key_frame: bool, average: bool) -> None:
        if self.frames == 0:
            self.plates = tuple(find_plates(pixels))
            self.label_detected = bool(self.plates)
        self.frames += 1
        self.end = time
        work = _work(pixels)
        if average:
            self.total = work if self.total is None else self.total + work
        if key_frame and len(self.keyframe_ids) < KEYFRAMES_PER_WINDOW:
            self.keyframe_ids.append(decode(work, coarse_when_small=False).output_id)

    def finding(self, frame_duration: float) -> WindowFinding:
        reading = None
        if self.total is not None:
            reading = decode(self.total / np.float32(self.frames), coarse_when_small=False)
        window_id = reading.output_id if reading is not None and reading.found else None
        if window_id is None:
            ids = Counter(i for i in self.keyframe_ids if i is not None)
            if ids:
                window_id, _ = ids.most_common(1)[0]
        return WindowFinding(
            start=self.start,
            end=self.end + frame_duration,
            frames=self.frames,
            output_id=window_id,
            average=reading,
            keyframe_ids=tuple(self.keyframe_ids),
            label_detected=self.label_detected,
            plates=self.plates,
        )


def read_video_disclosure(
    path: str | Path,
    *,
    window_seconds: float = WINDOW_SECONDS,
    sample: Sample = "all",
    home: Home | None = None,
    credentials: bool = True,
) -> VideoDisclosureReport:
    """Read the watermark and label of ``path`` window by window (``BadInput`` if it is no video),
    and its content credentials (validated with ``home``'s trust anchors) unless ``credentials``
    is false.

    Memory is bounded: frames stream through, one running sum per window at ``WORK_SHORT_SIDE``.
    Damaged stretches are skipped and listed, not fatal: a verifier should say what it can.
    """
    if sample not in ("all", "keyframes"):
        raise ValueError(f"sample must be 'all' or 'keyframes', not {sample!r}")
    path = Path(path)
    info = probe_video(path)
    windows: list[WindowFinding] = []
    current: _Window | None = None
    first_phash = ""
    first_plates: tuple[Plate, ...] = ()
    frame_duration = info.frame_duration
    keyframes = sample == "keyframes"
    with open_frames(
        path,
        info=info,
        on_corrupt="skip",
        keyframes_only=keyframes,
        min_interval=window_seconds / KEYFRAMES_PER_WINDOW if keyframes else None,
    ) as reader:
        for frame in reader:
            if not first_phash:
                first_phash = phash(frame.pixels)
                first_plates = tuple(find_plates(frame.pixels, anywhere=True))
            if current is not None and frame.time - current.start >= window_seconds:
                windows.append(current.finding(frame_duration))
                current = None
            if current is None:
                current = _Window(start=frame.time)
            current.add(
                frame.pixels,
                frame.time,
                key_frame=frame.key_frame or sample == "keyframes",
                average=sample == "all",
            )
        skipped = tuple(reader.skipped)
    if current is not None:
        windows.append(current.finding(frame_duration))

    ids = Counter(w.output_id for w in windows if w.output_id is not None)
    if ids:
        best, count = ids.most_common(1)[0]
        agreeing = [w for w in windows if w.output_id == best]
        confidences = [w.confidence for w in agreeing if w.average is not None]
        summary = WatermarkReading(
            found=True,
            output_id=best,
            confidence=float(median(confidences)) if confidences else 0.0,
        )
        agreement = count / len(windows)
        others = tuple(i for i in ids if i != best)
    else:
        summary = WatermarkReading(found=False, output_id=None, confidence=0.0)
        agreement, others = 0.0, ()
    labelled = sum(1 for w in windows if w.label_detected)
    c2pa = None
    if credentials:
        from likeness.disclosure.credentials import read_credentials

        c2pa = read_credentials(path, home)  # MP4 / MOV are told apart by their header
    return VideoDisclosureReport(
        path=path,
        sha256=sha256_file(path),
        phash=first_phash,
        format=info.container,
        codec=info.codec,
        width=info.width,
        height=info.height,
        duration=info.duration,
        windows=tuple(windows),
        watermark=summary,
        label_detected=bool(windows) and labelled * 2 >= len(windows),
        agreement=agreement,
        other_ids=others,
        skipped=skipped,
        sample=sample,
        c2pa=c2pa,
        info=info,
        aigc=read_aigc(path),
        first_frame_plates=first_plates,
    )
