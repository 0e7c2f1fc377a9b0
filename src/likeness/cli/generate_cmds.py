"""Generation commands: ``likeness generate`` (new images) and ``likeness edit`` (re-make a photo's face).

Both run on the one road (:mod:`likeness.jobs.generation`): the same consent gate, applied also to
every face in the output, and the same disclosure. Models are local only (never downloaded).
"""

from __future__ import annotations

from pathlib import Path

import click

from likeness.cli.common import (
    PURPOSES_HELP,
    checked_profile,
    disclosure_profile_option,
    home_option,
    json_option,
    overwrite_option,
    resolve_cli_home,
)
from likeness.cli.job_cmds import _run_job
from likeness.cli.support import ProgressLine, emit_json, handle_errors

MODEL_HELP = (
    "a local diffusers folder (with model_index.json), a table name from `likeness models list` "
    "(looked for in <home>/models/diffusers/NAME) or a repo id already in the Hugging Face cache"
)


def _common(command):
    """Options every generation command takes."""
    for decorator in reversed(
        (
            click.option("--model", required=True, help=MODEL_HELP),
            click.option("--prompt", required=True, help="what to make"),
            click.option("--purpose", required=True, help=PURPOSES_HELP),
            click.option(
                "--out", required=True, type=click.Path(path_type=Path), help="output image (.jpg or .png)"
            ),
            click.option("--negative", default=None, help="negative prompt"),
            click.option("--steps", type=int, default=30, show_default=True, help="denoising steps"),
            click.option("--guidance", type=float, default=7.0, show_default=True, help="guidance scale"),
            click.option("--seed", type=int, default=None, help="random seed (reproducible output)"),
            click.option(
                "--record-prompt",
                is_flag=True,
                help="put the prompt text in the C2PA manifest (its sha256 is always there)",
            ),
            click.option(
                "--backend",
                default="dlib",
                show_default=True,
                help="face backend of the consent gate (on the inputs and on every face in the output)",
            ),
            disclosure_profile_option,
            overwrite_option,
        )
    ):
        command = decorator(command)
    return command


@click.command()
@_common
@click.option(
    "--identity",
    default=None,
    help="name or id of an enrolled person to generate (IP-Adapter FaceID on their ArcFace reference); "
    "needs their consent with role `generate`",
)
@click.option("--size", default="512x512", show_default=True, help="WIDTHxHEIGHT, multiples of 8")
@click.option(
    "--ip-adapter",
    "ip_adapter",
    type=click.Path(path_type=Path),
    default=None,
    help="IP-Adapter FaceID weights file "
    "(default: <home>/models/diffusers/ip-adapter-faceid/, then the HF cache)",
)
@home_option
@json_option
@click.pass_context
@handle_errors
def generate(
    ctx: click.Context,
    model: str,
    prompt: str,
    purpose: str,
    out: Path,
    negative: str | None,
    steps: int,
    guidance: float,
    seed: int | None,
    record_prompt: bool,
    backend: str,
    disclosure_profile: str | None,
    overwrite: bool,
    identity: str | None,
    size: str,
    ip_adapter: Path | None,
    home: Path | None,
    as_json: bool,
) -> None:
    """Generate an image with a local diffusers model, under the consent gate and disclosed.

    Without --identity the people in it are synthetic: every face in the output is matched against the
    whole registry, and an enrolled person without a consent to be generated stops the job (exit 3,
    nothing written). A prompt that names an enrolled person needs that person's consent.
    """
    from likeness.generate.pipeline import parse_size
    from likeness.jobs.requests import GenerateRequest

    request = GenerateRequest(
        model=model,
        prompt=prompt,
        purpose=purpose,
        out=out,
        identity=identity,
        negative=negative,
        steps=steps,
        guidance=guidance,
        seed=seed,
        size=parse_size(size),
        ip_adapter=ip_adapter,
        record_prompt=record_prompt,
        backend=backend,
        disclosure_profile=checked_profile(disclosure_profile),
        overwrite=overwrite,
    )
    outcome = _run_job(request, resolve_cli_home(ctx, home), ProgressLine("generate", enabled=not as_json))
    _report(outcome, as_json)


@click.command()
@_common
@click.option("--target", required=True, type=click.Path(path_type=Path), help="the photo to edit")
@click.option(
    "--face-index", type=int, default=None, help="which face to edit, 0 = leftmost (default: every face)"
)
@click.option(
    "--strength", type=float, default=1.0, show_default=True, help="how much of the face is re-made (0-1]"
)
@click.option(
    "--work-size",
    type=int,
    default=512,
    show_default=True,
    help="side of the square each face is inpainted at (the model's working size)",
)
@home_option
@json_option
@click.pass_context
@handle_errors
def edit(
    ctx: click.Context,
    model: str,
    prompt: str,
    purpose: str,
    out: Path,
    negative: str | None,
    steps: int,
    guidance: float,
    seed: int | None,
    record_prompt: bool,
    backend: str,
    disclosure_profile: str | None,
    overwrite: bool,
    target: Path,
    face_index: int | None,
    strength: float,
    work_size: int,
    home: Path | None,
    as_json: bool,
) -> None:
    """Re-make face(s) of a photo with a local inpainting model, masked from the face's landmarks.

    Each edited face is gated as in a swap (its person must consent as `target`); the re-made faces
    are checked like a generated output; pixels outside the mask stay the photo's own.
    """
    from likeness.jobs.requests import EditRequest

    request = EditRequest(
        model=model,
        target=target,
        prompt=prompt,
        purpose=purpose,
        out=out,
        face_index=face_index,
        negative=negative,
        steps=steps,
        guidance=guidance,
        seed=seed,
        strength=strength,
        work_size=work_size,
        record_prompt=record_prompt,
        backend=backend,
        disclosure_profile=checked_profile(disclosure_profile),
        overwrite=overwrite,
    )
    outcome = _run_job(request, resolve_cli_home(ctx, home), ProgressLine("edit", enabled=not as_json))
    _report(outcome, as_json)


def _report(outcome, as_json: bool) -> None:
    if as_json:
        emit_json(outcome.to_dict())
        return
    click.echo(f"wrote {outcome.output}")
    click.echo(f"  output id: {outcome.output_id}")
    click.echo(f"  consents:  {', '.join(outcome.consents) or 'none (no enrolled person in it)'}")
    for face in outcome.faces:
        match = face["match"]
        who = (
            f"{match['identity_name']} (consent {match['consent_id']})"
            if match
            else "matches no one enrolled"
        )
        click.echo(f"  {face['label']}: {face['outcome']} — {who}")
    if not outcome.faces:
        click.echo("  no face found in the output")
    if outcome.diffusers_watermark:
        click.echo("  the model's own invisible watermark is kept; likeness's mark is added on top")
    click.echo("  labelled, watermarked with its id, C2PA content credentials embedded")
