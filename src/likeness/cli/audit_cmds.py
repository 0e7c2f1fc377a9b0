"""Audit commands: check and export the ledger."""

from __future__ import annotations

from pathlib import Path

import click

from likeness.cli.common import home_option, json_option, resolve_cli_home
from likeness.cli.support import emit_json, handle_errors, to_jsonable


@click.group()
def audit() -> None:
    """Check and export the hash-chained audit ledger."""


@audit.command("verify")
@home_option
@json_option
@click.pass_context
@handle_errors
def audit_verify(ctx: click.Context, home: Path | None, as_json: bool) -> None:
    """Check every ledger entry's hash chain (and signature); name the first bad entry."""
    from likeness.consent.registry import Registry
    from likeness.errors import RegistryError

    with Registry.open(resolve_cli_home(ctx, home)) as registry:
        result = registry.verify_ledger()
    if as_json:
        emit_json(result)
    ok = bool(to_jsonable(result).get("ok"))
    if not as_json:
        click.echo(result.describe() if hasattr(result, "describe") else str(result))
    if not ok:
        raise SystemExit(RegistryError.exit_code)
