"""``likeness demo``: the main job end to end on bundled public-domain portraits.

Enrols historical figures whose post-mortem rights have expired, records that basis as their
consent record, swaps a face, verifies the disclosed output, then shows the gate refusing a
face that is not enrolled. Uses its own data home inside the work folder, so it never touches
the user's registry.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from likeness.errors import ConsentRefused, UsageError
from likeness.home import Home

Echo = Callable[[str], None]
MARKER = ".likeness-demo"


@dataclass(frozen=True)
class Sitter:
    name: str
    photos: tuple[str, ...]
    died: dt.date
    jurisdiction: str


# Dates of death from SOURCES.md beside the photos; all died more than 125 years ago.
SITTERS = (
    Sitter("Abraham Lincoln", ("lincoln_1.jpg",), dt.date(1865, 4, 15), "US-IL"),
    Sitter("Charles Darwin", ("darwin_1.jpg",), dt.date(1882, 4, 19), "GB"),
    Sitter("Frederick Douglass", ("douglass_1.jpg",), dt.date(1895, 2, 20), "US-DC"),
    Sitter("Edgar Allan Poe", ("poe_1.jpg", "poe_2.jpg"), dt.date(1849, 10, 7), "US-MD"),
)
SOURCE_SITTER = "Charles Darwin"
SOURCE_PHOTO = "darwin_1.jpg"
TARGET_PHOTO = "lincoln_1.jpg"
UNENROLLED_PHOTO = "pasteur_1.jpg"  # Louis Pasteur: deliberately not enrolled
USES = (
    "likeness demo: show a consent-gated, disclosed face swap between public-domain 19th-century "
    "portraits, for teaching how the tool works"
)


def asset(name: str) -> Path:
    return Path(str(resources.files("likeness") / "demo_assets" / name))


def _fresh_workdir(workdir: Path) -> Path:
    workdir = workdir.resolve()
    if workdir.exists():
        if not (workdir / MARKER).exists():
            if any(workdir.iterdir()):
                raise UsageError(
                    f"{workdir} exists and is not a likeness demo folder; refusing to overwrite it",
                    hint="pass --workdir with a new or empty folder",
                )
        else:
            shutil.rmtree(workdir)
    (workdir / "outputs").mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("created by `likeness demo`; safe to delete\n")
    return workdir


def run_demo(workdir: Path, *, echo: Echo) -> Path:
    """Run the demo in ``workdir`` and return the disclosed output's path."""
    from likeness.consent.registry import Registry
    from likeness.jobs.enrol import enrol_identity
    from likeness.jobs.requests import EnrolRequest, SwapRequest
    from likeness.jobs.road import swap_image
    from likeness.jobs.verify import verify_file

    workdir = _fresh_workdir(workdir)
    home = Home(root=workdir / "home").ensure()
    today = dt.date.today()
    echo(f"likeness demo — working in {workdir}")
    echo("1. Enrol public-domain historical figures (rights expired: died over 125 years ago)")
    ids: dict[str, str] = {}
    for sitter in SITTERS:
        identity = enrol_identity(
            EnrolRequest(
                name=sitter.name, photos=[asset(p) for p in sitter.photos], operator="likeness-demo"
            ),
            home=home,
        )
        ids[sitter.name] = identity.id
        echo(f"   enrolled {sitter.name:<20} {identity.id}  ({len(sitter.photos)} reference photo(s))")

    echo("2. Record the basis for each as a consent record (no living person's consent is needed)")
    with Registry.open(home) as registry:
        for sitter in SITTERS:
            record = registry.grant(
                ids[sitter.name],
                purposes=["education"],
                roles=["source", "target"],
                media=["image", "video"],
                valid_from=today,
                valid_until=today + dt.timedelta(days=365),
                uses=USES,
                operator="likeness-demo",
                capacity="rights_expired",
                grantor="likeness demo operator",
                date_of_death=sitter.died,
                jurisdiction=sitter.jurisdiction,
                basis=(
                    f"{sitter.name} died {sitter.died.isoformat()}; no post-mortem publicity right "
                    "lasts longer than 100 years in any jurisdiction known to us; photograph public domain"
                ),
                project="likeness demo",
            )
            echo(f"   {sitter.name:<20} {record.id}  purposes=education roles=source,target")

    out = workdir / "outputs" / "darwin_on_lincoln.jpg"
    echo(f"3. Swap {SOURCE_SITTER}'s likeness onto the Lincoln portrait (purpose: education)")
    outcome = swap_image(
        SwapRequest(
            source=asset(SOURCE_PHOTO),
            target=asset(TARGET_PHOTO),
            purpose="education",
            out=out,
            operator="likeness-demo",
        ),
        home=home,
    )
    echo(f"   wrote {outcome.output}")
    echo(f"   output id {outcome.output_id}; consents {', '.join(outcome.consents)}")

    echo("4. Verify the output")
    report = verify_file(outcome.output, home=home)
    for line in report.describe().splitlines():
        echo(f"   {line}")
    if not (report.disclosure.watermark.found and report.disclosure.watermark.output_id == outcome.output_id):
        raise RuntimeError("the demo output's watermark did not read back: disclosure is broken")

    echo("5. Try a swap with a face nobody enrolled (Louis Pasteur): the gate must refuse")
    refused_out = workdir / "outputs" / "refused.jpg"
    try:
        swap_image(
            SwapRequest(
                source=asset(UNENROLLED_PHOTO),
                target=asset(TARGET_PHOTO),
                purpose="education",
                out=refused_out,
                operator="likeness-demo",
            ),
            home=home,
        )
    except ConsentRefused as refusal:
        echo(f"   refused, as it should be: {refusal.reason}")
        echo(f"   no file was written at {refused_out}: {not refused_out.exists()}")
    else:
        raise RuntimeError("the gate let an unenrolled face through: this is a bug, please report it")

    echo("")
    echo("Where everything is:")
    echo(f"   disclosed output   {outcome.output}")
    echo(f"   registry + ledger  {home.db_url}")
    echo(f"   keys               {home.keys_dir}")
    echo(f"   sample portraits   {asset('')}  (see SOURCES.md there)")
    echo(f"Try: likeness verify {outcome.output} --home {home.root}")
    return outcome.output
