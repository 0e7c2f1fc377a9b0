"""``likeness batch``: many jobs from one file, each on the one road, with one result per job.

    read + check the whole jobs file → key every job → skip the finished ones → run the rest
    (local processes, or Ray tasks) → append each result to the results file as it arrives

* **Jobs file**: :mod:`likeness.jobs.batch_file` (kinds, keys, relative paths, checks).
* **Job key**: sha256 of the job's normalized options (paths absolute) and of its input files'
  contents; the same job with the same inputs has the same key.
* **Results file** (``<jobs file>.results.jsonl`` next to it, or in the data home when that folder
  is not writable): one JSON line per finished attempt, appended and fsynced by the batch process
  alone (workers hand their results back). A torn or unreadable line (a kill, bytes that are not
  UTF-8 JSON) is skipped, and the batch says which; the next record starts on a line of its own.
  A results file that is the jobs file, a job's input, output or model folder, or a file of the
  data home is a usage error (exit 2) before anything runs.
* **Resume**: a job is finished, and skipped, when its output file exists, its sha256 is the one a
  registry output record holds (a record whose signed ledger entry states that id and sha256),
  and that record is this job's: the output id the results file recorded for the job's key, or —
  for a job killed after its output was recorded and renamed but before the results line was
  written — a record of that path, made from the same input files for the same purpose, that the
  results file does not name under another key (an edited job's old output is not its result). A job
  with no output file runs (footage resumes from its finished segments). An output file that is
  not this job's recorded output is never overwritten: the job fails with a usage error (exit 2)
  that says to move it away.
* **Never twice**: every output is written by the one sealing path (atomic rename after the
  registry record); a job killed before the rename leaves nothing under the output name and runs
  again; one killed after it is recognised as above.
* **Exit code** (:attr:`BatchReport.exit_code`): 0 when every job is done (or was already); when
  some are not, the exit code those jobs share (3: all refused by the consent gate, 4: all bad
  input, 2: all usage errors, …), and 1 when they failed in different ways; 130 when the batch was
  interrupted. A jobs file that fails its check is exit 2 and no job runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from likeness.consent.records import OutputRecord
from likeness.errors import LikenessError, UsageError
from likeness.fsutil import same_file, sha256_file, try_lock, unwritable_reason
from likeness.home import Home
from likeness.jobs.batch_file import BatchJob, read_jobs
from likeness.ledger import canonical_json

if TYPE_CHECKING:
    from likeness.jobs.engines import Engines

RESULTS_SUFFIX = ".results.jsonl"
DONE, SKIPPED, FAILED, NOT_RUN = "done", "skipped", "failed", "not_run"


@dataclass(frozen=True)
class JobResult:
    """One job's result: done (this run), skipped (finished before), failed (with its exit code and
    reason), or not_run (the batch was interrupted first)."""

    number: int
    line: int
    kind: str
    out: str
    key: str
    status: str
    exit_code: int
    output_id: str | None = None
    sha256: str | None = None
    error: str | None = None
    """The error kind (``refused``, ``bad_input``, ``usage``, ``worker_died`` …) when not done."""
    reason: str | None = None
    hint: str | None = None
    seconds: float = 0.0
    note: str | None = None
    outcome: dict[str, Any] | None = None
    """The job's own result (what ``--json`` of its command prints), when it ran and finished."""
    worker: int | None = None
    """The process id of the local worker that ran it (``--workers``; several jobs share one)."""
    engines: str | None = None
    """Local workers: ``loaded`` when this job loaded its face models, ``reused`` when its worker
    had them loaded from an earlier job."""

    @property
    def finished(self) -> bool:
        return self.status in (DONE, SKIPPED)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def of(cls, job: BatchJob, key: str, status: str, exit_code: int, **more: Any) -> JobResult:
        return cls(job.number, job.line, job.kind, str(job.out), key, status, exit_code, **more)

    @classmethod
    def failure(cls, job: BatchJob, key: str, error: LikenessError, seconds: float = 0.0) -> JobResult:
        return cls.of(
            job,
            key,
            FAILED,
            error.exit_code,
            error=error.kind,
            reason=error.reason,
            hint=error.hint,
            seconds=round(seconds, 3),
        )


