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
from typing import Any

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
                hint=hint or "run the same command again (a video job resumes from its finished segments)",
            )


@dataclass
class Interrupts:
    """How many times Ctrl-C (SIGINT) was pressed while :func:`counting_interrupts` held it."""

    count: int = 0


@contextlib.contextmanager
def counting_interrupts(
    on_interrupt: Callable[[int], None] | None = None, *, terminate: bool = False
) -> Iterator[Interrupts]:
    """Ctrl-C counted instead of raised while the block runs; ``on_interrupt(count)`` is called
    from the handler. For loops that must act on it between steps: a ``KeyboardInterrupt`` raised at
    an arbitrary point could lose a result that was received but not yet written down. With
    ``terminate``, SIGTERM (what ``docker stop``, systemd and ``kill`` send) counts as a Ctrl-C too.
    Outside the main thread signals are not ours to handle, and nothing is installed."""
    import signal

    interrupts = Interrupts()

    def handler(signum: int, frame: object) -> None:
        interrupts.count += 1
        if on_interrupt is not None:
            on_interrupt(interrupts.count)

    signals = (signal.SIGINT, signal.SIGTERM) if terminate else (signal.SIGINT,)
    previous: dict[int, Any] = {}
    try:
        for number in signals:
            previous[number] = signal.signal(number, handler)
    except ValueError:  # not the main thread
        yield interrupts
        return
    try:
        yield interrupts
    finally:  # a handler not set from Python reads as None: the default is what it was
        for number, before in previous.items():
            signal.signal(number, signal.SIG_DFL if before is None else before)
