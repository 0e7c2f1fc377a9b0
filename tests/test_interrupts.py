"""Ctrl-C counted instead of raised (``likeness.progress.counting_interrupts``): real SIGINTs sent to
this process, as a terminal sends them."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from likeness.progress import counting_interrupts


def _send_sigint() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_is_counted_and_the_old_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGINT)
    seen: list[int] = []
    with counting_interrupts(seen.append) as interrupts:
        _send_sigint()
        _send_sigint()
        assert interrupts.count == 2 and seen == [1, 2]
    assert signal.getsignal(signal.SIGINT) is before


def test_a_handler_that_raises_stops_a_blocked_wait_at_once() -> None:
    """``likeness swap``'s rule: the first Ctrl-C asks the job to stop, the second stops it now,
    even inside a wait that would otherwise block."""
    asked = threading.Event()

    def interrupt(count: int) -> None:
        if count > 1:
            raise KeyboardInterrupt
        asked.set()

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), counting_interrupts(interrupt) as interrupts:
        _send_sigint()
        assert asked.is_set()
        threading.Timer(0.2, _send_sigint).start()
        threading.Event().wait(30)  # never set: only the second Ctrl-C ends this
    assert interrupts.count == 2
    assert signal.getsignal(signal.SIGINT) is before


def test_outside_the_main_thread_nothing_is_installed() -> None:
    before = signal.getsignal(signal.SIGINT)
    seen: list[object] = []

    def worker() -> None:
        with counting_interrupts() as interrupts:
            seen.append(signal.getsignal(signal.SIGINT))
            seen.append(interrupts.count)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [before, 0]
