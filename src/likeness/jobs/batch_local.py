"""Batch jobs on this machine: ``workers`` long-lived worker processes (``spawn``), each running
jobs one after another and keeping its loaded face models between them.

Why workers that live for several jobs: a fresh process per job paid a process start and import of
the road (0.45 s quiet, 1.7-1.9 s under a load average of 15 on the 2-core development machine) and
a model load (0.7 s quiet, 3.3 s under load) next to 1-5 s for a still swap. A worker loads a
backend's engines (:class:`~likeness.jobs.engines.Engines`) on its first job that needs them and
lends them to every later job with the same backend (:class:`WorkerEngines`, owned by the worker's
loop; nothing global); a job with another backend loads that one's next to them.

What a pool's executor would lose, and this keeps:

* **A killed worker takes down only its own job.** Each worker has its own pipe; a worker that
  ends (SIGKILL, out of memory) without handing back its job's result is reported as died
  (``worker_died``; the job runs again on the next run of the batch), and a fresh worker takes
  its place for the jobs still queued. The other workers carry on.
* **Memory goes back.** A worker is recycled (told to exit, and replaced when jobs remain) after
  ``jobs_per_worker`` jobs (default :data:`DEFAULT_JOBS_PER_WORKER`), or after a job that leaves
  its resident memory above ``max_rss_bytes`` (default :data:`DEFAULT_MAX_RSS_BYTES`). Footage
  jobs allocate and free large frame buffers and the allocator does not always hand them back,
  and a generate job leaves torch's memory behind: the RSS bound recycles such a worker at once,
  the job count bounds slow growth nobody measured. A recycle costs what one job used to pay
  (start, import, model load), so 50 jobs make it about 2 % of a still's time.
* **Results** come back through the pipes and only this (the batch) process writes the results
  file. Every worker opens the registry itself: SQLite serialises writers (``BEGIN IMMEDIATE``,
  busy timeout), PostgreSQL with its table lock, so the ledger stays one chain.

``jobs_per_worker=1`` is the former one-process-per-job mode (kept for ``bench/batch.py``).

Ctrl-C: the batch process relays the first one to its workers (they ignore SIGINT itself, so one
sent to the batch alone counts as one sent by a terminal to the whole process group). Each running
job stops at its next step or frame (exit 130; footage keeps its finished segments), no new job
starts and idle workers exit; a second Ctrl-C kills the workers still running (which leaves nothing
under their jobs' output names either).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from likeness.home import Home
from likeness.jobs.batch import BatchEvents, Pending, died, execute
from likeness.progress import counting_interrupts

if TYPE_CHECKING:
    from likeness.jobs.engines import Engines

CANCEL_SIGNAL = signal.SIGUSR1
"""How the batch process tells its workers' jobs to stop (its first Ctrl-C, relayed)."""
DEFAULT_JOBS_PER_WORKER = 50
"""Jobs a worker runs before it is replaced by a fresh one (see the module docstring)."""
DEFAULT_MAX_RSS_BYTES = 2 * 1024**3
"""A worker whose resident memory is above this after a job is replaced: a dlib worker peaked at
0.4 GB over six 1080p stills; a generate job's torch leaves several GB."""


def local_runner(
    workers: int,
    *,
    jobs_per_worker: int = DEFAULT_JOBS_PER_WORKER,
    max_rss_bytes: int = DEFAULT_MAX_RSS_BYTES,
):
    """A :data:`~likeness.jobs.batch.Runner` running ``workers`` jobs at once on this machine."""
    from likeness.errors import UsageError

    if workers < 1:
        raise UsageError(f"--workers must be at least 1, not {workers}")
    if jobs_per_worker < 1:
        raise UsageError(f"--jobs-per-worker must be at least 1, not {jobs_per_worker}")
    limits = _Limits(workers, jobs_per_worker, max_rss_bytes)

    def run(todo: list[Pending], home: Home, operator: str, events: BatchEvents) -> bool:
        return _run(todo, home, operator, events, limits)

    return run


@dataclass(frozen=True)
class _Limits:
    workers: int
    jobs_per_worker: int
    max_rss_bytes: int


# -- in a worker process ------------------------------------------------------------------------------------


@dataclass
class WorkerEngines:
    """One worker's loaded engines by backend, loaded on first need and kept for its later jobs."""

    home: Home
    loaded: dict[str, Engines] = field(default_factory=dict)
    last: str | None = None
    """How the latest call got its engines: ``loaded`` or ``reused``."""

    def __call__(self, backend: str) -> Engines:
        found = self.loaded.get(backend)
        if found is not None:
            self.last = "reused"
            return found
        from likeness.jobs.engines import load_engines

        self.last = "loaded"
        self.loaded[backend] = engines = load_engines(backend, self.home)
        return engines