@dataclass(frozen=True)
class BatchReport:
    jobs_file: Path
    results_file: Path
    results: list[JobResult]
    interrupted: bool = False
    skipped_lines: tuple[int, ...] = ()
    """Lines of the results file that could not be read (torn, or not UTF-8 JSON) and were skipped."""

    @property
    def exit_code(self) -> int:
        """See the module docstring."""
        if self.interrupted:
            return 130
        codes = {r.exit_code for r in self.results if not r.finished}
        if not codes:
            return 0
        return codes.pop() if len(codes) == 1 else 1

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for result in self.results:
            found[result.status] = found.get(result.status, 0) + 1
        return found

    def summary(self) -> str:
        counts = self.counts()
        parts = [
            f"{counts[s]} {s.replace('_', ' ')}" for s in (DONE, SKIPPED, FAILED, NOT_RUN) if s in counts
        ]
        return f"{len(self.results)} job(s): {', '.join(parts)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobs_file": str(self.jobs_file),
            "results_file": str(self.results_file),
            "exit_code": self.exit_code,
            "counts": self.counts(),
            "interrupted": self.interrupted,
            "results_lines_skipped": list(self.skipped_lines),
            "jobs": [r.to_dict() for r in self.results],
        }


def _ignore(*_: Any) -> None:
    return None


@dataclass(frozen=True)
class BatchEvents:
    """What a batch tells its caller as it goes (the CLI's progress display)."""

    started: Callable[[BatchJob], None] = _ignore
    finished: Callable[[JobResult], None] = _ignore
    note: Callable[[str], None] = _ignore


@dataclass(frozen=True)
class Pending:
    """A job to run, with its key, as handed to a runner."""

    job: BatchJob
    key: str


Runner = Callable[[list[Pending], Home, str, BatchEvents], bool]
"""Runs the jobs, calls ``events.finished`` once for each job it started; returns whether it was
interrupted (jobs it never started get no result)."""


# -- keys and the results file ----------------------------------------------------------------------------


def input_hashes(job: BatchJob, known: dict[Path, str | None] | None = None) -> dict[str, str | None]:
    """Role → sha256 of each input file the job reads (``None``: missing or unreadable); ``known``:
    hashes by resolved path, read from and added to (a file several jobs share is read once)."""
    seen = {} if known is None else known
    hashes: dict[str, str | None] = {}
    for role, path in job.inputs().items():
        where = path.resolve()
        if where not in seen:
            seen[where] = _hash_or_none(path)
        hashes[role] = seen[where]
    return hashes


def job_key(job: BatchJob, inputs: Mapping[str, str | None] | None = None) -> str:
    """sha256 of the job's normalized options and its input files' contents (:func:`input_hashes`,
    worked out here unless given)."""
    hashes = input_hashes(job) if inputs is None else dict(inputs)
    body = canonical_json({"job": job.normalized(), "inputs": hashes})
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _hash_or_none(path: Path) -> str | None:
    try:
        return sha256_file(path) if path.is_file() else None
    except OSError:
        return None


def results_path(jobs_file: Path, home: Home) -> Path:
    """Next to the jobs file; in the data home when that folder is not writable."""
    jobs_file = Path(jobs_file).expanduser().absolute()
    beside = jobs_file.with_name(jobs_file.name + RESULTS_SUFFIX)
    if unwritable_reason(jobs_file.parent) is None:
        return beside
    digest = hashlib.sha256(str(jobs_file).encode("utf-8")).hexdigest()[:16]
    return home.root / "batches" / f"{jobs_file.name}-{digest}{RESULTS_SUFFIX}"


def check_results_path(where: Path, jobs_file: Path, jobs: list[BatchJob], home: Home) -> None:
    """:class:`UsageError` when the results file (appended to) is a file the batch reads or writes:
    the jobs file, a job's input or output (a symlink or hard link to one included), a folder a job
    names (a local model), or the data home's registry, ledger head, keys or models."""
    hint = "give --results a file of its own (or leave it out: JOBS.results.jsonl beside the jobs file)"
    if same_file(where, jobs_file):
        raise UsageError(f"{where}: the results file is the jobs file itself", hint=hint)
    for job in jobs:
        for role, path in job.files().items():
            if same_file(where, path):
                raise UsageError(
                    f"{where}: the results file is the {role} of {job.where} ({path})", hint=hint
                )
            if path.is_dir() and where.resolve().is_relative_to(path.resolve()):
                raise UsageError(
                    f"{where}: the results file is inside the {role} of {job.where} ({path})", hint=hint
                )
    db = home.db_path
    for what, path in [
        ("the registry database", db),
        *[("the registry database", db.with_name(db.name + end)) for end in ("-wal", "-shm", "-journal")],
        ("the ledger head", home.ledger_head_path),
    ]:
        if same_file(where, path):
            raise UsageError(f"{where}: the results file is {what} ({path})", hint=hint)
    for what, folder in [("the signing keys", home.keys_dir), ("the models", home.models_dir)]:
        if where.resolve().is_relative_to(folder.resolve()):
            raise UsageError(
                f"{where}: the results file is inside the folder of {what} ({folder})", hint=hint
            )


