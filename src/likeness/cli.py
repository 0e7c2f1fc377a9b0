"""The ``likeness`` command. Each command calls ``likeness.pipeline`` or the registry and nothing below.

Exit codes: 0 done · 2 usage · 3 refused by the consent gate · 4 bad input · 1 anything else.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from likeness import __version__
from likeness.cli_support import ProgressLine, emit_json, handle_errors, to_jsonable

PURPOSES_HELP = "what the output is for: film, education, creative (see consent/policy)"


def _home(ctx: click.Context, explicit: Path | None):  # noqa: ANN202
    from likeness.home import resolve_home

    chosen = explicit if explicit is not None else ctx.find_root().params.get("home")
    return resolve_home(chosen).ensure()


def home_option(command):  # noqa: ANN001, ANN201
    return click.option(
        "--home",
        "home",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="data home (registry, keys, ledger); default: $LIKENESS_HOME or a per-user folder",
    )(command)


def json_option(command):  # noqa: ANN001, ANN201
    return click.option("--json", "as_json", is_flag=True, help="print the result as JSON")(command)


def _parse_date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD", param_hint=option) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="likeness")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="data home (registry, keys, ledger); default: $LIKENESS_HOME or a per-user folder",
)
def main(home: Path | None) -> None:
    """Consented, disclosed face swaps.

    A swap happens only when every face involved matches an enrolled identity with an active
    consent for this purpose and role; every output carries a visible label, an invisible
    watermark with its id, and a ledger entry.
    """


# --------------------------------------------------------------------------- identities
@main.group()
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
        home=_home(ctx, home),
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

    with Registry.open(_home(ctx, home)) as registry:
        identities = registry.list_identities()
    if as_json:
        emit_json(identities)
        return
    if not identities:
        click.echo("no identities enrolled yet; add one with `likeness identity add NAME --photo P`")
    for ident in identities:
        data = to_jsonable(ident)
        click.echo(f"{data['id']}  {data['name']}")


# --------------------------------------------------------------------------- consent
@main.group()
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
        record[key] = _parse_date(record[key], f"--{key.replace('_', '-')}")
    with Registry.open(_home(ctx, home)) as registry:
        ident = registry.get_identity(identity_ref)
        granted = registry.grant(
            ident.id,
            purposes=list(purposes),
            roles=list(roles),
            media=list(media) or ["image"],
            valid_until=_parse_date(until, "--until"),
            valid_from=_parse_date(valid_from, "--from"),
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

    with Registry.open(_home(ctx, home)) as registry:
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

    with Registry.open(_home(ctx, home)) as registry:
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


# --------------------------------------------------------------------------- swap
@main.command()
@click.argument("target_image", metavar="TARGET", type=click.Path(path_type=Path))
@click.option("--backend", default="dlib", show_default=True, help="face backend")
@home_option
@json_option
@click.pass_context
@handle_errors
def faces(ctx: click.Context, target_image: Path, backend: str, home: Path | None, as_json: bool) -> None:
    """List the faces found in an image, numbered left to right (for --face-index)."""
    from likeness.pipeline import detect_faces

    _, found = detect_faces(target_image, home=_home(ctx, home), backend=backend)
    rows = [
        {"index": i, "box": list(face.box), "size_px": face.size, "score": round(face.score, 3)}
        for i, face in enumerate(found)
    ]
    if as_json:
        emit_json({"image": str(target_image), "faces": rows})
        return
    click.echo(f"{len(rows)} face(s) in {target_image}, left to right:")
    for row in rows:
        click.echo(f"  #{row['index']}  box={row['box']}  size={row['size_px']}px")


@main.command()
@click.option(
    "--source",
    required=True,
    type=click.Path(path_type=Path),
    help="photo of the person whose likeness is used (exactly one face)",
)
@click.option("--target", required=True, type=click.Path(path_type=Path), help="image whose face is replaced")
@click.option("--purpose", required=True, help=PURPOSES_HELP)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="output file (.jpg or .png)")
@click.option(
    "--face-index",
    type=int,
    default=None,
    help="replace only this target face (0 = leftmost; see `likeness faces`); default: all",
)
@click.option("--backend", default="dlib", show_default=True, help="face backend")
@click.option(
    "--label-corner",
    default="bottom-right",
    show_default=True,
    type=click.Choice(["bottom-right", "bottom-left", "top-right", "top-left"]),
    help="corner of the visible AI-GENERATED label",
)
@click.option("--label-language", default="en", show_default=True, help="language of the visible label")
@click.option("--max-pixels", type=int, default=None, help="refuse images larger than this (default 100 MP)")
@home_option
@json_option
@click.pass_context
@handle_errors
def swap(
    ctx: click.Context,
    source: Path,
    target: Path,
    purpose: str,
    out: Path,
    face_index: int | None,
    backend: str,
    label_corner: str,
    label_language: str,
    max_pixels: int | None,
    home: Path | None,
    as_json: bool,
) -> None:
    """Swap the face in --source onto --target, if consent covers it; writes a disclosed output."""
    from likeness.media.image import DEFAULT_MAX_PIXELS
    from likeness.pipeline import SwapRequest, swap_image

    request = SwapRequest(
        source=source,
        target=target,
        purpose=purpose,
        out=out,
        face_index=face_index,
        backend=backend,
        label_corner=label_corner,
        label_language=label_language,
        max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
    )
    outcome = swap_image(request, home=_home(ctx, home), progress=ProgressLine("swap", enabled=not as_json))
    if as_json:
        emit_json(outcome.to_dict())
        return
    click.echo(f"wrote {outcome.output}")
    click.echo(f"  output id: {outcome.output_id}")
    click.echo(f"  consents:  {', '.join(outcome.consents)}")
    click.echo(f"  faces swapped: {outcome.faces_swapped}; labelled AI-GENERATED and watermarked")


# --------------------------------------------------------------------------- verify
@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@home_option
@json_option
@click.pass_context
@handle_errors
def verify(ctx: click.Context, file: Path, home: Path | None, as_json: bool) -> None:
    """Read back a file's disclosure: watermark id, label, C2PA, and this installation's ledger record."""
    from likeness.pipeline import verify_file

    report = verify_file(file, home=_home(ctx, home))
    if as_json:
        emit_json(report)
    else:
        click.echo(report.describe())


# --------------------------------------------------------------------------- audit
@main.group()
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

    with Registry.open(_home(ctx, home)) as registry:
        result = registry.verify_ledger()
    if as_json:
        emit_json(result)
    ok = bool(to_jsonable(result).get("ok"))
    if not as_json:
        click.echo(result.describe() if hasattr(result, "describe") else str(result))
    if not ok:
        raise SystemExit(RegistryError.exit_code)


# --------------------------------------------------------------------------- demo
@main.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("likeness-demo"),
    show_default=True,
    help="folder for the demo's own data home and outputs (recreated)",
)
@handle_errors
def demo(workdir: Path) -> None:
    """Run the main job end to end on bundled public-domain portraits."""
    from likeness.demo import run_demo

    run_demo(workdir, echo=click.echo)
