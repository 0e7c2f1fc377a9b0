"""A batch's jobs file (``JOBS.toml`` or ``JOBS.jsonl``): read, checked whole, turned into requests.

A job is an object whose keys are the options of its command, plus ``kind``::

    {"kind": "swap", "source": "a.jpg", "target": "take3.mov", "purpose": "film", "out": "take3.mp4"}

one per line in JSONL (blank lines are skipped), or one ``[[job]]`` table each in TOML. Keys are
the option names with ``_`` or ``-`` (``face_index`` or ``face-index``).

Kinds:

* ``swap``: a still target (``source``, ``target``, ``purpose``, ``out``; ``face_index``, ``backend``,
  ``label_corner``, ``label_language``, ``disclosure_profile``, ``max_pixels``). A video target makes
  it a footage job, as ``likeness swap`` does, so ``swap`` is enough for both; the footage options are
  then accepted too. ``disclosure_profile`` (every kind) is checked with the rest of the file.
* ``footage``: the same swap, for a video target only (a still target is refused): adds ``faces``,
  ``codec``, ``crf``, ``preset``, ``detect_every``, ``segment_seconds``, ``rotation``, ``on_corrupt``.
* ``generate``: ``model``, ``prompt``, ``purpose``, ``out``; ``identity``, ``negative``, ``steps``,
  ``guidance``, ``seed``, ``size`` (``"512x512"``), ``ip_adapter``, ``record_prompt``, ``backend``.
* ``edit``: ``model``, ``target``, ``prompt``, ``purpose``, ``out``; ``face_index``, ``negative``,
  ``steps``, ``guidance``, ``seed``, ``strength``, ``work_size``, ``record_prompt``, ``backend``.

The accepted keys are the fields of the job's request (:mod:`likeness.jobs.requests`) except
``operator`` (the person running the batch), so an option added to a request is a job key at once.

Relative paths resolve against the jobs file's folder (``model`` too, when it names a folder
there). The whole file is checked before any job runs: an unknown kind, an unknown or missing key,
a value of the wrong type, a value the job's command would refuse (footage: ``crf``, ``preset``,
``codec``, ``detect_every``, ``segment_seconds``; generate and edit: ``steps``, ``guidance``,
``size``, ``strength``, an empty ``prompt``), a still/footage option on the other kind of target,
two jobs writing one output, or an output that is a folder or in a missing or unwritable folder is
a :class:`~likeness.errors.UsageError` naming the line.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from likeness.disclosure.profiles import check_label_choice, get_profile
from likeness.errors import UsageError
from likeness.jobs.requests import EditRequest, GenerateRequest, SwapRequest, VideoSwapRequest
from likeness.media.video import looks_like_video

KINDS = ("swap", "footage", "generate", "edit")
NOT_JOB_KEYS = frozenset({"operator", "overwrite"})
"""Request fields a jobs file cannot set: the operator is whoever runs the batch; and the batch keeps
a file at a job's output that is not that job's on its own rule
(:func:`likeness.jobs.batch.finished_before`), so a job takes no ``overwrite``."""
INPUT_KEYS = ("source", "target", "ip_adapter")
"""Options naming input files: their contents are part of a job's key."""
_TOML_JOB = re.compile(r"^[ \t]*\[\[[ \t]*job[ \t]*\]\]", re.MULTILINE)

Request = SwapRequest | GenerateRequest | EditRequest


