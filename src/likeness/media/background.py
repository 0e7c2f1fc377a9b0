"""One stage of a streaming job in its own thread, behind a bounded queue (memory stays flat).

PyAV releases the GIL while it decodes, converts and encodes; numpy and OpenCV release it in their
large operations. So a decoder thread and an encoder thread run on the other core while the face
work holds this one, and a two-core machine is no longer half idle.

* :func:`prefetch` runs an iterator in a thread, at most ``depth`` items ahead of its consumer.
* :class:`SerialWorker` runs callables one after another in a thread, at most ``depth`` waiting.
* :func:`in_background` runs one callable in a thread while a block runs.

Each hands an exception raised in the thread to the caller, at the place it would have been raised
without the thread (the item after the last good one; the next call after a failed job; the
future's ``result()``), and each stops or waits for its thread when the caller stops early: no
thread outlives the job that started it.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
_POLL_S = 0.05
"""How often a blocked producer looks whether its consumer has gone away."""


@dataclass(frozen=True)
class _Raised:
    error: BaseException


class _End:
    pass


_END = _End()


def wait_out(wait: Callable[[], object], *, reraise: bool) -> None:
    """Call ``wait`` (a blocking wait for background work to end) until it returns, even when a
    Ctrl-C interrupts it: the work's threads must not outlive the job.

    The interrupting ``KeyboardInterrupt`` (typically a second Ctrl-C, "stop at once", landing while
    the job already unwinds from a cancel or an error, or while a generator is closed, where raising
    would only print "Exception ignored" with a traceback) is raised once the wait is over when
    ``reraise`` (the work was ending normally), else dropped: the exception under way goes on.
    ``wait`` must be safe to call again once interrupted (an ``Event.wait``, futures' ``wait``; not
    ``Thread.join``, which on Python 3.11 marks a still running thread as ended when interrupted).
    """
    try:
        wait()
    except KeyboardInterrupt:
        wait()
        if reraise:
            raise


def close_pool(executor: ThreadPoolExecutor, futures: Iterable[Future[object]], *, reraise: bool) -> None:
    """Close a job's thread pool so that none of its threads outlives the job: what has not started is
    dropped, the ``futures`` that started are waited for through a Ctrl-C (:func:`wait_out`), then
    the threads, idle by then, are joined (an interrupted join is harmless at that point)."""
    executor.shutdown(wait=False, cancel_futures=True)
    started = [future for future in futures if not future.cancelled()]  # a cancelled one never ends
    wait_out(lambda: wait(started), reraise=reraise)
    wait_out(lambda: executor.shutdown(wait=True), reraise=reraise)


@contextlib.contextmanager
def in_background(call: Callable[[], T], *, name: str) -> Iterator[Future[T]]:
    """``call()`` run in a thread of its own while the block runs: the block gets its future
    (``result()`` waits for the value, or raises what ``call`` raised). Leaving the block waits for
    the thread (through a Ctrl-C, :func:`close_pool`): it never outlives the block."""
    executor = ThreadPoolExecutor(1, thread_name_prefix=name)
    future = executor.submit(call)
    try:
        yield future
    except BaseException:
        close_pool(executor, [future], reraise=False)
        raise
    close_pool(executor, [future], reraise=True)


def prefetch(make: Callable[[], Iterator[T]], depth: int, *, name: str = "prefetch") -> Iterator[T]:
    """The items of ``make()``, produced in a background thread at most ``depth`` ahead.

    ``depth`` ≤ 0 iterates in the caller's thread (no thread at all). ``make`` is called in the
    background thread, so whatever the iterator opens is used by that thread alone; close the
    returned generator (or let it run out) before closing what it reads from.
    """
    if depth <= 0:
        yield from make()
        return
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop, finished = threading.Event(), threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            source = make()
            try:
                for item in source:
                    if not put(item):
                        return
            finally:
                close = getattr(source, "close", None)
                if close is not None:
                    close()
        except BaseException as error:  # noqa: BLE001 # handed to the consumer, raised there
            put(_Raised(error))
            return
        put(_END)

    def run() -> None:
        try:
            produce()
        finally:
            finished.set()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    ended = False
    try:
        while True:
            item = items.get()
            if item is _END:
                ended = True
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        wait_out(finished.wait, reraise=ended)
        with contextlib.suppress(KeyboardInterrupt):  # its last step: it ends at once
            thread.join()


class SerialWorker:
    """Run submitted callables in order in one background thread; at most ``depth`` wait to run.

    :meth:`submit` blocks while the queue is full (back-pressure keeps memory flat). After a job
    raises, the rest are skipped and the error is raised by the next :meth:`submit` or by
    :meth:`join`. :meth:`abandon` skips what is still waiting and stops the thread. ``busy_seconds``
    is the time the thread spent running jobs.
    """

    def __init__(self, depth: int, *, name: str = "worker") -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._skip = threading.Event()
        self._stopped = False
        self.busy_seconds = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self._error is not None or self._skip.is_set():
                continue
            started = time.perf_counter()
            try:
                job()
            except BaseException as error:  # noqa: BLE001 # raised by the next submit or join
                self._error = error
            self.busy_seconds += time.perf_counter() - started

    def check(self) -> None:
        """Raise the error a job raised, if any."""
        if self._error is not None:
            raise self._error

    def submit(self, job: Callable[[], None]) -> None:
        if self._stopped:
            raise RuntimeError("submit() after join() or abandon()")
        self.check()
        self._jobs.put(job)

    def join(self) -> None:
        """Wait until every submitted job ran, stop the thread, and raise a job's error if any."""
        self._stop()
        self.check()

    def abandon(self) -> None:
        """Skip the jobs still waiting (the one running finishes) and stop the thread."""
        self._skip.set()
        self._stop()

    def _stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._jobs.put(None)
        self._thread.join()
