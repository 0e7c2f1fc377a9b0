"""Identity and consent commands: enrol people, record and revoke consent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from likeness.cli.common import PURPOSES_HELP, home_option, json_option, parse_date, resolve_cli_home
from likeness.cli.support import ProgressLine, emit_json, handle_errors, to_jsonable


@click.group()
def identity() -> None:
    """Enrol people from reference photos and list them."""


@identity.command("add")
@click.argument("name")
@click.option(
    "--photo",
    "photos",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="a reference photo showing only this person (repeat for several)",
)
@click.option("--backend", default="dlib", show_default=True, help="face backend for the embeddings")
@home_option
@json_option
@click.pass_context
@handle_errors
def identity_add(
    ctx: click.Context, name: str, photos: tuple[Path, ...], backend: str, home: Path | None, as_json: bool
) -> None:
    """Enrol NAME from one or more reference photos; prints the identity id."""
    from likeness.pipeline import EnrolRequest, enrol_identity

    progress = ProgressLine("enrol", enabled=not as_json)
    ident = enrol_identity(
        EnrolRequest(name=name, photos=list(photos), backend=backend),
        home=resolve_cli_home(ctx, home),
        progress=progress,
    )
    if as_json:
        emit_json(ident)
    else:
        click.echo(ident.id)


@identity.command("list")
@home_option
@json_option
@click.pass_context
@handle_errors
def identity_list(ctx: click.Context, home: Path | None, as_json: bool) -> None:
    """List enrolled identities."""
    from likeness.consent.registry import Registry

    with Registry.open(resolve_cli_home(ctx, home)) as registry:
        identities = registry.list_identities()
    if as_json:
        emit_json(identities)
        return
    if not identities:
        click.echo("no identities enrolled yet; add one with `likeness identity add NAME --photo P`")
    for ident in identities:
        data = to_jsonable(ident)
        click.echo(f"{data['id']}  {data['name']}")


@click.group()
def consent() -> None:
    """Record, revoke and list consents."""


@consent.command("grant")
@click.argument("identity_ref", metavar="IDENTITY")
@click.option("--purpose", "purposes", multiple=True, required=True, help=PURPOSES_HELP)
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(["source", "target"]),
    help="source: their likeness may be put on others; target: their face may be replaced",
)
@click.option(
    "--media",
    "media",
    multiple=True,
    type=click.Choice(["image", "video"]),
    help="media kinds covered (default: image)",
)
@click.option("--until", "until", required=True, help="last day the consent is valid (YYYY-MM-DD)")
@click.option("--from", "valid_from", default=None, help="first day it is valid (YYYY-MM-DD; default today)")
@click.option("--uses", required=True, help="a specific description of the intended use")
@click.option("--project", default=None, help="the project / production this consent is scoped to")
@click.option(
    "--capacity",
    default="self",
    help="who grants: self, guardian, estate, union, rights_expired (historical figure)",
)
@click.option("--grantor", default=None, help="name of the person or body granting (default: the subject)")
@click.option("--date-of-birth", "date_of_birth", default=None, help="subject's date of birth (minors)")
@click.option("--date-of-death", "date_of_death", default=None, help="for estates and expired rights")
@click.option("--jurisdiction", default=None, help="jurisdiction whose law applies (e.g. US-CA)")
@click.option("--basis", default=None, help="legal basis, e.g. why post-mortem rights have expired")
@click.option("--compensation", default=None, help="compensation terms")
@click.option("--representation", default=None, help="counsel or union representing the subject, by name")
@click.option(
    "--evidence",
    type=click.Path(path_type=Path),
    default=None,
    help="the signed consent document (stored by content hash)",
)
@click.option("--takedown-contact", "takedown_contact", default=None, help="who to contact for takedown")
@home_option
@json_option
@click.pass_context
@handle_errors
def consent_grant(
    ctx: click.Context,
    identity_ref: str,
    purposes: tuple[str, ...],
    roles: tuple[str, ...],
    media: tuple[str, ...],
    until: str,
    valid_from: str | None,
    uses: str,
    home: Path | None,
    as_json: bool,
    **record: Any,
) -> None:
    """Record that IDENTITY consents to the described use; prints the consent id."""
    from likeness.consent.registry import Registry
    from likeness.pipeline import default_operator

    for key in ("date_of_birth", "date_of_death"):
        record[key] = parse_date(record[key], f"--{key.replace('_', '-')}")
    with Registry.open(resolve_cli_home(ctx, home)) as registry:
        ident = registry.get_identity(identity_ref)
        granted = registry.grant(
            ident.id,
            purposes=list(purposes),
            roles=list(roles),
            media=list(media) or ["image"],
            valid_until=parse_date(until, "--until"),
            valid_from=parse_date(valid_from, "--from"),
            uses=uses,
            operator=default_operator(),
            **record,
        )
    if as_json:
        emit_json(granted)
    else:
        click.echo(granted.id)


@consent.command("revoke")
@click.argument("consent_id")
@click.option("--reason", required=True, help="why it is revoked (kept in the ledger)")
@home_option
@json_option
@click.pass_context
@handle_errors
def consent_revoke(
    ctx: click.Context, consent_id: str, reason: str, home: Path | None, as_json: bool
) -> None:
    """Revoke CONSENT_ID; takes effect at once for every new or queued job."""
    from likeness.consent.registry import Registry
    from likeness.pipeline import default_operator

    with Registry.open(resolve_cli_home(ctx, home)) as registry:
        revoked = registry.revoke(consent_id, reason=reason, operator=default_operator())
    if as_json:
        emit_json(revoked)
    else:
        click.echo(f"revoked {consent_id}")


@consent.command("list")
@click.option("--identity", "identity_ref", default=None, help="only this identity's consents")
@home_option
@json_option
@click.pass_context
@handle_errors
def consent_list(ctx: click.Context, identity_ref: str | None, home: Path | None, as_json: bool) -> None:
    """List consent records with their state."""
    from likeness.consent.registry import Registry

    with Registry.open(resolve_cli_home(ctx, home)) as registry:
        identity_id = registry.get_identity(identity_ref).id if identity_ref else None
        records = registry.list_consents(identity_id=identity_id)
    if as_json:
        emit_json(records)
        return
    if not records:
        click.echo("no consents recorded")
    for record in records:
        data = to_jsonable(record)
        state = data.get("status", "?")
        click.echo(
            f"{data['id']}  {data.get('identity_name') or data['identity_id']}  {state}  "
            f"purposes={','.join(data['purposes'])} roles={','.join(data['roles'])} "
            f"media={','.join(data['media'])} until={data['valid_until']}"
        )