@dataclass(frozen=True)
class BatchJob:
    """One checked job: where it is in the file, its kind and its options (paths resolved)."""

    number: int
    """1, 2, 3 … in file order."""
    line: int
    """The line of the jobs file it starts on."""
    kind: str
    options: Mapping[str, Any]
    """Request field → value; paths are absolute :class:`Path` objects."""
    request_type: type[Request] | None = None
    """The request class, worked out once when the file is read (``None``: from kind and target)."""

    @property
    def where(self) -> str:
        return f"job {self.number} (line {self.line})"

    @property
    def out(self) -> Path:
        return Path(self.options["out"])

    def inputs(self) -> dict[str, Path]:
        """The input files the job reads (role → path)."""
        return {key: Path(self.options[key]) for key in INPUT_KEYS if self.options.get(key) is not None}

    def files(self) -> dict[str, Path]:
        """Every file or folder the job reads or writes (role → path): its inputs, its output and a
        local model folder."""
        found = {name: value for name, value in self.options.items() if isinstance(value, Path)}
        model = self.options.get("model")
        if isinstance(model, str) and Path(model).is_absolute():
            found["model"] = Path(model)
        return found

    def request_cls(self) -> type[Request]:
        return self.request_type or request_class(self.kind, self.options)

    def request(self, operator: str) -> Request:
        """The request the one road runs (:func:`likeness.jobs.road.run_job`)."""
        return self.request_cls()(**self.options, operator=operator)

    def normalized(self) -> dict[str, Any]:
        """The job as plain JSON values (kind and options, paths as strings), for its key."""
        return {"kind": self.kind, **{k: _plain(v) for k, v in sorted(self.options.items())}}


def request_class(kind: str, options: Mapping[str, Any]) -> type[Request]:
    if kind in ("generate",):
        return GenerateRequest
    if kind == "edit":
        return EditRequest
    target = options.get("target")
    if kind == "footage" or (target is not None and looks_like_video(target)):
        return VideoSwapRequest
    return SwapRequest


def read_jobs(path: Path) -> list[BatchJob]:
    """Every job in the file, checked (see the module docstring); :class:`UsageError` at the first
    problem, naming its line."""
    path = Path(path).expanduser().absolute()
    try:  # utf-8-sig: a byte-order mark (Notepad, PowerShell 5's UTF8) is not part of the jobs
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{path}: the jobs file does not exist") from None
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path}: the jobs file is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})",
            hint="save it as UTF-8",
        ) from exc
    except OSError as exc:
        raise UsageError(f"{path}: the jobs file cannot be read ({exc})") from exc
    suffix = path.suffix.lower()
    if suffix == ".toml":
        raw = _toml_jobs(path, text)
    elif suffix in (".jsonl", ".ndjson"):
        raw = _jsonl_jobs(path, text)
    else:
        raise UsageError(
            f"{path}: a jobs file is .toml ([[job]] tables) or .jsonl (one JSON object a line)",
            hint="rename the file to say which it is",
        )
    if not raw:
        raise UsageError(
            f"{path}: holds no jobs", hint="add [[job]] tables (TOML) or one object a line (JSONL)"
        )
    jobs = [_check_job(path, number, line, fields) for number, (line, fields) in enumerate(raw, start=1)]
    _check_outputs(path, jobs)
    for job in jobs:
        _check_values(_where(path, job.number, job.line), job.request(operator=""), given=job.options)
    return jobs


