"""Identity, consent and key commands: enrol people, record and revoke consent, rotate keys.

Every command takes ``--json``; refusals and policy violations exit with the contract's codes
(3 refused, 2 usage / policy rule, 4 bad input) and name the face, identity and rule.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from likeness.cli.common import PURPOSES_HELP, home_option, json_option, parse_date, resolve_cli_home
from likeness.cli.support import ProgressLine, emit_json, handle_errors


def _operator() -> str:
    from likeness.jobs.requests import default_operator

    return default_operator()


# -- identity --------------------------------------------------------------------------------------
@click.group()
def identity() -> None:
    """Enrol people from reference photos, list, show, re-embed and erase them."""


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
@click.option(
    "--backend",
    default="all",
    show_default=True,
    help="face backend(s) for the embeddings: all (every installed backend), dlib or insightface",
)
@home_option
@json_option
@click.pass_context
@handle_errors
def identity_add(
    ctx: click.Context, name: str, photos: tuple[Path, ...], backend: str, home: Path | None, as_json: bool
) -> None:
    """Enrol NAME from one or more reference photos; prints the identity id."""
    from likeness.jobs.enrol import enrol_identity
    from likeness.jobs.requests import EnrolRequest

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


def _identity_line(ident: Any) -> str:
    spaces = ", ".join(f"{s}×{n}" for s, n in ident.references_by_space.items()) or "no references"
    state = f"erased {ident.erased_at:%Y-%m-%d}" if ident.erased_at else "enrolled"
    return f"{ident.id}  {ident.name}  [{state}; {ident.reference_count} photo(s): {spaces}]"


@identity.command("list")
@home_option
@json_option
@click.pass_context
@handle_errors
def identity_list(ctx: click.Context, home: Path | None, as_json: bool) -> None:
    """List enrolled (and erased) identities."""
    from likeness.consent.registry import Registry

    with Registry.open(resolve_cli_home(ctx, home)) as registry:
        identities = registry.list_identities()
    if as_json:
        emit_json(identities)
        return
    if not identities:
        click.echo("no identities enrolled yet; add one with `likeness identity add NAME --photo P`")
    for ident in identities:
        click.echo(_identity_line(ident))


@identity.command("show")
@click.argument("identity_ref", metavar="IDENTITY")
@home_option
@json_option
@click.pass_context
@handle_errors
def identity_show(ctx: click.Context, identity_ref: str, home: Path | None, as_json: bool) -> None:
    """Show IDENTITY (id or name): references per face model, consents, outputs made under them."""
    from likeness.consent.registry import Registry

    with Registry.open(resolve_cli_home(ctx, home)) as registry:
        ident = registry.get_identity(identity_ref)
        consents = registry.list_consents(identity_id=ident.id)
        outputs = {o.output_id: o for c in consents for o in registry.list_outputs(consent_id=c.id)}
    if as_json:
        emit_json(
            {
                "identity": ident,
                "consents": consents,
                "outputs": sorted(outputs.values(), key=lambda o: o.created_at),
            }
        )
        return
    click.echo(_identity_line(ident))
    if ident.erase_reason:
        click.echo(f"  erasure reason: {ident.erase_reason}")
    for record in consents:
        click.echo(f"  {_consent_line(record)}")
    if not consents:
        click.echo("  no consent on record")
    click.echo(f"  outputs made under these consents: {len(outputs)}")


@identity.command("reembed")
@click.argument("identity_ref", metavar="IDENTITY")
@click.option("--backend", required=True, help="the face backend whose embeddings to add (e.g. insightface)")
@home_option
@json_option
@click.pass_context
@handle_errors
def identity_reembed(
    ctx: click.Context, identity_ref: str, backend: str, home: Path | None, as_json: bool
) -> None:
    """Add BACKEND's embeddings of IDENTITY, computed from its stored reference crops."""
    from likeness.consent.reembed import reembed_identity
    from likeness.consent.registry import Registry
    from likeness.faces.backends import load_analyzer

    chosen = resolve_cli_home(ctx, home)
    analyzer = load_analyzer(backend, chosen, swapping=False)  # embeddings only
    with Registry.open(chosen) as registry:
        result = reembed_identity(registry, identity_ref, analyzer, operator=_operator())
    if as_json:
        emit_json(result)
        return
    click.echo(f"added {result.added} reference(s) in {result.embedding_space} to {result.identity.name}")
    for reason in result.skipped:
        click.echo(f"  skipped {reason}")


