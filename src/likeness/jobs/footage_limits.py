"""The limits on footage options that ``likeness swap``'s options and a batch's jobs file both apply.

The encoder's own values (``codec``, ``crf``, ``preset``, ``segment_seconds`` > 0) are checked by
:meth:`likeness.media.video.EncodeSettings.validate`; these are the command's tighter bounds.
Kept free of heavy imports: the CLI reads them when it builds its options.
"""

from __future__ import annotations

from likeness.errors import UsageError

DETECT_EVERY = (1, 1000)
"""Face detection every N frames (tracking in between): every frame to every 1000th."""
SEGMENT_SECONDS = (0.1, 600.0)
"""Seconds of footage per resumable segment."""


def check_footage_limits(detect_every: int, segment_seconds: float) -> None:
    """:class:`UsageError` naming the option when a value is outside its bounds above."""
    low, high = DETECT_EVERY
    if not low <= detect_every <= high:
        raise UsageError(
            f"detect_every {detect_every} is outside {low}–{high}",
            hint="5 (the default) detects faces every 5th frame and tracks them in between",
        )
    low_s, high_s = SEGMENT_SECONDS
    if not low_s <= segment_seconds <= high_s:
        raise UsageError(
            f"segment_seconds {segment_seconds:g} is outside {low_s:g}–{high_s:g}",
            hint="10 (the default) keeps at most 10 s of work to redo when a job resumes",
        )
