"""Batch jobs on an existing Ray cluster: one job = one Ray task (``likeness batch --ray ADDRESS``).

Ray is imported only here, and only when a batch asks for it. ``ADDRESS`` is what
``ray.init(address=...)`` takes: ``auto`` (the cluster ``ray start`` began on this machine, or
``$RAY_ADDRESS``), ``HOST:PORT``, or ``ray://HOST:10001``. A driver that already called
``ray.init`` (a test's ``ray.init(num_cpus=2)``) is used as it is.

Each task asks for 1 CPU; a job that runs on a GPU when one is there (generation and face edits
on CUDA, the insightface backend with onnxruntime-gpu) also asks for ``gpus_per_job`` GPUs when the
cluster has any, so Ray places it on a GPU worker and never runs more of them on a card than fit.
Tasks are not retried (``max_retries=0``): a worker that dies loses its job, which leaves nothing
under its output name and runs again on the next run of the batch (footage resumes from its
finished segments, when the worker's job folder is on storage the next worker sees).

Every task receives the driver's data home (its path, ``LIKENESS_DB_URL`` and ledger head file):
the same home path must exist on every node with the same ``keys/`` folder, and the registry must
be one every node reaches — PostgreSQL, or SQLite only on a one-machine cluster (refused
otherwise). See docs/deployment.md.
"""

from __future__ import annotations

import time
from typing import Any

from likeness.errors import UsageError
from likeness.home import Home
from likeness.jobs.batch import BatchEvents, JobResult, Pending, died, execute
from likeness.jobs.batch_file import BatchJob
from likeness.progress import counting_interrupts

GPU_KINDS = ("generate", "edit")
GPU_BACKENDS = ("insightface",)
WAIT_S = 0.2
"""How long the driver waits on Ray between looks at Ctrl-C (counted, not raised: see ``_run``)."""


def wants_gpu(job: BatchJob) -> bool:
    """Whether the job runs on a GPU when its worker has one."""
    return job.kind in GPU_KINDS or job.options.get("backend") in GPU_BACKENDS


def resources(job: BatchJob, *, cluster_gpus: float, gpus_per_job: float) -> dict[str, float]:
    """The Ray resource request of one job's task."""
    gpus = gpus_per_job if wants_gpu(job) and cluster_gpus > 0 else 0.0
    return {"num_cpus": 1.0, "num_gpus": gpus}


def _task(job: BatchJob, key: str, home: Home, operator: str) -> JobResult:
    """The body of one Ray task (runs on a worker node)."""
    return execute(job, key, home, operator)


def ray_runner(address: str, *, gpus_per_job: float = 1.0):
    """A :data:`~likeness.jobs.batch.Runner` that runs every job as one task on the Ray cluster at
    ``address``."""
    if gpus_per_job <= 0:
        raise UsageError(f"--gpus-per-job must be above 0, not {gpus_per_job}")

    def run(todo: list[Pending], home: Home, operator: str, events: BatchEvents) -> bool:
        ray = _connect(address)
        _check_shared_registry(ray, home)
        return _run(ray, todo, home, operator, events, gpus_per_job)

    return run


def _connect(address: str) -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--ray needs Ray, which is not installed", hint="pip install 'likeness[batch]'"
        ) from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(
                f"cannot reach a Ray cluster at {address!r} ({exc})",
                hint="start one with `ray start --head` (and `ray start --address HEAD:6379` on each "
                "worker), "
                "or use --workers N to run on this machine",
            ) from exc
    return ray


def _check_shared_registry(ray: Any, home: Home) -> None:
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if home.db_url.startswith("sqlite") and len(nodes) > 1:
        raise UsageError(
            f"the registry is a SQLite file ({home.db_path}), which the {len(nodes)} machines of this Ray "
            "cluster cannot share",
            hint="point every machine at one PostgreSQL registry: LIKENESS_DB_URL=postgresql+psycopg://… "
            "(docs/deployment.md)",
        )


def _run(
    ray: Any, todo: list[Pending], home: Home, operator: str, events: BatchEvents, gpus_per_job: float
) -> bool:
    cluster_gpus = float(ray.cluster_resources().get("GPU", 0.0))
    task = ray.remote(max_retries=0)(_task)
    refs: dict[Any, tuple[Pending, float]] = {}
    for pending in todo:
        options = resources(pending.job, cluster_gpus=cluster_gpus, gpus_per_job=gpus_per_job)
        ref = task.options(**options, name=f"likeness-batch-job-{pending.job.number}").remote(
            pending.job, pending.key, home, operator
        )
        refs[ref] = (pending, time.monotonic())
    gpu_note = f", {cluster_gpus:g} GPU(s)" if cluster_gpus else ""
    cpus = float(ray.cluster_resources().get("CPU", 0.0))
    events.note(
        f"{len(refs)} task(s) submitted to the Ray cluster ({cpus:g} CPU(s){gpu_note}); Ray starts them"
    )
    cancelled = 0

    def give_up(count: int) -> None:
        if count >= 3:  # a cluster that does not answer: the third Ctrl-C leaves at once
            raise KeyboardInterrupt

    with counting_interrupts(give_up) as interrupts:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1, timeout=WAIT_S)
            for ref in done:  # a Ctrl-C cannot fall between taking a result and writing it down
                pending, started = refs.pop(ref)
                events.finished(_result(ray, ref, pending, started))
            if interrupts.count > cancelled and refs:
                cancelled = interrupts.count
                forced = " (forced)" if cancelled > 1 else ""
                events.note(f"stopping: cancelling the batch's Ray tasks{forced}")
                for ref in refs:
                    ray.cancel(ref, force=cancelled > 1)
    return interrupts.count > 0


def _result(ray: Any, ref: Any, pending: Pending, started: float) -> JobResult:
    seconds = time.monotonic() - started
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return JobResult.of(
            pending.job,
            pending.key,
            "failed",
            130,
            error="cancelled",
            reason="cancelled before it finished; nothing was written under the output name",
            hint="run the batch again to finish it",
        )
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
        return died(pending.job, pending.key, type(exc).__name__, seconds)
    except ray.exceptions.RayError as exc:
        return died(pending.job, pending.key, f"{type(exc).__name__}: {str(exc).splitlines()[0]}", seconds)
