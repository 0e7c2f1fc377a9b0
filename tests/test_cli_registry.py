"""The identity, consent, keys and audit commands: through click's CliRunner (in process) and as the
installed ``likeness`` script (a real subprocess), checking exit codes, JSON shapes and messages.

Exit codes (the contract): 0 done · 2 usage / policy rule · 3 refused · 4 bad input · 1 else
(here: a ledger that fails its check).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from likeness import ledger
from likeness.cli.main import main
from likeness.consent.keys import InstallationKeys
from likeness.consent.policy import add_years
from likeness.consent.registry import Reference, Registry
from likeness.faces.backends import load_analyzer
from likeness.home import Home
from likeness.media.image import load_image

TODAY = dt.datetime.now(dt.UTC).date()
UNTIL = (TODAY + dt.timedelta(days=60)).isoformat()
USES = "replace the stunt double's face in scenes 12-14 of the short film 'Harbour'"
LIKENESS = Path(sys.executable).parent / "likeness"


@pytest.fixture()
def cli(home: Home):
    """cli('consent', 'list', '--json') → click Result, run against this test's data home."""
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(main, ["--home", str(home.root), *args])

    return run


def ok_json(result) -> dict | list:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def reference(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """reference('John_Simm/1.jpg') → a Reference from the real dlib analyzer, once per photo."""
    analyzer = load_analyzer("dlib", Home(tmp_path_factory.mktemp("models")))
    cache: dict[str, Reference] = {}

    def get(photo: str) -> Reference:
        if photo not in cache:
            picture = load_image(faces_dir / photo)
            (face,) = analyzer.analyze(picture.pixels)
            cache[photo] = Reference.from_face(face, picture)
        return cache[photo]

    return get


@pytest.fixture()
def salley(home: Home, reference) -> str:
    """John Salley, enrolled (through the registry: `identity add` itself is tested below)."""
    with Registry.open(home) as registry:
        refs = [reference("John_Salley/1.jpg"), reference("John_Salley/2.jpg")]
        return registry.add_identity("John Salley", refs, operator="casting").id


@pytest.mark.slow
def test_identity_commands(cli, faces_dir: Path) -> None:
    added = cli(
        "identity", "add", "John Salley",
        "--photo", str(faces_dir / "John_Salley/1.jpg"), "--photo", str(faces_dir / "John_Salley/2.jpg"),
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr
    salley = added.stdout.strip()
    assert salley.startswith("idn_") and len(salley) == 20
    duplicate = cli("identity", "add", "J. Salley", "--photo", str(faces_dir / "John_Salley/3.jpg"), "--json")
    assert duplicate.exit_code == 3
    refusal = json.loads(duplicate.stdout)
    assert (refusal["error"], refusal["rule"], refusal["identity_id"]) == (
        "refused",
        "already_enrolled",
        salley,
    )
    assert "likeness: refused (rule already_enrolled):" in duplicate.stderr
    assert "John Salley" in duplicate.stderr

    no_face = cli("identity", "add", "A Dog", "--photo", str(faces_dir / "_noface/dog.jpg"))
    assert no_face.exit_code == 4 and "no face found" in no_face.stderr
    (listed,) = ok_json(cli("identity", "list", "--json"))
    assert (listed["id"], listed["name"], listed["reference_count"]) == (salley, "John Salley", 2)
    assert listed["references_by_space"] == {"dlib_resnet_v1": 2}
    assert salley in cli("identity", "list").stdout
    shown = ok_json(cli("identity", "show", "john salley", "--json"))
    assert shown["identity"]["id"] == salley and shown["consents"] == [] and shown["outputs"] == []
    unknown = cli("identity", "show", "Nobody")
    assert unknown.exit_code == 2 and "unknown identity 'Nobody'" in unknown.stderr


def test_consent_grant_records_every_field(cli, salley: str, tmp_path: Path) -> None:
    document = tmp_path / "signed.pdf"
    document.write_bytes(b"%PDF-1.4 signed by the union for John Salley")
    record = ok_json(
        cli(
            "consent", "grant", "John Salley",
            "--purpose", "film", "--purpose", "education",
            "--role", "source", "--role", "target",
            "--media", "image", "--media", "video",
            "--from", TODAY.isoformat(), "--until", UNTIL,
            "--uses", USES,
            "--project", "Harbour (2026)",
            "--capacity", "union",
            "--grantor", "SAG-AFTRA Local 7",
            "--jurisdiction", "US-CA",
            "--compensation", "scale plus 10 %",
            "--representation", "SAG-AFTRA, agent A. Agent",
            "--evidence", str(document),
            "--takedown-contact", "takedown@harbour.example",
            "--json",
        )
    )  # fmt: skip
    assert record["id"].startswith("cns_") and record["identity_id"] == salley
    assert (record["purposes"], record["roles"], record["media"]) == (
        ["film", "education"],
        ["source", "target"],
        ["image", "video"],
    )
    assert (record["valid_from"], record["valid_until"], record["uses"]) == (TODAY.isoformat(), UNTIL, USES)
    assert (record["capacity"], record["grantor"], record["jurisdiction"]) == (
        "union",
        "SAG-AFTRA Local 7",
        "US-CA",
    )
    assert (record["project"], record["compensation"]) == ("Harbour (2026)", "scale plus 10 %")
    assert (record["representation"], record["takedown_contact"]) == (
        "SAG-AFTRA, agent A. Agent",
        "takedown@harbour.example",
    )
    assert record["evidence_sha256"] == hashlib.sha256(document.read_bytes()).hexdigest()
    assert (record["evidence_name"], record["status"]) == ("signed.pdf", "active")

    shown = ok_json(cli("consent", "show", record["id"], "--json"))
    assert shown["matches_ledger"] and shown["identity_name"] == "John Salley" and shown["outputs"] == []
    form = cli("consent", "show", record["id"], "--form")
    assert form.exit_code == 0 and record["id"] in form.stdout and "SAG-AFTRA Local 7" in form.stdout
    assert "$" not in form.stdout
    human = cli("consent", "list").stdout
    assert record["id"] in human and "John Salley" in human and "active" in human
    assert [c["id"] for c in ok_json(cli("consent", "list", "--identity", salley, "--json"))] == [
        record["id"]
    ]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--until", add_years(TODAY, 11).isoformat()], "policy rule capacity.self.max_years:"),
        (["--role", "director"], "policy rule roles.allowed: 'director' not in the policy's roles"),
        (["--media", "hologram"], "policy rule media.allowed:"),
        (["--uses", "anything"], "policy rule consent.min_uses_chars:"),
        (["--capacity", "guardian"], "policy rule capacity.guardian.requires:"),
        (["--evidence", "/nonexistent/form.pdf"], "the consent document cannot be read"),
        (["--until", "next year"], "is not a date; use YYYY-MM-DD"),
    ],
)
def test_refused_grants_name_the_rule(cli, salley: str, options: list[str], says: str) -> None:
    terms = {"--purpose": "film", "--role": "source", "--until": UNTIL, "--uses": USES}
    for name, value in zip(options[::2], options[1::2], strict=True):
        terms[name] = value
    args = [item for pair in terms.items() for item in pair]
    result = cli("consent", "grant", salley, *args)
    assert result.exit_code == 2, result.output
    assert says in result.stderr
    assert ok_json(cli("consent", "list", "--json")) == []


