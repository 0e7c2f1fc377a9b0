"""Job commands: list faces, swap, verify."""

from __future__ import annotations

from pathlib import Path

import click

from likeness.cli.common import PURPOSES_HELP, home_option, json_option, resolve_cli_home
from likeness.cli.support import ProgressLine, emit_json, handle_errors


@click.command()
@click.argument("target_image", metavar="TARGET", type=click.Path(path_type=Path))
@click.option("--backend", default="dlib", show_default=True, help="face backend")
@home_option
@json_option
@click.pass_context
@handle_errors
def faces(ctx: click.Context, target_image: Path, backend: str, home: Path | None, as_json: bool) -> None:
    """List the faces found in an image, numbered left to right (for --face-index)."""
    from likeness.pipeline import detect_faces

    _, found = detect_faces(target_image, home=resolve_cli_home(ctx, home), backend=backend)
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


@click.command()
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
    outcome = swap_image(
        request, home=resolve_cli_home(ctx, home), progress=ProgressLine("swap", enabled=not as_json)
    )
    if as_json:
        emit_json(outcome.to_dict())
        return
    click.echo(f"wrote {outcome.output}")
    click.echo(f"  output id: {outcome.output_id}")
    click.echo(f"  consents:  {', '.join(outcome.consents)}")
    click.echo(f"  faces swapped: {outcome.faces_swapped}; labelled AI-GENERATED and watermarked")


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@home_option
@json_option
@click.pass_context
@handle_errors
def verify(ctx: click.Context, file: Path, home: Path | None, as_json: bool) -> None:
    """Read back a file's disclosure: watermark id, label, C2PA, and this installation's ledger record."""
    from likeness.pipeline import verify_file

    report = verify_file(file, home=resolve_cli_home(ctx, home))
    if as_json:
        emit_json(report)
    else:
        click.echo(report.describe())