@identity.command("erase")
@click.argument("identity_ref", metavar="IDENTITY")
@click.option(
    "--reason", required=True, help="why (e.g. 'erasure request of 2025-03-01'); kept in the ledger"
)
@click.option("--yes", is_flag=True, help="confirm: erasure cannot be undone")
@home_option
@json_option
@click.pass_context
@handle_errors
def identity_erase(
    ctx: click.Context, identity_ref: str, reason: str, yes: bool, home: Path | None, as_json: bool
) -> None:
    """Delete IDENTITY's reference photos and embeddings, revoke its consents, leave a tombstone."""
    from likeness.consent.registry import Registry
    from likeness.errors import UsageError

    with Registry.open(resolve_cli_home(ctx, home)) as registry:
        ident = registry.get_identity(identity_ref)
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    f"erasing {ident.name} ({ident.id}) cannot be undone; nothing was erased",
                    hint="add --yes to confirm",
                )
            click.confirm(
                f"Erase {ident.name} ({ident.id}): delete their reference faces and revoke every consent?",
                abort=True,
            )
        erased = registry.erase(ident.id, reason=reason, operator=_operator())
        tombstone = [e for e in registry.ledger_entries("erasure") if e.payload["identity_id"] == erased.id][
            -1
        ]
    if as_json:
        emit_json({"identity": erased, "tombstone": tombstone})
        return
    revoked = ", ".join(tombstone.payload.get("consents_revoked", [])) or "none"
    click.echo(
        f"erased {erased.name} ({erased.id}): {tombstone.payload.get('references_deleted', 0)} reference(s) "
        f"deleted, consents revoked: {revoked}; tombstone: ledger entry {tombstone.seq}"
    )


# -- consent ---------------------------------------------------------------------------------------
@click.group()
def consent() -> None:
    """Record, revoke, list and show consents."""


