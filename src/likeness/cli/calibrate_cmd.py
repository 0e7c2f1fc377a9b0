"""``likeness calibrate``: measure the consent gate's operating point on a labelled folder of photos."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from likeness.cli.common import home_option, json_option, resolve_cli_home
from likeness.cli.support import ProgressLine, emit_json, handle_errors


@click.command()
@click.option(
    "--faces",
    "faces_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="labelled folder: one sub-folder of photos per person (folders starting with _ are ignored)",
)
@click.option("--backend", default="dlib", show_default=True, help="face backend to calibrate")
@click.option(
    "--store/--no-store",
    "store",
    default=True,
    show_default=True,
    help="store the operating point for this backend's embedding space (the gate uses it from then on)",
)
@click.option(
    "--target-far", default=0.001, show_default=True, type=float, help="false accepts per impostor pair"
)
@click.option(
    "--target-frr", default=0.05, show_default=True, type=float, help="false rejects per genuine pair"
)
@click.option("--margin", default=None, type=float, help="runner-up margin (default: the policy's)")
@home_option
@json_option
@click.pass_context
@handle_errors
def calibrate(
    ctx: click.Context,
    faces_dir: Path,
    backend: str,
    store: bool,
    target_far: float,
    target_frr: float,
    margin: float | None,
    home: Path | None,
    as_json: bool,
) -> None:
    """Measure genuine and impostor distances on --faces, choose and store the gate's threshold.

    Prints false-accept and false-reject rates per threshold (pairs, and leave-one-out
    identification through the gate's own rule), the chosen threshold, and what the data can and
    cannot show. Exits 4 when --store was asked but the folder is too small to support a choice.
    """
    from likeness.consent.calibration import run_calibration
    from likeness.jobs.requests import default_operator

    line = ProgressLine("calibrate", enabled=not as_json)
    last = [-1.0]

    def progress(stage: str, fraction: float) -> None:  # one line per 10 %, not per photo
        if fraction >= 1.0 or fraction - last[0] >= 0.1:
            last[0] = fraction
            line(stage, fraction)

    run = run_calibration(
        faces_dir,
        home=resolve_cli_home(ctx, home),
        backend=backend,
        operator=default_operator(),
        store_result=store,
        target_far=target_far,
        target_frr=target_frr,
        margin=margin,
        progress=progress,
    )
    if as_json:
        emit_json(run)
    else:
        click.echo(run.result.describe())
        if run.stored is not None:
            click.echo(
                f"stored for {run.stored.embedding_space}: threshold {run.stored.threshold:.3f}, "
                f"margin {run.stored.margin:.2f} ({run.stored.source}); the gate uses it from now on"
            )
        elif not store:
            click.echo("not stored (--no-store)")
    if store and run.stored is None:
        click.echo(f"likeness: bad input: nothing stored: {run.result.problem}", err=True)
        click.echo("  → calibrate on a larger labelled folder (more people, several photos each)", err=True)
        sys.exit(4)
