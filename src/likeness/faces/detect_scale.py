"""At what scale to look for faces in a video frame, from the faces already followed.

HOG finds a face when it is at least 80 px at the scale it looks at, and its cost grows with the
pixels it scans (1080p: ≈ 180 ms at full size, ≈ 30 ms at 0.4). Once faces are followed, a frame is
scanned at the scale that keeps the smallest of them :attr:`DetectScale.keep_face_px` tall, and at
the analyzer's own (full) scale when nothing is followed, at least every
:attr:`DetectScale.full_every_s` seconds (a newcomer smaller than the followed faces is found by
then), and whenever a scaled scan misses a followed face (HOG's answer varies with scale).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from likeness.faces.tracking import iou

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class DetectScale:
    keep_face_px: float = 100.0
    """The smallest followed face is at least this tall at the scanning scale (HOG's window: 80 px)."""
    full_every_s: float = 2.0
    """A full-scale scan at least this often, so smaller newcomers are found."""
    largest: float = 0.8
    """Scales above this are not worth a resized copy: scan at full scale."""

    def choose(self, face_sizes: Sequence[float], since_full_s: float | None) -> float | None:
        """The scale to scan at (< 1), or ``None`` for the analyzer's own choice (full scale).

        ``face_sizes``: the followed faces' sizes in frame pixels; ``since_full_s``: seconds since the
        last full-scale scan (``None``: never)."""
        if not face_sizes or since_full_s is None or since_full_s >= self.full_every_s:
            return None
        scale = self.keep_face_px / max(1.0, min(face_sizes))
        return None if scale > self.largest else scale


def misses(followed: Sequence[Box], found: Sequence[Box], *, overlap: float = 0.3) -> bool:
    """Whether some followed face has no found face overlapping it (then scan again at full scale)."""
    return any(all(iou(box, other) < overlap for other in found) for box in followed)