def resident_bytes() -> int:
    """This process's resident memory now (Linux), else its peak."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _cancel_when_told() -> threading.Event:
    """In a worker: the batch process relays the first Ctrl-C as ``CANCEL_SIGNAL`` (the job stops at
    its next step or frame: exit 130, footage keeps its segments); the terminal's own SIGINT is
    ignored, so a Ctrl-C sent to the batch alone (``kill -INT``) stops the jobs as one sent to the
    whole process group does, and neither counts twice. A second Ctrl-C: the batch kills the worker."""
    cancel = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(CANCEL_SIGNAL, lambda signum, frame: cancel.set())
    return cancel


def _worker(conn: Connection, home: Home, operator: str) -> None:
    """The body of one worker: run the jobs it is sent until it is sent ``None`` (or the batch is gone)."""
    cancel = _cancel_when_told()  # never cleared: after a Ctrl-C every job it is still sent stops at once
    engines = WorkerEngines(home)
    try:
        while True:
            pending: Pending | None = conn.recv()
            if pending is None:
                return
            engines.last = None
            result = execute(pending.job, pending.key, home, operator, cancel, engines)
            conn.send((replace(result, worker=os.getpid(), engines=engines.last), resident_bytes()))
    except (EOFError, OSError, KeyboardInterrupt):  # the batch went away, or a second Ctrl-C
        return
    finally:
        conn.close()


# -- in the batch process -----------------------------------------------------------------------------------


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    jobs: int = 0
    pending: Pending | None = None
    """The job it runs now (sent, no result back yet)."""
    started: float = 0.0
    retiring: bool = False
    reading: bool = True


def _run(todo: list[Pending], home: Home, operator: str, events: BatchEvents, limits: _Limits) -> bool:
    context = multiprocessing.get_context("spawn")
    queue = deque(todo)
    pool: dict[int, _Worker] = {}  # by process sentinel

    def interrupt(count: int) -> None:
        for worker in list(pool.values()):
            if count > 1:
                worker.process.kill()
            elif worker.pending is not None and worker.process.pid is not None:
                os.kill(worker.process.pid, CANCEL_SIGNAL)  # its job stops at its next step

    def start() -> _Worker:
        receive, send = context.Pipe(duplex=True)
        process = context.Process(
            target=_worker, args=(send, home, operator), name=f"likeness-batch-worker-{len(pool) + 1}"
        )
        process.start()
        send.close()  # the child holds its end
        pool[process.sentinel] = worker = _Worker(process, receive)
        return worker

    try:
        # Ignored here, and so in a worker until it sets its handler (a relayed cancel must not kill
        # a worker still starting: the default action of SIGUSR1 is to end the process).
        previous_cancel = signal.signal(CANCEL_SIGNAL, signal.SIG_IGN)
    except ValueError:  # not the main thread: Ctrl-C is not ours to handle
        previous_cancel = None
    told = False
    try:
        with counting_interrupts(interrupt) as interrupts:
            while True:
                if interrupts.count and not told:
                    events.note(
                        "stopping: running jobs stop at their next step; Ctrl-C again stops them at once"
                    )
                    told = True
                for worker in list(pool.values()):
                    if worker.pending is None and not worker.retiring:
                        if queue and not interrupts.count:
                            _assign(worker, queue, events)
                        else:
                            _retire(worker)
                while queue and len(pool) < limits.workers and not interrupts.count:
                    _assign(start(), queue, events)
                if not pool:
                    break
                _collect(pool, events, limits)
    finally:
        if previous_cancel is not None:
            signal.signal(CANCEL_SIGNAL, previous_cancel)
        for worker in pool.values():  # only when something above raised
            worker.process.kill()
            worker.process.join()
            worker.conn.close()
    return interrupts.count > 0


def _assign(worker: _Worker, queue: deque[Pending], events: BatchEvents) -> None:
    pending = queue.popleft()
    try:
        worker.conn.send(pending)
    except OSError:  # it died while idle: the job goes back to the queue, the worker is reaped
        queue.appendleft(pending)
        worker.retiring = True
        return
    worker.pending, worker.started = pending, time.monotonic()
    events.started(pending.job)


def _retire(worker: _Worker) -> None:
    worker.retiring = True
    try:
        worker.conn.send(None)
    except OSError:  # already gone
        pass


def _collect(pool: dict[int, _Worker], events: BatchEvents, limits: _Limits) -> None:
    """Wait until a worker hands back a result or ends; report the results and the jobs of the dead."""
    conns = {worker.conn: worker for worker in pool.values() if worker.reading}
    ready = wait([*pool, *conns])
    for item in ready:
        worker = conns.get(item)  # type: ignore[call-overload]
        if worker is not None:
            _receive(worker, events, limits)
    for item in ready:
        if not isinstance(item, int) or item not in pool:
            continue
        worker = pool.pop(item)
        worker.process.join()
        while worker.reading and worker.conn.poll():
            _receive(worker, events, limits)
        worker.conn.close()
        if worker.pending is not None:
            code = worker.process.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
            pending = worker.pending
            events.finished(died(pending.job, pending.key, how, time.monotonic() - worker.started))


def _receive(worker: _Worker, events: BatchEvents, limits: _Limits) -> None:
    try:
        result, rss = worker.conn.recv()
    except (EOFError, OSError):  # it ended; its sentinel reports it
        worker.reading = False
        return
    worker.pending = None
    worker.jobs += 1
    events.finished(result)
    if worker.retiring:
        return
    if worker.jobs >= limits.jobs_per_worker:
        _retire(worker)
    elif rss > limits.max_rss_bytes:
        events.note(
            f"worker {worker.process.pid} holds {rss / 2**30:.1f} GiB after {worker.jobs} job(s), above "
            f"{limits.max_rss_bytes / 2**30:.1f} GiB: replacing it"
        )
        _retire(worker)