@consent.command("grant")
@click.argument("identity_ref", metavar="IDENTITY")
@click.option("--purpose", "purposes", multiple=True, required=True, help=PURPOSES_HELP)
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    help="source: their likeness may be put on others; target: their face may be replaced; "
    "generate: new images of them may be generated (repeat for several; each is granted separately)",
)
@click.option("--media", "media", multiple=True, help="media kinds covered: image, video (default: image)")
@click.option("--until", "until", required=True, help="last day the consent is valid (YYYY-MM-DD)")
@click.option("--from", "valid_from", default=None, help="first day it is valid (YYYY-MM-DD; default today)")
@click.option("--uses", required=True, help="a specific description of the intended use")
@click.option("--project", default=None, help="the project / production this consent is scoped to")
@click.option(
    "--capacity",
    default="self",
    show_default=True,
    help="who grants: self, union, guardian (minor), estate, rights_expired (historical figure)",
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
    help="the signed consent document (stored encrypted, referenced by its sha256)",
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
    """Record that IDENTITY consents to the described use; prints the consent id.

    The consent policy (consent/policy.toml) decides what may be recorded; a refusal names the
    policy rule, e.g. `policy rule capacity.self.max_years`.
    """
    from likeness.consent.registry import Registry

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
            operator=_operator(),
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

    with Registry.open(resolve_cli_home(ctx, home)) as registry:
        revoked = registry.revoke(consent_id, reason=reason, operator=_operator())
    if as_json:
        emit_json(revoked)
    else:
        click.echo(f"revoked {revoked.id} ({revoked.revoked_at:%Y-%m-%d %H:%M} UTC)")


def _consent_line(record: Any, name: str | None = None) -> str:
    who = f"{name} ({record.identity_id})" if name else record.identity_id
    return (
        f"{record.id}  {who}  {record.to_dict()['status']}  purposes={','.join(record.purposes)} "
        f"roles={','.join(record.roles)} media={','.join(record.media)} "
        f"{record.valid_from}..{record.valid_until} capacity={record.capacity}"
    )


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
        names = {ident.id: ident.name for ident in registry.list_identities()}
    if as_json:
        emit_json(records)
        return
    if not records:
        click.echo("no consents recorded")
    for record in records:
        click.echo(_consent_line(record, names.get(record.identity_id)))


@consent.command("show")
@click.argument("consent_id")
@click.option("--form", is_flag=True, help="print the filled-in consent form (Markdown) instead")
@home_option
@json_option
@click.pass_context
@handle_errors
def consent_show(ctx: click.Context, consent_id: str, form: bool, home: Path | None, as_json: bool) -> None:
    """Show every field of CONSENT_ID, and whether it still matches its signed ledger entry."""
    from likeness.consent.form import render_consent_form
    from likeness.consent.registry import Registry

    with Registry.open(resolve_cli_home(ctx, home)) as registry:
        record = registry.get_consent(consent_id)
        person = registry.get_identity(record.identity_id)
        problem = dict((r.id, p) for r, p in registry.attested_consents(person.id)).get(record.id)
        outputs = registry.list_outputs(consent_id=record.id)
        text = render_consent_form(record, subject_name=person.name, policy=registry.policy) if form else ""
    if as_json:
        emit_json(
            {
                **record.to_dict(),
                "identity_name": person.name,
                "matches_ledger": problem is None,
                "ledger_problem": problem,
                "outputs": [o.output_id for o in outputs],
            }
        )
        return
    if form:
        click.echo(text)
        return
    for key, value in record.to_dict().items():
        if value not in (None, [], ""):
            click.echo(f"{key:>17}: {', '.join(value) if isinstance(value, list) else value}")
    click.echo(f"{'subject':>17}: {person.name}")
    click.echo(f"{'integrity':>17}: {'matches its signed ledger entry' if problem is None else problem}")
    click.echo(f"{'outputs':>17}: {len(outputs)}")


# -- keys ----------------------------------------------------------------------------------------
@click.group()
def keys() -> None:
    """The installation's keys: data encryption (biometrics, documents) and ledger signing."""


@keys.command("rotate")
@click.option(
    "--data", "data", is_flag=True, help="new data key; re-encrypt every photo crop, embedding, document"
)
@click.option("--signing", "signing", is_flag=True, help="new ledger signing key (old public keys stay)")
@home_option
@json_option
@click.pass_context
@handle_errors
def keys_rotate(ctx: click.Context, data: bool, signing: bool, home: Path | None, as_json: bool) -> None:
    """Rotate the data key (--data), the ledger signing key (--signing), or both."""
    from likeness.consent.registry import Registry
    from likeness.errors import UsageError

    if not (data or signing):
        raise UsageError("say which key to rotate", hint="--data, --signing, or both")
    result: dict[str, Any] = {}
    with Registry.open(resolve_cli_home(ctx, home)) as registry:
        if data:
            result["data"] = {"blobs_reencrypted": registry.rotate_data_key(operator=_operator())}
        if signing:
            result["signing"] = {"key_id": registry.rotate_signing_key(operator=_operator())}
    if as_json:
        emit_json(result)
        return
    if data:
        count = result["data"]["blobs_reencrypted"]
        click.echo(f"data key rotated: {count} stored blob(s) re-encrypted, old key destroyed")
    if signing:
        click.echo(f"signing key rotated: new entries are signed by {result['signing']['key_id']}")
