"""The audit report for rights holders, built from a real registry with real gate decisions.

The registry holds three people: one with two consents (one revoked) and an output made under
one of them, one whose consent covered the other side of that output, and one who was refused
(no consent) and then erased. The report must show each of them what concerns them, and nothing
about anyone else; written atomically; and say so when the ledger has been tampered with.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from likeness.cli.main import main
from likeness.consent.audit import build_audit_report, render, write_atomically
from likeness.consent.gate import check_consent
from likeness.consent.records import Involvement
from likeness.consent.registry import Reference, Registry
from likeness.disclosure.types import SealedOutput
from likeness.errors import ConsentRefused, UsageError
from likeness.faces.backends import load_analyzer
from likeness.home import Home
from likeness.media.image import load_image

UNTIL = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=90)
USES = "replace the stunt double's face with the lead's likeness in scenes 3-5 of 'Harbour' | cut 2"


@pytest.fixture(scope="module")
def analysed(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    analyzer = load_analyzer("dlib", Home(tmp_path_factory.mktemp("models")))
    cache: dict[str, tuple] = {}

    def get(photo: str):
        if photo not in cache:
            picture = load_image(faces_dir / photo)
            (face,) = analyzer.analyze(picture.pixels)
            cache[photo] = (Reference.from_face(face, picture), face)
        return cache[photo]

    get.analyzer = analyzer
    return get


@pytest.fixture()
def story(home: Home, analysed, tmp_path: Path) -> dict:
    """Enrolments, consents, one output, two refusals and an erasure, as a studio would make them."""
    evidence = tmp_path / "salley-consent.pdf"
    evidence.write_bytes(b"%PDF-1.4 consent of John Salley, signed 2025-01-10")
    ids: dict = {"evidence_sha256": hashlib.sha256(evidence.read_bytes()).hexdigest()}
    with Registry.open(home) as registry:

        def enrol(name: str, *photos: str) -> str:
            return registry.add_identity(name, [analysed(p)[0] for p in photos], operator="casting").id

        ids["salley"] = enrol("John Salley", "John_Salley/1.jpg", "John_Salley/2.jpg")
        ids["savage"] = enrol("John Savage", "John_Savage/1.jpg")
        ids["simm"] = enrol("John Simm", "John_Simm/1.jpg")
        film = registry.grant(
            ids["salley"],
            purposes=["film"],
            roles=["source"],
            valid_until=UNTIL,
            uses=USES,
            operator="legal",
            capacity="union",
            grantor="SAG-AFTRA Local 7",
            evidence=evidence,
            project="Harbour (2026)",
            compensation="scale plus 10 %",
            representation="SAG-AFTRA, agent A. Agent",
            takedown_contact="takedown@harbour.example",
        )
        education = registry.grant(
            ids["salley"],
            purposes=["education"],
            roles=["source"],
            valid_until=UNTIL,
            uses=USES,
            operator="legal",
        )
        registry.revoke(education.id, reason="withdrawn by e-mail of 2025-02-01", operator="legal")
        target = registry.grant(
            ids["savage"], purposes=["film"], roles=["target"], valid_until=UNTIL, uses=USES, operator="legal"
        )
        ids.update(film=film.id, education=education.id, target=target.id)

        def gate(*pairs: tuple[str, str], purpose: str = "film"):
            involved = [Involvement(analysed(p)[1], role, f"{role} face in {p}") for p, role in pairs]
            return check_consent(
                registry,
                involved,
                purpose=purpose,
                media_kind="image",
                analyzer=analysed.analyzer,
                operator="editor",
            )

        decision = gate(("John_Salley/3.jpg", "source"), ("John_Savage/3.jpg", "target"))
        sealed = SealedOutput(
            path=tmp_path / "out.jpg",
            output_id="lk1-a1b2c3d4e5f6",
            sha256=hashlib.sha256(b"the sealed output").hexdigest(),
            media_type="image/jpeg",
            kind="swap",
            consent_ids=decision.consent_ids,
            purpose="film",
        )
        ids["output"] = registry.record_output(sealed, decision=decision, operator="editor")
        for pairs, purpose in (
            ([("John_Salley/3.jpg", "source")], "advertising"),
            ([("John_Simm/3.jpg", "target")], "film"),
        ):
            with pytest.raises(ConsentRefused):
                gate(*pairs, purpose=purpose)
        registry.erase(ids["simm"], reason="erasure request of 2025-03-01", operator="dpo")
        ids["head"] = registry.verify_ledger().head_hash
    return ids


def test_report_per_identity(home: Home, story: dict) -> None:
    with Registry.open(home) as registry:
        report = build_audit_report(registry, identity="john salley", operator="auditor")
    assert report.chain.ok and report.chain.head_hash == story["head"]
    (salley,) = report.identities
    assert salley.identity.id == story["salley"]
    assert [(c.id, problem) for c, problem in salley.consents] == [
        (story["film"], None),
        (story["education"], None),
    ]
    assert [o.output_id for o in salley.outputs] == [story["output"].output_id]
    assert [e.payload["rule"] for e in salley.refusals] == ["wrong_purpose"]
    assert salley.tombstones == [] and [e.kind for e in salley.enrolments] == ["enrol"]

    md = report.to_markdown()
    for text in (
        "# likeness audit report",
        story["head"],
        "hash chain and signatures verified",
        "## John Salley",
        story["film"],
        story["education"],
        "**active**",
        "**revoked**",
        "withdrawn by e-mail of 2025-02-01",
        "SAG-AFTRA Local 7 — capacity `union` (a union or agent",
        f"salley-consent.pdf, sha256 `{story['evidence_sha256']}`",
        "takedown@harbour.example",
        "scale plus 10 %",
        "Harbour (2026)",
        "'Harbour' \\| cut 2",  # a pipe in the uses must not break the table
        f"| `{story['output'].output_id}` |",
        f"`{story['output'].sha256}`",
        "| film | editor |",
        "| wrong_purpose | source face in John_Salley/3.jpg | advertising | editor |",
        "matches the terms signed in the ledger",
    ):
        assert text in md, text
    for other in ("John Savage", "John Simm", story["target"]):
        assert other not in md, f"{other} is not this person's business"


def test_report_for_everyone_shows_the_erasure(home: Home, story: dict) -> None:
    with Registry.open(home) as registry:
        report = build_audit_report(registry, operator="auditor")
    people = {p.identity.name: p for p in report.identities}
    assert set(people) == {"John Salley", "John Savage", "John Simm"}
    savage, simm = people["John Savage"], people["John Simm"]
    assert [o.output_id for o in savage.outputs] == [story["output"].output_id]
    assert [e.payload["rule"] for e in simm.refusals] == ["no_consent"]
    (tombstone,) = simm.tombstones
    assert tombstone.payload["references_deleted"] == 1 and simm.identity.erased_at is not None
    md = report.to_markdown()
    assert (
        "**Erased**" in md and "erasure request of 2025-03-01" in md and "1 reference face(s) deleted" in md
    )
    data = json.loads(render(report, "json"))
    assert data["ledger"]["ok"] and data["ledger"]["head_hash"] == story["head"]
    by_name = {p["identity"]["name"]: p for p in data["identities"]}
    assert by_name["John Salley"]["consents"][0]["evidence_sha256"] == story["evidence_sha256"]
    assert by_name["John Salley"]["consents"][1]["status"] == "revoked"
    assert by_name["John Savage"]["outputs"][0]["sha256"] == story["output"].sha256
    assert by_name["John Simm"]["erasures"][0]["payload"]["identity_id"] == story["simm"]
    assert by_name["John Simm"]["identity"]["references_by_space"] == {}


def test_export_command_writes_atomically(home: Home, story: dict, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "reports" / "salley.md"
    out.parent.mkdir()
    out.write_text("an old report that must be replaced whole\n" * 1000)
    args = ["--home", str(home.root), "audit", "export", "--identity", story["salley"], "--out", str(out)]
    done = runner.invoke(main, args)
    assert done.exit_code == 0, done.output
    text = out.read_text()
    assert (
        text.startswith("# likeness audit report") and "an old report" not in text and story["film"] in text
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(p.name for p in out.parent.iterdir()) == ["salley.md"], "no temporary file left behind"

    as_json = runner.invoke(
        main, [*args[:-2], "--out", str(out.with_suffix(".json")), "--format", "json", "--json"]
    )
    assert as_json.exit_code == 0, as_json.output
    summary = json.loads(as_json.stdout)
    assert summary["identities"] == 1 and summary["ledger"]["ok"]
    assert (
        json.loads(out.with_suffix(".json").read_text())["identities"][0]["identity"]["id"] == story["salley"]
    )

    printed = runner.invoke(main, ["--home", str(home.root), "audit", "export", "--json"])
    assert printed.exit_code == 0 and len(json.loads(printed.stdout)["identities"]) == 3

    nowhere = runner.invoke(main, [*args[:-2], "--out", str(tmp_path / "missing" / "r.md")])
    assert nowhere.exit_code == 2 and "no such folder" in nowhere.stderr
    assert not (tmp_path / "missing").exists()
    with pytest.raises(UsageError, match="is a folder"):
        write_atomically(tmp_path, "text")


def test_export_of_a_tampered_ledger_says_so(home: Home, story: dict, tmp_path: Path) -> None:
    with sqlite3.connect(home.db_path) as conn:
        seq = conn.execute("SELECT seq FROM ledger WHERE kind = 'revoke'").fetchone()[0]
        conn.execute("DELETE FROM ledger WHERE seq = ?", (seq,))
    out = tmp_path / "report.md"
    done = CliRunner().invoke(main, ["--home", str(home.root), "audit", "export", "--out", str(out)])
    assert done.exit_code == 1
    assert f"audit FAILED at ledger entry {seq}" in done.stderr
    assert f"**FAILED at entry {seq}**" in out.read_text()
