"""Progress reports, stage timing and cancellation for every job road.

A leaf module: it imports nothing of likeness but :mod:`likeness.errors`, so the road, the sealing
path and the app can all use it without import cycles.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from likeness.errors import Cancelled

Progress = Callable[[str, float], None]
"""Called with a stage name and the fraction of the whole job done (0..1)."""


def no_progress(stage: str, fraction: float) -> None:
    """The :data:`Progress` that reports nothing."""
    return None


@dataclass
class StageTimer:
    """Wall-clock seconds per stage, in the order they ran."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds


@contextlib.contextmanager
def timed(timer: StageTimer | None, name: str) -> Iterator[None]:
    """``timer.stage(name)``, or nothing when there is no timer."""
    if timer is None:
        yield
    else:
        with timer.stage(name):
            yield


class CancelToken:
    """Set by whoever wants a job stopped (Ctrl-C in the CLI, the app's Cancel button); the road
    checks it between steps and frames and raises :class:`~likeness.errors.Cancelled` (exit 130).

    Wraps a :class:`threading.Event`, so an event the caller already holds can be passed in.
    """

    def __init__(self, event: threading.Event | None = None) -> None:
        self.event = event if event is not None else threading.Event()

    @classmethod
    def of(cls, cancel: CancelToken | threading.Event | None) -> CancelToken:
        """A token for ``cancel`` (a token, a bare event, or ``None`` for one nobody sets)."""
        if isinstance(cancel, CancelToken):
            return cancel
        return cls(cancel)

    def cancel(self) -> None:
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def check(self, where: str, *, hint: str | None = None) -> None:
        """Raise :class:`Cancelled` if the job was cancelled; ``where`` says what was being done."""
        if self.event.is_set():
            raise Cancelled(
                f"cancelled {where}; nothing was written under the output name",
                hint=hint or "run the same command again to start over",
            )
