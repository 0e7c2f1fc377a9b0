"""The demo command."""

from __future__ import annotations

from pathlib import Path

import click

from likeness.cli.support import handle_errors


@click.command()
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
