"""Whether a job may replace the file its output is asked to go to.

A file already at ``--out`` is replaced only when it is an output this data home recorded (the same
job, or another, made again to that name: the ledger keeps the record of the one replaced) or when
the user says so (``--overwrite``). Anything else there (the user's own footage, notes, an output of
another installation) is kept, and the job is refused before any work: nothing is lost silently.
``likeness batch`` applies its own, stricter rule (:func:`likeness.jobs.batch.finished_before`).
"""

from __future__ import annotations

from pathlib import Path

from likeness.errors import UsageError
from likeness.fsutil import sha256_file
from likeness.home import Home


def check_replaceable(out: Path, home: Home, *, overwrite: bool) -> None:
    """Raise :class:`UsageError` when ``out`` is a file this home recorded no output of, unless
    ``overwrite``."""
    out = Path(out).expanduser()
    if overwrite or not out.is_file():
        return
    from likeness.consent.registry import Registry

    sha = sha256_file(out)
    with Registry.open(home) as registry:
        if registry.find_outputs_by_sha256(sha):
            return
    raise UsageError(
        f"{out}: a file is already there, and it is not an output recorded in this data home; "
        "refusing to replace it",
        hint="choose another --out, move the file away, or add --overwrite to replace it",
    )