def test_revoke_erase_and_keys(cli, salley: str, home: Home) -> None:
    consent = ok_json(
        cli(
            "consent",
            "grant",
            salley,
            "--purpose",
            "film",
            "--role",
            "source",
            "--until",
            UNTIL,
            "--uses",
            USES,
            "--json",
        )
    )["id"]
    revoked = ok_json(cli("consent", "revoke", consent, "--reason", "withdrawn by e-mail", "--json"))
    assert (revoked["status"], revoked["revoke_reason"]) == ("revoked", "withdrawn by e-mail")
    again = cli("consent", "revoke", consent, "--reason", "again")
    assert again.exit_code == 2 and "already revoked" in again.stderr
    assert cli("consent", "revoke", consent).exit_code == 2  # --reason is required

    unconfirmed = cli("identity", "erase", salley, "--reason", "erasure request")
    assert unconfirmed.exit_code == 2 and "add --yes" in unconfirmed.stderr
    assert ok_json(cli("identity", "show", salley, "--json"))["identity"]["erased_at"] is None

    keys_before = (home.keys_dir / "data.keys").read_bytes()
    assert cli("keys", "rotate").exit_code == 2
    rotated = ok_json(cli("keys", "rotate", "--data", "--signing", "--json"))
    assert rotated["data"]["blobs_reencrypted"] == 2 and len(rotated["signing"]["key_id"]) == 16
    assert (home.keys_dir / "data.keys").read_bytes() != keys_before

    erased = ok_json(cli("identity", "erase", salley, "--reason", "erasure request", "--yes", "--json"))
    assert erased["identity"]["erased_at"] and erased["identity"]["reference_count"] == 0
    assert (
        erased["tombstone"]["kind"] == "erasure" and erased["tombstone"]["payload"]["references_deleted"] == 2
    )
    assert "[erased" in cli("identity", "list").stdout

    log = ok_json(cli("audit", "log", "--limit", "3", "--json"))
    assert [e["kind"] for e in log] == ["key_rotation", "key_rotation", "erasure"]
    assert [e["seq"] for e in log] == [4, 5, 6]
    assert "erasure" in cli("audit", "log", "--kind", "erasure").stdout
    verified = ok_json(cli("audit", "verify", "--json"))
    assert verified["ok"] and verified["entries"] == 6 and verified["first_bad_seq"] is None


