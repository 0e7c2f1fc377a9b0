"""Throughput of ``likeness batch`` on still swaps: a fresh process per job vs long-lived workers.

    python bench/batch.py [--jobs 8] [--workers 1 2] [--backend dlib]

Runs the same ``--jobs`` consented still swaps (Darwin's likeness onto Lincoln's portrait on a
1920×1080 canvas, each to its own output) through :func:`likeness.jobs.batch.run_batch` with the
local runner in two modes, for each worker count, all in one run:

* ``per-job``: ``jobs_per_worker=1``, the former design (one ``spawn`` process per job, which
  imports the road and loads the models for that job alone);
* ``reuse``: the default, long-lived workers that keep their loaded models between jobs.

Prints wall time, jobs/min, ``slot s/job`` (wall × workers / jobs: what one job costs a worker
slot), ``in-job s`` (the mean time ``execute`` measured inside the worker, model load included when
the job loaded them), ``outside s`` (their difference: process start, imports, pipes), and how
many jobs loaded the models. Also the load average before and after: on a shared machine the
numbers are noisy; compare the modes within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from likeness.demo import asset
from likeness.home import Home
from likeness.jobs.batch import run_batch
from likeness.jobs.batch_local import DEFAULT_JOBS_PER_WORKER, local_runner
from swap_image import make_1080p_target, make_cast  # the same target and cast as bench/swap_image.py


def jobs_file(folder: Path, target: Path, count: int, backend: str) -> Path:
    folder.mkdir()
    lines = [
        {
            "kind": "swap",
            "source": str(asset("darwin_1.jpg")),
            "target": str(target),
            "purpose": "education",
            "backend": backend,
            "out": f"out_{i}.jpg",
        }
        for i in range(count)
    ]
    path = folder / "jobs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backend", default="dlib")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        home = Home(root=folder / "home").ensure()
        make_cast(home, args.backend)
        target = make_1080p_target(folder)
        print(f"{args.jobs} still swaps (1080p target, {args.backend}); load average before: {_load()}")
        header = (
            f"{'mode':<9}{'workers':>8}{'wall s':>9}{'jobs/min':>10}{'slot s/job':>12}"
            f"{'in-job s':>10}{'outside s':>11}{'loads':>7}"
        )
        print(header)
        print("-" * len(header))
        rows: dict[tuple[str, int], float] = {}
        for workers in args.workers:
            for mode, per_worker in (("per-job", 1), ("reuse", DEFAULT_JOBS_PER_WORKER)):
                path = jobs_file(folder / f"{mode}-{workers}", target, args.jobs, args.backend)
                runner = local_runner(workers, jobs_per_worker=per_worker)
                start = time.perf_counter()
                report = run_batch(path, home=home, runner=runner, operator="bench")
                wall = time.perf_counter() - start
                failed = [r for r in report.results if r.status != "done"]
                if failed:
                    raise SystemExit(f"{mode} × {workers}: {len(failed)} job(s) failed: {failed[0].reason}")
                slot = wall * workers / args.jobs
                in_job = statistics.fmean(r.seconds for r in report.results)
                loads = sum(r.engines == "loaded" for r in report.results)
                rows[(mode, workers)] = wall
                print(
                    f"{mode:<9}{workers:>8}{wall:>9.1f}{args.jobs / wall * 60:>10.1f}{slot:>12.2f}"
                    f"{in_job:>10.2f}{slot - in_job:>11.2f}{loads:>7}"
                )
        for workers in args.workers:
            ratio = rows[("per-job", workers)] / rows[("reuse", workers)]
            print(f"reuse vs per-job, {workers} worker(s): {ratio:.2f}× the throughput")
        print(f"load average after: {_load()} ({os.cpu_count()} CPUs)")


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
