"""Options and helpers shared by the command modules."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from likeness.errors import UsageError
from likeness.home import Home

PURPOSES_HELP = "what the output is for: film, education, creative (see consent/policy)"


def resolve_cli_home(ctx: click.Context, explicit: Path | None) -> Home:
    from likeness.home import resolve_home

    chosen = explicit if explicit is not None else ctx.find_root().params.get("home")
    home = resolve_home(chosen)
    try:
        home.ensure()
    except OSError as exc:
        raise UsageError(
            f"{home.root}: the data home cannot be created ({exc.strerror or exc})",
            hint="choose a folder you can write to with --home DIR or LIKENESS_HOME",
        ) from exc
    from likeness.fsutil import unwritable_reason

    why = unwritable_reason(home.root)
    if why is not None:
        raise UsageError(
            f"{home.root}: the data home is not writable ({why})",
            hint="choose a folder you can write to with --home DIR or LIKENESS_HOME",
        )
    return home


def home_option(command):
    return click.option(
        "--home",
        "home",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="data home (registry, keys, ledger); default: $LIKENESS_HOME or a per-user folder",
    )(command)


def json_option(command):
    return click.option("--json", "as_json", is_flag=True, help="print the result as JSON")(command)


def parse_date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD", param_hint=option) from exc


def overwrite_option(command):
    """``--overwrite``: every command that writes media to ``--out`` takes it
    (:mod:`likeness.jobs.destination`)."""
    return click.option(
        "--overwrite",
        is_flag=True,
        help="replace a file already at --out even when it is not an output recorded in this data home "
        "(without it such a file is kept and the job refused, exit 2)",
    )(command)


def disclosure_profile_option(command):
    """``--disclosure-profile``: every command that writes media takes it (checked by the job's step 1)."""
    return click.option(
        "--disclosure-profile",
        "disclosure_profile",
        metavar="eu|cn|default",
        default=None,
        help="how the output discloses itself: eu (EU AI Act Art. 50: 'AI GENERATED' / 'AI MODIFIED' "
        "top right, video labelled at the start), cn (GB 45438-2025: AIGC metadata, video labelled for "
        "the first 2 s) or default; default: the policy's [disclosure] default_profile",
    )(command)


def checked_profile(name: str | None) -> str | None:
    """``name`` if it is a disclosure profile (or ``None``: the policy's), else a usage error (exit 2)."""
    if name is None:
        return None
    from likeness.disclosure.profiles import get_profile

    return get_profile(name).name


def check_label_for_profile(ctx: click.Context, profile: str | None, corner: str, language: str) -> None:
    """A ``--label-corner`` or ``--label-language`` given on the command line that ``--disclosure-profile``
    would override is a usage error, not silently ignored."""
    if profile is None:
        return
    from click.core import ParameterSource

    from likeness.disclosure.profiles import check_label_choice, get_profile

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE

    check_label_choice(
        get_profile(profile),
        corner=corner if given("label_corner") else None,
        language=language if given("label_language") else None,
    )
