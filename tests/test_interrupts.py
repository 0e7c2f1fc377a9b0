"""Ctrl-C counted instead of raised (``likeness.progress.counting_interrupts``): real SIGINTs sent to
this process, as a terminal sends them."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

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


@pytest.mark.parametrize("ending", ["an error", "normally"])
def test_a_ctrl_c_while_a_jobs_threads_are_waited_for_still_waits_for_them(ending: str) -> None:
    """Footage's thread pools (``jobs.tracks._Threads``): a Ctrl-C (a second one, "stop at once")
    landing while the pool is waited for does not leave its thread running. When the block is already
    unwinding (an error, a cancel, the frames' generator closed) that exception goes on, with no
    second one raised over it from the clean-up; a block that ended normally raises the Ctrl-C once
    the thread is done."""
    from concurrent.futures import ThreadPoolExecutor

    from likeness.jobs.tracks import _Threads

    class Pool(_Threads):
        def __init__(self) -> None:
            super().__init__(ThreadPoolExecutor(1))

    sent, done = threading.Event(), threading.Event()

    def work() -> None:
        sent.wait(10)  # still running when the Ctrl-C comes
        time.sleep(0.3)
        done.set()

    def ctrl_c() -> None:
        _send_sigint()
        sent.set()

    expected = ValueError if ending == "an error" else KeyboardInterrupt
    with pytest.raises(expected):
        with Pool() as pool:
            pool._submit(work)
            threading.Timer(0.2, ctrl_c).start()
            if ending == "an error":
                raise ValueError("the job stopped")
    assert done.is_set(), "the thread was waited for"


def test_leaving_a_jobs_threads_drops_queued_work_and_waits_for_the_started() -> None:
    """Work still queued when the block ends is dropped (never started); work already running is
    waited for. (A queued future that the pool cancels never counts as done for
    ``concurrent.futures.wait``: waiting for it would hang the job.)"""
    from concurrent.futures import ThreadPoolExecutor

    from likeness.jobs.tracks import _Threads

    started, finished = [], []

    def work(number: int) -> None:
        started.append(number)
        time.sleep(0.3)
        finished.append(number)

    def leave() -> None:
        with pytest.raises(ValueError), _Threads(ThreadPoolExecutor(1)) as pool:
            for number in range(4):
                pool._submit(work, number)
            time.sleep(0.1)
            raise ValueError("the job stopped")

    leaving = threading.Thread(target=leave)
    leaving.start()
    leaving.join(10)
    assert not leaving.is_alive(), "leaving the block hung"
    assert started == [0] and finished == [0]


def test_closing_a_prefetch_while_its_thread_works_waits_for_it_through_a_ctrl_c() -> None:
    """The decoder's read-ahead (``media.background.prefetch``): closed while its thread is still
    producing, with a Ctrl-C landing during the wait, it still waits for the thread, and the close
    (an unwinding) raises nothing over what is under way: no "Exception ignored" traceback."""
    from likeness.media.background import prefetch

    sent, done = threading.Event(), threading.Event()

    def make():
        yield 1
        sent.wait(10)  # still producing when the Ctrl-C comes
        time.sleep(0.3)
        done.set()
        yield 2

    def ctrl_c() -> None:
        _send_sigint()
        sent.set()

    items = prefetch(make, 1)
    assert next(items) == 1
    threading.Timer(0.2, ctrl_c).start()
    items.close()
    assert done.is_set(), "the thread was waited for"


def test_ctrl_c_while_likeness_swap_starts_ends_it_cleanly(tmp_path: Path) -> None:
    """``likeness swap`` reads its inputs and loads its models in threads while it imports the job
    (:func:`likeness.jobs.inputs.start_early`). A Ctrl-C, or two, in that first second must end the
    command: exit 130 (or click's "Aborted!" before the handler is installed), no traceback, never a
    hang with the threads blocked on an interrupted import."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    assets = repo / "src" / "likeness" / "demo_assets"
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    command = [sys.executable, "-c", "from likeness.cli import run; run()", "--home", str(tmp_path / "home")]
    command += ["swap", "--source", str(assets / "darwin_1.jpg"), "--target", str(assets / "lincoln_1.jpg")]
    command += ["--purpose", "education", "--out", str(tmp_path / "out.jpg")]
    for delays in ((0.25,), (0.35,), (0.45,), (0.6,), (0.3, 0.35), (0.45, 0.5)):
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        start = time.monotonic()
        for delay in delays:
            time.sleep(max(0.0, start + delay - time.monotonic()))
            child.send_signal(signal.SIGINT)
        try:
            _, stderr = child.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            child.kill()
            raise AssertionError(f"likeness swap hung after Ctrl-C at {delays}") from None
        assert child.returncode == 130 or (child.returncode == 1 and "Aborted!" in stderr), (delays, stderr)
        assert "Traceback" not in stderr and "Exception ignored" not in stderr, (delays, stderr)
        assert not (tmp_path / "out.jpg").exists()