@dataclass
class ResultsFile:
    """The append-only results of every run of one jobs file; held locked while a batch runs."""

    path: Path
    skipped_lines: list[int] = field(default_factory=list)
    """The lines :meth:`latest` skipped (torn or foreign: not UTF-8 text, not a JSON object)."""
    _lock: IO[str] | None = field(default=None, repr=False)

    def __enter__(self) -> ResultsFile:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = try_lock(self.path)  # the file itself: no lock file left beside it
        except OSError as exc:
            raise UsageError(
                f"{self.path}: cannot open the results file ({exc.strerror or exc})",
                hint="choose a --results file in a folder you can write to",
            ) from None
        if self._lock is None:
            raise UsageError(
                f"another likeness batch is running these jobs (its results file is {self.path})",
                hint="wait for it to finish; a batch already running skips nothing it has not finished",
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def latest(self) -> dict[str, dict[str, Any]]:
        """Key → the last finished record for it. A torn or foreign line (not UTF-8, not a JSON
        object) is skipped; :attr:`skipped_lines` says which lines were."""
        found: dict[str, dict[str, Any]] = {}
        self.skipped_lines = []
        try:
            lines = self.path.read_bytes().split(b"\n")
        except FileNotFoundError:
            return found
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except ValueError:  # UnicodeDecodeError and JSONDecodeError alike
                record = None
            if not isinstance(record, dict):
                self.skipped_lines.append(number)
                continue
            if record.get("status") in (DONE, SKIPPED) and record.get("key"):
                found[str(record["key"])] = record
        return found

    @staticmethod
    def keys_by_output(latest: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
        """Output id → the job keys the results file recorded it finished under (from :meth:`latest`)."""
        found: dict[str, set[str]] = {}
        for key, record in latest.items():
            if record.get("output_id"):
                found.setdefault(str(record["output_id"]), set()).add(key)
        return found

    def append(self, result: JobResult) -> None:
        record = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **result.to_dict()}
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn last line: start a new one
                line = "\n" + line
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


def _skipped_lines_note(results_file: ResultsFile) -> str:
    lines = results_file.skipped_lines
    shown = ", ".join(str(n) for n in lines[:10]) + (
        f" and {len(lines) - 10} more" if len(lines) > 10 else ""
    )
    return (
        f"{results_file.path}: skipped {len(lines)} unreadable line(s) (torn, or not UTF-8 JSON): "
        f"line(s) {shown}; a finished job they recorded is still recognised from its output"
    )


# -- finished before? ----------------------------------------------------------------------------------------


def finished_before(
    job: BatchJob,
    key: str,
    record: dict[str, Any] | None,
    registry: Any,
    keys_by_output: dict[str, set[str]] | None = None,
    inputs: Mapping[str, str | None] | None = None,
) -> JobResult | None:
    """The job's skipped result when its output is already made (see the module docstring), ``None``
    when it should run; a :class:`UsageError` result when its output name holds another file, or an
    output an earlier version of the job made (``keys_by_output``: output id → the keys the results
    file recorded it under; an edited job has another key, and its old output is not its result).
    ``inputs``: the job's :func:`input_hashes`, when the caller has them (else worked out here)."""
    out = job.out
    if not out.is_file():
        return None
    sha = sha256_file(out)
    if record is not None and record.get("output_id"):
        found = registry.get_signed_output(record["output_id"])
        if found is not None and found.sha256 == sha == record.get("sha256"):
            return _skipped(job, key, found, "finished in an earlier run")
    for candidate in registry.find_outputs_by_sha256(sha):
        found = registry.get_signed_output(candidate.output_id)
        if inputs is None:
            inputs = input_hashes(job)
        if found is None or not _is_jobs_output(job, out, found, inputs):
            continue
        if (keys_by_output or {}).get(found.output_id, {key}) - {key}:
            return JobResult.failure(
                job,
                key,
                UsageError(
                    f"{out}: output {found.output_id} was made by an earlier version of this job (its "
                    "options or inputs have changed since); refusing to overwrite it",
                    hint="move it away or delete it to make the output again with the job as it is now, "
                    "or change the job's out",
                ),
            )
        return _skipped(job, key, found, "finished in an earlier run (recognised from the registry)")
    return JobResult.failure(
        job,
        key,
        UsageError(
            f"{out}: exists and is not an output this job made (the registry holds no signed record of "
            "this file made from these inputs); refusing to overwrite it",
            hint="move it away or delete it to make the output again, or change the job's out",
        ),
    )


def _is_jobs_output(job: BatchJob, out: Path, found: OutputRecord, inputs: Mapping[str, str | None]) -> bool:
    if found.path is None or Path(found.path).resolve() != out.resolve():
        return False
    if found.purpose != job.options.get("purpose"):
        return False
    for role, sha in inputs.items():
        recorded = found.ingredient_sha256.get(role)
        if recorded is not None and recorded != sha:
            return False
    return True


def _skipped(job: BatchJob, key: str, found: OutputRecord, note: str) -> JobResult:
    return JobResult.of(job, key, SKIPPED, 0, output_id=found.output_id, sha256=found.sha256, note=note)


# -- one job, in whichever process runs it ------------------------------------------------------------------


def execute(
    job: BatchJob,
    key: str,
    home: Home,
    operator: str,
    cancel: threading.Event | None = None,
    engines: Callable[[str], Engines] | None = None,
) -> JobResult:
    """Run one job on the one road in this process; every outcome becomes a :class:`JobResult`.

    ``engines``: backend → loaded models, for a process that runs several jobs and keeps them
    (a failure to load is this job's failure); without it the job loads its own."""
    from likeness.jobs.road import run_job

    started = time.monotonic()
    try:
        request = job.request(operator)
        loaded = engines(request.backend) if engines is not None else None
        outcome = run_job(request, home=home, cancel=cancel, engines=loaded)
    except LikenessError as error:
        return JobResult.failure(job, key, error, time.monotonic() - started)
    except Exception as exc:  # noqa: BLE001 - one job's bug must not end the batch
        return JobResult.of(
            job,
            key,
            FAILED,
            1,
            error="internal",
            reason=f"unexpected internal error: {type(exc).__name__}: {exc}",
            hint="nothing was written under the output name; run the batch again, and report it if it recurs",
            seconds=round(time.monotonic() - started, 3),
        )
    return JobResult.of(
        job,
        key,
        DONE,
        0,
        output_id=outcome.output_id,
        sha256=outcome.sha256,
        seconds=round(time.monotonic() - started, 3),
        outcome=json.loads(json.dumps(outcome.to_dict(), default=str)),
    )


def died(job: BatchJob, key: str, how: str, seconds: float) -> JobResult:
    """The result of a job whose process or Ray worker died before handing back its result."""
    return JobResult.of(
        job,
        key,
        FAILED,
        1,
        error="worker_died",
        reason=f"the worker running it died ({how}) before it reported back; an output appears under "
        "its name only once it is signed and recorded",
        hint="run the batch again: it skips the job if its output was finished and recorded, else runs "
        "it again (footage resumes from its finished segments)",
        seconds=round(seconds, 3),
    )


# -- the batch ---------------------------------------------------------------------------------------------


def run_batch(
    jobs_file: Path,
    *,
    home: Home,
    runner: Runner,
    operator: str,
    events: BatchEvents | None = None,
    results: Path | None = None,
) -> BatchReport:
    """Check the jobs file, skip what is finished, run the rest with ``runner``; see the module
    docstring. :class:`UsageError` (nothing ran) when the file fails its check."""
    from likeness.consent.registry import Registry

    shown = events or BatchEvents()
    jobs_file = Path(jobs_file).expanduser().absolute()
    jobs = read_jobs(jobs_file)  # 1. the whole file is checked before anything runs
    known: dict[Path, str | None] = {}
    hashes = [input_hashes(job, known) for job in jobs]  # 2. keys, each input file read once
    keys = [job_key(job, inputs) for job, inputs in zip(jobs, hashes, strict=True)]
    where = Path(results).expanduser().absolute() if results is not None else results_path(jobs_file, home)
    check_results_path(where, jobs_file, jobs, home)
    by_number: dict[int, JobResult] = {}
    with ResultsFile(where) as results_file:

        def finished(result: JobResult) -> None:
            results_file.append(result)
            by_number[result.number] = result
            shown.finished(result)

        # 3. what earlier runs finished
        recorded = results_file.latest()
        keys_by_output = ResultsFile.keys_by_output(recorded)
        todo: list[Pending] = []
        with Registry.open(home) as registry:
            for job, key, inputs in zip(jobs, keys, hashes, strict=True):
                before = finished_before(job, key, recorded.get(key), registry, keys_by_output, inputs)
                if before is None:
                    todo.append(Pending(job, key))
                else:
                    finished(before)
        if results_file.skipped_lines:
            shown.note(_skipped_lines_note(results_file))
        shown.note(
            f"{len(jobs)} job(s) in {jobs_file.name}: {len(todo)} to run, {len(jobs) - len(todo)} settled"
        )
        # 4. run the rest
        interrupted = (
            runner(todo, home, operator, BatchEvents(shown.started, finished, shown.note)) if todo else False
        )
    report = [
        by_number.get(job.number)
        or JobResult.of(job, key, NOT_RUN, 130, reason="the batch was interrupted first")
        for job, key in zip(jobs, keys, strict=True)
    ]
    return BatchReport(
        jobs_file, where, report, interrupted=interrupted, skipped_lines=tuple(results_file.skipped_lines)
    )