def _toml_jobs(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from exc
    extra = sorted(set(data) - {"job"})
    if extra:
        raise UsageError(
            f"{path}: unknown top-level key(s) {', '.join(extra)}; a jobs file holds only [[job]] tables"
        )
    tables = data.get("job", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise UsageError(f"{path}: 'job' must be an array of tables, written [[job]]")
    lines = [text.count("\n", 0, match.start()) + 1 for match in _TOML_JOB.finditer(text)]
    if len(lines) != len(tables):  # e.g. job = [{...}] inline: number the jobs, no line known
        lines = [0] * len(tables)
    return list(zip(lines, tables, strict=True))


def _jsonl_jobs(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    jobs = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{path}:{line_no}: not a JSON object ({exc})") from exc
        if not isinstance(value, dict):
            raise UsageError(
                f"{path}:{line_no}: each line must be one JSON object, not {type(value).__name__}"
            )
        jobs.append((line_no, value))
    return jobs


def _where(path: Path, number: int, line: int) -> str:
    return f"{path}:{line}: job {number}" if line else f"{path}: job {number}"


def _check_job(path: Path, number: int, line: int, raw: Mapping[str, Any]) -> BatchJob:
    where = _where(path, number, line)
    fields = {str(key).replace("-", "_"): value for key, value in raw.items()}
    if len(fields) != len(raw):
        raise UsageError(f"{where}: a key is given twice (once with '-', once with '_')")
    kind = fields.pop("kind", None)
    if kind not in KINDS:
        raise UsageError(
            f"{where}: unknown kind {kind!r}" if kind is not None else f"{where}: has no 'kind'",
            hint=f"kind is one of: {', '.join(KINDS)}",
        )
    cls = _candidate_class(kind, fields, path.parent)
    known = _job_fields(cls)
    a_kind = f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} job"
    unknown = sorted(set(fields) - set(known))
    if unknown:
        hint = f"{a_kind} takes: {', '.join(sorted(known))}"
        if kind == "swap" and cls is SwapRequest and set(unknown) & set(_job_fields(VideoSwapRequest)):
            hint = "these options apply to video targets; the target is not a video"
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}", hint=hint)
    missing = [name for name, spec in known.items() if spec.required and name not in fields]
    if missing:
        raise UsageError(f"{where}: missing key(s) {', '.join(missing)}", hint=f"{a_kind} needs them")
    options = {name: known[name].convert(value, where, path.parent) for name, value in fields.items()}
    if kind == "footage" and not looks_like_video(options["target"]):
        raise UsageError(
            f"{where}: a footage job's target must be a video; {options['target']} is not",
            hint="use kind 'swap' for a still target",
        )
    if options.get("disclosure_profile") is not None:
        try:
            profile = get_profile(options["disclosure_profile"])
            check_label_choice(
                profile,
                corner=options.get("label_corner"),
                language=options.get("label_language"),
                corner_option="label_corner",
                language_option="label_language",
            )
        except UsageError as error:
            raise UsageError(f"{where}: {error.reason}", hint=error.hint) from None
        options["disclosure_profile"] = profile.name
    if cls is VideoSwapRequest and options.get("face_index") is not None:
        raise UsageError(
            f"{where}: face_index applies to images; in a video faces are followed and chosen by consent",
            hint="use faces = consented (only consenting targets) or all",
        )
    return BatchJob(number=number, line=line, kind=kind, options=options, request_type=cls)


def _check_values(where: str, request: Request, *, given: Mapping[str, Any]) -> None:
    """The values the job's command checks when it starts (footage: ``likeness swap``'s option
    bounds and the encoder settings; generate and edit: the generation settings), checked here so
    that a bad one stops the batch before any job runs."""
    try:
        if isinstance(request, VideoSwapRequest):
            from likeness.disclosure.footage_sink import check_crf_applies, video_output_settings
            from likeness.jobs.footage_limits import check_footage_limits

            check_footage_limits(request.detect_every, request.segment_seconds)
            video_output_settings(request.out, request.encode_settings())
            if "crf" in given:
                check_crf_applies(request.out, request.codec)
        elif isinstance(request, (GenerateRequest, EditRequest)):
            from likeness.jobs.generation import generation_settings

            generation_settings(request).check()
    except UsageError as error:
        raise UsageError(f"{where}: {error.reason}", hint=error.hint) from None


def _candidate_class(kind: str, fields: Mapping[str, Any], folder: Path) -> type[Request]:
    target = fields.get("target")
    if kind in ("swap", "footage") and isinstance(target, str):
        return request_class(kind, {"target": _resolve(folder, target)})
    return request_class(kind, {})


def _check_outputs(path: Path, jobs: list[BatchJob]) -> None:
    from likeness.disclosure.still_sink import check_output_path

    writers: dict[Path, BatchJob] = {}
    for job in jobs:
        out = job.out.resolve()
        try:
            footage = job.request_cls() is VideoSwapRequest
            check_output_path(out, names=".mp4 .mov" if footage else ".jpg .png")
        except UsageError as exc:
            raise UsageError(f"{path}:{job.line}: {job.where}: {exc.reason}", hint=exc.hint) from None
        if out in writers:
            raise UsageError(
                f"{path}:{job.line}: {job.where} writes {out}, as {writers[out].where} does",
                hint="give every job its own output file",
            )
        writers[out] = job
    for job in jobs:
        for role, given in job.inputs().items():
            writer = writers.get(given.resolve())
            if writer is not None and writer is not job:
                raise UsageError(
                    f"{path}:{job.line}: {job.where} reads its {role} {given}, which {writer.where} writes",
                    hint="the jobs of a batch run in any order; run the second step as its own batch",
                )


# -- option types -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    name: str
    hint: Any
    required: bool

    def convert(self, value: Any, where: str, folder: Path) -> Any:
        kinds = _kinds(self.hint)
        if value is None and type(None) in kinds:
            return None
        if Path in kinds:
            if not isinstance(value, str) or not value.strip():
                raise UsageError(f"{where}: {self.name} must be a file path (a string), not {value!r}")
            return _resolve(folder, value)
        if tuple in kinds:  # size: "WIDTHxHEIGHT" or [width, height]
            return _size(value, where, self.name)
        if bool in kinds:
            if not isinstance(value, bool):
                raise UsageError(f"{where}: {self.name} must be true or false, not {value!r}")
            return value
        if int in kinds and isinstance(value, int) and not isinstance(value, bool):
            return value
        if float in kinds and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        choices = _choices(self.hint)
        if str in kinds or choices:
            if not isinstance(value, str):
                raise UsageError(f"{where}: {self.name} must be a string, not {value!r}")
            if choices and value not in choices:
                raise UsageError(f"{where}: {self.name} {value!r} is not one of {', '.join(choices)}")
            return (
                str(_resolve(folder, value)) if self.name == "model" and _is_local(folder, value) else value
            )
        wanted = " or ".join(k.__name__ for k in kinds if k is not type(None))
        raise UsageError(f"{where}: {self.name} must be {wanted or 'a value'}, not {value!r}")


def _job_fields(cls: type[Request]) -> dict[str, _Field]:
    hints = typing.get_type_hints(cls)
    found = {}
    for f in dataclasses.fields(cls):
        if f.name in NOT_JOB_KEYS or not f.init:
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        found[f.name] = _Field(f.name, hints[f.name], required)
    return found


def _kinds(hint: Any) -> set[type]:
    """The plain types a hint admits (``int | None`` → {int, NoneType}; ``Literal`` → {str})."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_kinds(arg) for arg in typing.get_args(hint)))
    if origin is typing.Literal:
        return {type(arg) for arg in typing.get_args(hint)}
    if origin is not None:
        return {origin}
    return {hint} if isinstance(hint, type) else set()


def _choices(hint: Any) -> tuple[str, ...]:
    if typing.get_origin(hint) is typing.Literal:
        return tuple(str(arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(c for arg in typing.get_args(hint) for c in _choices(arg))
    return ()


def _size(value: Any, where: str, name: str) -> tuple[int, int]:
    if isinstance(value, str):
        width, sep, height = value.lower().partition("x")
        if sep and width.strip().isdigit() and height.strip().isdigit():
            return int(width), int(height)
    elif (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise UsageError(f'{where}: {name} must be "WIDTHxHEIGHT" (e.g. "512x512"), not {value!r}')


def _resolve(folder: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else folder / path


def _is_local(folder: Path, value: str) -> bool:
    """A generation model named by a path relative to the jobs file (else a table name or repo id)."""
    return value.startswith(("./", "../")) or (folder / value).is_dir()


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value
