"""Batch jobs on this machine: one fresh process per job (``spawn``), at most ``workers`` at a time.

A process per job rather than a long-lived pool: a job that is killed (out of memory, SIGKILL)
takes only itself down — a pool's executor would break and fail every job queued behind it — and
footage's memory goes back to the system after each job. The price is a process start and a model
load per job: on the 2-core development machine, spawning and importing the road took 1.7-1.9 s
and loading the dlib engines 3.3 s under a load average of 15 (0.45 s and 0.7 s when quiet), next
to about 5 s for a still swap.

Every process opens the registry itself: SQLite serialises writers (``BEGIN IMMEDIATE``, busy
timeout), PostgreSQL with its table lock, so the ledger stays one chain. Results come back through
a pipe; a process that ends without handing one back is reported as died (its job runs again on
the next run of the batch).

Ctrl-C: the terminal sends it to every process of the batch. Each job stops at its next step or
frame (exit 130; footage keeps its finished segments) and no new job starts; a second Ctrl-C kills
the jobs still running (which leaves nothing under their output names either).
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from likeness.home import Home
from likeness.jobs.batch import BatchEvents, JobResult, Pending, cancel_on_sigint, died, execute


def local_runner(workers: int):
    """A :data:`~likeness.jobs.batch.Runner` running ``workers`` jobs at once on this machine."""
    if workers < 1:
        from likeness.errors import UsageError

        raise UsageError(f"--workers must be at least 1, not {workers}")

    def run(todo: list[Pending], home: Home, operator: str, events: BatchEvents) -> bool:
        return _run(todo, home, operator, events, workers)

    return run


def _job_process(conn: Connection, pending: Pending, home: Home, operator: str) -> None:
    """The body of one job's process."""
    cancel = cancel_on_sigint()
    result = execute(pending.job, pending.key, home, operator, cancel)
    conn.send(result)
    conn.close()


@dataclass
class _Running:
    pending: Pending
    process: BaseProcess
    conn: Connection
    started: float
    result: JobResult | None = None
    reading: bool = True


def _run(todo: list[Pending], home: Home, operator: str, events: BatchEvents, workers: int) -> bool:
    context = multiprocessing.get_context("spawn")
    queue = deque(todo)
    running: dict[int, _Running] = {}  # by process sentinel
    interrupts = [0]

    def interrupt(signum: int, frame: object) -> None:
        # Counted here, acted on in the loop: an exception raised at an arbitrary point could lose a
        # result that was received but not yet written to the results file.
        interrupts[0] += 1
        if interrupts[0] > 1:
            for job in list(running.values()):
                job.process.kill()

    try:
        previous = signal.signal(signal.SIGINT, interrupt)
    except ValueError:  # not the main thread: Ctrl-C is not ours to handle
        previous = None
    told = False
    try:
        while queue or running:
            if interrupts[0] and not told:
                events.note("stopping: running jobs stop at their next step; Ctrl-C again stops them at once")
                told = True
            while queue and len(running) < workers and not interrupts[0]:
                pending = queue.popleft()
                receive, send = context.Pipe(duplex=False)
                process = context.Process(
                    target=_job_process,
                    args=(send, pending, home, operator),
                    name=f"likeness-batch-job-{pending.job.number}",
                )
                process.start()
                send.close()  # the child holds the sending end
                running[process.sentinel] = _Running(pending, process, receive, time.monotonic())
                events.started(pending.job)
            if not running:
                break
            _collect(running, events)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return interrupts[0] > 0


def _collect(running: dict[int, _Running], events: BatchEvents) -> None:
    """Wait until a job hands back its result or its process ends; report the jobs that ended."""
    conns = {job.conn: job for job in running.values() if job.reading}
    ready = wait([*running, *conns])
    for item in ready:
        job = conns.get(item)  # type: ignore[call-overload]
        if job is not None:
            job.result, job.reading = _receive(job.conn), False
    for item in ready:
        if not isinstance(item, int) or item not in running:
            continue
        job = running.pop(item)
        job.process.join()
        if job.reading and job.conn.poll():
            job.result = _receive(job.conn)
        job.conn.close()
        code = job.process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        seconds = time.monotonic() - job.started
        events.finished(job.result or died(job.pending.job, job.pending.key, how, seconds))


def _receive(conn: Connection) -> JobResult | None:
    try:
        return conn.recv()
    except (EOFError, OSError):  # the process died before sending
        return None
