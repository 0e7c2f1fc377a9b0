"""Audit commands: check the ledger, export a report for rights holders, show recent entries."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from likeness.cli.common import home_option, json_option, resolve_cli_home
from likeness.cli.support import emit_json, handle_errors
from likeness.errors import UsageError


@click.group()
def audit() -> None:
    """Check and export the hash-chained, signed audit ledger."""


@audit.command("verify")
@click.option(
    "--head",
    "expected_head",
    default=None,
    help="a head hash kept from an earlier check: also fail if the chain no longer passes through it",
)
@click.option(
    "--witness",
    "witnesses",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="a released output (repeatable): fail if the chain lacks the ledger head its signed manifest states",
)
@home_option
@json_option
@click.pass_context
@handle_errors
def audit_verify(
    ctx: click.Context,
    expected_head: str | None,
    witnesses: tuple[Path, ...],
    home: Path | None,
    as_json: bool,
) -> None:
    """Check the ledger's chain and signatures, the head file, every registry table (and the licence
    records file) against the ledger (per table: rows without an entry, entries without a row, changed
    rows) and any witnesses.

    Exits 0 when intact; otherwise says what is wrong and exits 1.
    """
    from likeness.consent.head_file import Head
    from likeness.consent.registry import Registry
    from likeness.disclosure.credentials import read_credentials
    from likeness.licences import recorded_licences

    if expected_head is not None:
        expected_head = expected_head.strip().lower()
        if len(expected_head) != 64 or any(c not in "0123456789abcdef" for c in expected_head):
            raise UsageError(
                f"--head {expected_head!r} is not a ledger head hash",
                hint="give the 64 hexadecimal characters that `likeness audit verify` printed after "
                "'head: entry N'",
            )
    resolved = resolve_cli_home(ctx, home)
    read: list[tuple[str, Head | None, str]] = []
    for path in witnesses:
        credentials = read_credentials(path, resolved)
        stated = credentials.ledger_head or {}
        head = Head(int(stated["seq"]), str(stated["hash"])) if {"seq", "hash"} <= set(stated) else None
        read.append((str(path), head, credentials.state))
    licences = {model: record.to_dict() for model, record in recorded_licences(resolved).items()}
    with Registry.open(resolved) as registry:
        report = registry.audit_registry(
            witnesses=read, expected_head=expected_head, licence_records=licences
        )
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(report.describe())
    if not report.ok:
        sys.exit(1)


@audit.command("export")
@click.option(
    "--identity", "identity_ref", default=None, help="only this identity (id or name); default: everyone"
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write the report to this file (atomically); default: print it",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "json"]),
    default="md",
    show_default=True,
    help="report format",
)
@home_option
@json_option
@click.pass_context
@handle_errors
def audit_export(
    ctx: click.Context,
    identity_ref: str | None,
    out: Path | None,
    fmt: str,
    home: Path | None,
    as_json: bool,
) -> None:
    """Write a report a rights holder can read: per identity, consents, outputs, refusals, erasure.

    Exits 1 (after writing the report, which says so) when the ledger check fails.
    """
    from likeness.consent.audit import build_audit_report, render, write_atomically
    from likeness.consent.registry import Registry
    from likeness.jobs.requests import default_operator

    with Registry.open(resolve_cli_home(ctx, home)) as registry:
        report = build_audit_report(registry, identity=identity_ref, operator=default_operator())
    fmt = "json" if as_json and out is None else fmt
    text = render(report, fmt)
    if out is None:
        click.echo(text, nl=False)
    else:
        write_atomically(out, text)
        summary = {
            "out": str(out),
            "format": fmt,
            "identities": len(report.identities),
            "ledger": report.chain.to_dict(),
        }
        if as_json:
            emit_json(summary)
        else:
            people = len(report.identities)
            click.echo(f"wrote {out} ({people} identit{'y' if people == 1 else 'ies'})")
    if not report.chain.ok:
        click.echo(f"likeness: {report.chain.describe()}", err=True)
        sys.exit(1)


@audit.command("log")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="how many entries")
@click.option(
    "--kind", default=None, help="only entries of this kind (enrol, grant, revoke, refusal, output, …)"
)
@home_option
@json_option
@click.pass_context
@handle_errors
def audit_log(ctx: click.Context, limit: int, kind: str | None, home: Path | None, as_json: bool) -> None:
    """Show the most recent ledger entries, oldest first."""
    from likeness.consent.registry import Registry

    with Registry.open(resolve_cli_home(ctx, home)) as registry:
        entries = registry.recent_ledger_entries(limit, kind=kind)
    if as_json:
        emit_json(entries)
        return
    if not entries:
        click.echo("the ledger has no entries" + (f" of kind {kind!r}" if kind else ""))
    for entry in entries:
        data = entry.payload
        facts = [
            f"{key}={data[key]}"
            for key in (
                "identity_id",
                "consent_id",
                "output_id",
                "rule",
                "face",
                "purpose",
                "embedding_space",
                "threshold",
                "key",
            )
            if data.get(key) is not None
        ]
        click.echo(f"{entry.seq:6d}  {entry.time[:19]}  {entry.kind:<16} {entry.actor:<14} {' '.join(facts)}")
