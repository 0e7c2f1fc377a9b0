"""``likeness batch JOBS.toml|JOBS.jsonl``: run many jobs, one result each (see likeness.jobs.batch)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from likeness.cli.common import home_option, json_option, resolve_cli_home
from likeness.cli.support import emit_json, handle_errors
from likeness.errors import UsageError

STATUS_WORDS = {3: "refused", 4: "bad input", 2: "usage", 130: "cancelled"}


@click.command()
@click.argument("jobs_file", metavar="JOBS", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=None,
    help="run this many jobs at once on this machine, in as many worker processes that keep their "
    "loaded models from job to job (default 1)",
)
@click.option(
    "--jobs-per-worker",
    type=click.IntRange(1, 1_000_000),
    default=None,
    metavar="N",
    help="replace a local worker with a fresh one after N jobs, so memory goes back (default 50; a "
    "worker above 2 GiB resident after a job is replaced at once)",
)
@click.option(
    "--ray",
    "ray_address",
    default=None,
    metavar="ADDRESS|auto",
    help="run every job as a task on an existing Ray cluster (see docs/deployment.md)",
)
@click.option(
    "--gpus-per-job",
    type=click.FloatRange(0.0, 64.0, min_open=True),
    default=1.0,
    show_default=True,
    help="with --ray: GPUs each generate/edit/insightface job asks for, when the cluster has GPUs",
)
@click.option(
    "--results",
    "results_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="the results file (default: next to JOBS, named like shots.toml.results.jsonl); a file of its "
    "own: not JOBS, nor a job's input or output",
)
@home_option
@json_option
@click.pass_context
@handle_errors
def batch(
    ctx: click.Context,
    jobs_file: Path,
    workers: int | None,
    jobs_per_worker: int | None,
    ray_address: str | None,
    gpus_per_job: float,
    results_file: Path | None,
    home: Path | None,
    as_json: bool,
) -> None:
    """Run every job in JOBS (a [[job]] table each in TOML, or one JSON object a line) and report one
    result per job. A job's keys are the options of its command plus kind (swap, footage, generate,
    edit), e.g. {"kind": "swap", "source": "a.jpg", "target": "take3.mov", "purpose": "film",
    "out": "take3_swapped.mp4"}; relative paths are read from the jobs file's folder.

    The whole file is checked first (exit 2, nothing runs). Refusals and bad input end only their
    own job. Running the batch again skips the jobs whose output is made and recorded, and resumes
    the rest. Exit code: 0 when every job is done; else the exit code all unfinished jobs share
    (3 refused, 4 bad input, 2 usage), 1 when they differ, 130 when interrupted.
    """
    from likeness.jobs.batch import run_batch
    from likeness.jobs.requests import default_operator

    if workers is not None and ray_address is not None:
        raise UsageError("--workers and --ray are two places to run jobs; give one of them")
    if jobs_per_worker is not None and ray_address is not None:
        raise UsageError("--jobs-per-worker is for local workers; on Ray every job is one task")
    if ray_address is not None:
        from likeness.jobs.batch_ray import ray_runner

        runner = ray_runner(ray_address, gpus_per_job=gpus_per_job)
    else:
        from likeness.jobs.batch_local import DEFAULT_JOBS_PER_WORKER, local_runner

        runner = local_runner(workers or 1, jobs_per_worker=jobs_per_worker or DEFAULT_JOBS_PER_WORKER)
    report = run_batch(
        jobs_file,
        home=resolve_cli_home(ctx, home),
        runner=runner,
        operator=default_operator(),
        events=_display(),
        results=results_file,
    )
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(report.summary())
        for result in report.results:
            if result.status == "failed":
                click.echo(
                    f"  job {result.number} (line {result.line}): exit {result.exit_code}: {result.reason}"
                )
        click.echo(f"results: {report.results_file}")
    sys.exit(report.exit_code)


def _display():
    """The progress display: a line on stderr as each job starts and ends, with the count done."""
    from likeness.jobs.batch import BatchEvents

    started = time.monotonic()
    ended = {"count": 0}

    def note(text: str) -> None:
        click.echo(f"batch: {text}", err=True)

    def job_started(job) -> None:
        click.echo(f"batch: started  {job.where}: {job.kind} → {job.out.name}", err=True)

    def job_finished(result) -> None:
        ended["count"] += 1
        clock = f"{time.monotonic() - started:6.1f}s"
        if result.status in ("done", "skipped"):
            what = f"{result.status:<8} job {result.number} → {Path(result.out).name} ({result.output_id})"
        else:
            word = STATUS_WORDS.get(result.exit_code, "failed")
            what = f"{word:<8} job {result.number} (exit {result.exit_code}): {result.reason}"
        click.echo(f"batch: [{ended['count']} ended, {clock}] {what}", err=True)

    return BatchEvents(started=job_started, finished=job_finished, note=note)