def small_ledger(home: Home, reference) -> list[dict]:
    """An enrolment and four grants, as rows of the ledger table."""
    with Registry.open(home) as registry:
        person = registry.add_identity("John Simm", [reference("John_Simm/1.jpg")], operator="t")
        for n in range(4):
            registry.grant(
                person.id,
                purposes=["film"],
                roles=["source"],
                valid_until=TODAY,
                uses=f"{USES}, take {n}",
                operator="t",
            )
    with sqlite3.connect(home.db_path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM ledger ORDER BY seq")]


def forge(row: dict, keys: InstallationKeys, **changes) -> dict:
    """``row`` with ``changes``, re-hashed and signed with ``keys`` (an attacker's key)."""
    new = {**row, **changes}
    new["hash"] = ledger.entry_hash(
        prev_hash=new["prev_hash"],
        seq=new["seq"],
        time=new["time"],
        kind=new["kind"],
        actor=new["actor"],
        payload=json.loads(new["payload"]),
        key_id=keys.signer().key_id,
    )
    new["key_id"], new["signature"] = keys.signer().key_id, keys.signer().sign(new["hash"])
    return new


def tamper_edit(conn: sqlite3.Connection, rows: list[dict], keys) -> int:
    conn.execute("UPDATE ledger SET actor = 'someone else' WHERE seq = 3")
    return 3


def tamper_delete(conn, rows, keys) -> int:
    conn.execute("DELETE FROM ledger WHERE seq = 2")
    return 2


def tamper_reorder(conn, rows, keys) -> int:
    conn.execute("UPDATE ledger SET seq = -1 WHERE seq = 3")
    conn.execute("UPDATE ledger SET seq = 3 WHERE seq = 4")
    conn.execute("UPDATE ledger SET seq = 4 WHERE seq = -1")
    return 3


def tamper_insert(conn, rows, keys) -> int:
    for seq in range(len(rows), 3, -1):
        conn.execute("UPDATE ledger SET seq = seq + 1 WHERE seq = ?", (seq,))
    forged = forge(rows[2], keys, seq=4, prev_hash=rows[2]["hash"], actor="forger")
    columns = ", ".join(forged)
    conn.execute(
        f"INSERT INTO ledger ({columns}) VALUES ({', '.join('?' * len(forged))})", list(forged.values())
    )
    return 4


@pytest.mark.parametrize(
    ("tamper", "says"),
    [
        (tamper_edit, "was edited"),
        (tamper_delete, "missing"),
        (tamper_reorder, "out of order"),
        (tamper_insert, "unknown key"),
    ],
    ids=["edited", "deleted", "reordered", "inserted"],
)
def test_audit_verify_names_the_first_bad_entry(
    cli, home: Home, reference, tmp_path: Path, tamper, says
) -> None:
    rows = small_ledger(home, reference)
    assert cli("audit", "verify").exit_code == 0
    with sqlite3.connect(home.db_path) as conn:
        bad = tamper(conn, rows, InstallationKeys(tmp_path / "forger"))
    human = cli("audit", "verify")
    assert human.exit_code == 1
    assert f"audit FAILED at ledger entry {bad}:" in human.stdout and says in human.stdout
    report = json.loads(cli("audit", "verify", "--json").stdout)
    assert (report["ok"], report["first_bad_seq"]) == (False, bad) and says in report["reason"]


def test_audit_verify_with_a_kept_head_detects_truncation(cli, home: Home, reference) -> None:
    rows = small_ledger(home, reference)
    head = ok_json(cli("audit", "verify", "--json"))["head_hash"]
    assert head == rows[-1]["hash"]
    assert cli("audit", "verify", "--head", head).exit_code == 0
    with sqlite3.connect(home.db_path) as conn:  # remove the newest entry and its consent row
        conn.execute("DELETE FROM consents WHERE ledger_seq = ?", (rows[-1]["seq"],))
        conn.execute("DELETE FROM ledger WHERE seq = ?", (rows[-1]["seq"],))
    cut = cli("audit", "verify")
    assert cut.exit_code == 1 and "entries were cut off" in cut.stdout, "the head file shows it"
    home.ledger_head_path.unlink()  # an attacker who can also delete the head file
    assert cli("audit", "verify").exit_code == 1, "with the head file gone, audit says it is absent"
    kept = cli("audit", "verify", "--head", head)
    assert kept.exit_code == 1 and "no longer contains the head" in kept.stdout


def run_likeness(home: Home, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LIKENESS), "--home", str(home.root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_installed_script(home: Home, faces_dir: Path) -> None:
    """The console script as a user runs it: exit codes and JSON on stdout, messages on stderr."""
    assert LIKENESS.exists(), f"{LIKENESS}: run `pip install -e .`"
    enrolled = run_likeness(
        home, "identity", "add", "John Savage", "--photo", str(faces_dir / "John_Savage/1.jpg"), "--json"
    )
    assert enrolled.returncode == 0, enrolled.stderr
    identity = json.loads(enrolled.stdout)
    assert set(identity) >= {"id", "name", "reference_count", "embedding_spaces", "references_by_space"}
    granted = run_likeness(
        home, "consent", "grant", identity["id"], "--purpose", "film", "--role", "target",
        "--until", UNTIL, "--uses", USES, "--json",
    )  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    assert json.loads(granted.stdout)["identity_id"] == identity["id"]
    refused = run_likeness(
        home, "identity", "add", "Jon Savage", "--photo", str(faces_dir / "John_Savage/2.jpg"), "--json"
    )
    assert refused.returncode == 3
    error = json.loads(refused.stdout)
    assert error == {
        "error": "refused",
        "reason": error["reason"],
        "hint": error["hint"],
        "exit_code": 3,
        "face": "reference photos of 'Jon Savage'",
        "identity_id": identity["id"],
        "rule": "already_enrolled",
    }
    assert "Traceback" not in refused.stderr
    assert "likeness: refused (rule already_enrolled):" in refused.stderr
    verified = run_likeness(home, "audit", "verify", "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["entries"] == 3


@pytest.mark.parametrize("head", ["xyz", "12", "g" * 64, "a" * 63])
def test_a_malformed_head_is_a_usage_error_not_a_verdict_on_the_ledger(cli, head: str) -> None:
    result = cli("audit", "verify", "--head", head)
    assert result.exit_code == 2 and "is not a ledger head hash" in result.stderr, result.output
    assert "no longer contains" not in result.output
