"""The ``likeness`` command: the root group; each command module adds its commands here.

Each command calls ``likeness.jobs`` or the registry and nothing below.
Exit codes: 0 done · 2 usage · 3 refused by the consent gate · 4 bad input · 1 anything else.
Command modules import only click at module level, so `likeness --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from likeness import __version__
from likeness.cli import (
    audit_cmds,
    batch_cmds,
    calibrate_cmd,
    demo_cmd,
    generate_cmds,
    job_cmds,
    models_cmds,
    registry_cmds,
)
from likeness.webapp import cli as webapp_cli


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


main.add_command(registry_cmds.identity)
main.add_command(registry_cmds.consent)
main.add_command(job_cmds.faces)
main.add_command(job_cmds.swap)
main.add_command(job_cmds.verify)
main.add_command(generate_cmds.generate)
main.add_command(generate_cmds.edit)
main.add_command(batch_cmds.batch)
main.add_command(audit_cmds.audit)
main.add_command(registry_cmds.keys)
main.add_command(calibrate_cmd.calibrate)
main.add_command(demo_cmd.demo)
main.add_command(models_cmds.models)
main.add_command(webapp_cli.users)
main.add_command(webapp_cli.app)
