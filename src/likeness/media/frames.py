"""Frames, where they come from and where a job resumes: the shapes every job road shares.

A still is a one-frame source; footage is its decoded frames. A :class:`FrameSource` yields the
job's frames (already transformed: swapped, generated, edited) for the sealing path
(:func:`likeness.disclosure.seal.seal_frames`), which labels, watermarks and encodes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from likeness.media.video_read import DecodedFrame

Frame = DecodedFrame
"""One frame: H×W×3 uint8 RGB pixels, upright, with its index, pts and time."""


@dataclass(frozen=True)
class ResumePoint:
    """Where a source starts: after ``after_pts`` (``None``: from the first frame)."""

    after_pts: int | None = None
    first_index: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    """What the source's ``checkpoint()`` returned when the last kept segment was finished."""


class FrameSource(Protocol):
    """Produces a job's frames, in order, from a resume point."""

    def frames(self, start: ResumePoint) -> Iterator[Frame]:
        """Upright RGB frames with their pts, the first one after ``start.after_pts``."""
        ...

    def checkpoint(self) -> dict[str, Any]:
        """JSON state to resume from (e.g. the consent decisions so far); ``{}`` for a still."""
        ...


@dataclass(frozen=True)
class StillSource:
    """A still picture as a one-frame source."""

    pixels: np.ndarray = field(repr=False)

    def frames(self, start: ResumePoint) -> Iterator[Frame]:
        yield Frame(index=0, pts=0, time=0.0, time_base=Fraction(1, 1), pixels=self.pixels, key_frame=True)

    def checkpoint(self) -> dict[str, Any]:
        return {}
