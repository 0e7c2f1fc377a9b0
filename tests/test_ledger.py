"""The hash-chained, signed ledger: a real SQLite file, tampered with through sqlite3 directly."""

from __future__ import annotations

import itertools
import json
import sqlite3
import stat
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from likeness import ledger
from likeness.consent.keys import InstallationKeys

KINDS = ("enrol", "grant", "refusal", "output", "revoke", "output")


@pytest.fixture()
def book(tmp_path: Path):
    """A ledger of six real entries in a SQLite file, and the keys that signed them."""
    keys = InstallationKeys(tmp_path / "keys")
    db = tmp_path / "ledger.sqlite"
    engine = create_engine(f"sqlite:///{db}")
    ledger.LEDGER_METADATA.create_all(engine)
    signer = keys.signer()
    with engine.begin() as conn:
        for n, kind in enumerate(KINDS, start=1):
            payload = {
                "n": n,
                "id": f"x_{n:04d}",
                "sha256": "ab" * 32,
                "note": "Zoë ✓",
                "nested": {"b": [1, 2.5]},
            }
            ledger.append(conn, kind=kind, actor="tester", payload=payload, signer=signer)
    yield engine, db, keys
    engine.dispose()


def verify(engine, keys: InstallationKeys) -> ledger.ChainReport:
    with engine.connect() as conn:
        return ledger.verify_chain(conn, keys.verify_keys())


def tamper(db: Path, *statements: tuple[str, tuple]) -> None:
    with sqlite3.connect(db) as conn:
        for sql, args in statements:
            conn.execute(sql, args)


def row(db: Path, seq: int) -> dict:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return dict(conn.execute("SELECT * FROM ledger WHERE seq = ?", (seq,)).fetchone())


def test_intact_chain_verifies_and_reads_back(book) -> None:
    engine, db, keys = book
    report = verify(engine, keys)
    assert report.ok, report.reason
    assert report.entries == 6
    assert (report.head_seq, report.head_hash) == (6, row(db, 6)["hash"])
    with engine.connect() as conn:
        entries = list(ledger.entries(conn))
    assert [e.kind for e in entries] == list(KINDS)
    assert entries[0].prev_hash == ledger.GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(entries))
    assert entries[2].payload["note"] == "Zoë ✓"
    assert entries[2].payload["nested"] == {"b": [1, 2.5]}


def test_key_files_are_private(book) -> None:
    _, _, keys = book
    for path in keys.keys_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_edited_payload_is_named(book) -> None:
    engine, db, keys = book
    payload = json.loads(row(db, 3)["payload"])
    payload["id"] = "x_9999"
    tamper(db, ("UPDATE ledger SET payload = ? WHERE seq = 3", (ledger.canonical_json(payload),)))
    report = verify(engine, keys)
    assert not report.ok
    assert report.first_bad_seq == 3
    assert "edited" in report.reason
    assert report.head_seq == 2


def test_edited_actor_is_named(book) -> None:
    engine, db, keys = book
    tamper(db, ("UPDATE ledger SET actor = 'someone else' WHERE seq = 5", ()))
    report = verify(engine, keys)
    assert (report.ok, report.first_bad_seq) == (False, 5)
    assert "edited" in report.reason


def test_edited_and_rehashed_entry_fails_its_signature(book) -> None:
    """An attacker who recomputes the hash (and relinks the next entry) still cannot sign."""
    engine, db, keys = book
    old = row(db, 4)
    payload = json.loads(old["payload"])
    payload["sha256"] = "cd" * 32
    new_hash = ledger.entry_hash(
        prev_hash=old["prev_hash"],
        seq=4,
        time=old["time"],
        kind=old["kind"],
        actor=old["actor"],
        payload=payload,
        key_id=old["key_id"],
    )
    tamper(
        db,
        ("UPDATE ledger SET payload = ?, hash = ? WHERE seq = 4", (ledger.canonical_json(payload), new_hash)),
        ("UPDATE ledger SET prev_hash = ? WHERE seq = 5", (new_hash,)),
    )
    report = verify(engine, keys)
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert "signature" in report.reason


def test_deleted_entry_is_named(book) -> None:
    engine, db, keys = book
    tamper(db, ("DELETE FROM ledger WHERE seq = 3", ()))
    report = verify(engine, keys)
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert "missing" in report.reason and "deleted" in report.reason


def test_deleted_and_renumbered_entry_breaks_the_link(book) -> None:
    engine, db, keys = book
    tamper(
        db,
        ("DELETE FROM ledger WHERE seq = 3", ()),
        ("UPDATE ledger SET seq = seq - 1 WHERE seq > 3", ()),
    )
    report = verify(engine, keys)
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert "does not link" in report.reason


def test_reordered_entries_are_named(book) -> None:
    engine, db, keys = book
    tamper(
        db,
        ("UPDATE ledger SET seq = -1 WHERE seq = 3", ()),
        ("UPDATE ledger SET seq = 3 WHERE seq = 4", ()),
        ("UPDATE ledger SET seq = 4 WHERE seq = -1", ()),
    )
    report = verify(engine, keys)
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert "out of order" in report.reason


def test_inserted_entry_with_a_correct_hash_fails_its_signature(book, tmp_path: Path) -> None:
    """A well-formed entry inserted mid-chain, signed with a key that is not the installation's."""
    engine, db, keys = book
    forger = InstallationKeys(tmp_path / "forger").signer()
    before = row(db, 2)
    payload = {"output_id": "forged", "consent_ids": ["cns_forged"]}
    forged_hash = ledger.entry_hash(
        prev_hash=before["hash"],
        seq=3,
        time=before["time"],
        kind="output",
        actor="tester",
        payload=payload,
        key_id=forger.key_id,
    )
    with sqlite3.connect(db) as conn:
        for seq in range(6, 2, -1):
            conn.execute("UPDATE ledger SET seq = seq + 1 WHERE seq = ?", (seq,))
        conn.execute(
            "INSERT INTO ledger (seq, time, kind, actor, payload, prev_hash, hash, key_id, signature) "
            "VALUES (3, ?, 'output', 'tester', ?, ?, ?, ?, ?)",
            (
                before["time"],
                ledger.canonical_json(payload),
                before["hash"],
                forged_hash,
                forger.key_id,
                forger.sign(forged_hash),
            ),
        )
    report = verify(engine, keys)
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert "unknown key" in report.reason


def test_inserted_entry_at_the_end_without_the_key_is_named(book) -> None:
    engine, db, keys = book
    last = row(db, 6)
    payload = {"output_id": "forged"}
    forged_hash = ledger.entry_hash(
        prev_hash=last["hash"],
        seq=7,
        time=last["time"],
        kind="output",
        actor="tester",
        payload=payload,
        key_id=last["key_id"],
    )
    tamper(
        db,
        (
            "INSERT INTO ledger (seq, time, kind, actor, payload, prev_hash, hash, key_id, signature) "
            "VALUES (7, ?, 'output', 'tester', ?, ?, ?, ?, ?)",
            (
                last["time"],
                ledger.canonical_json(payload),
                last["hash"],
                forged_hash,
                last["key_id"],
                last["signature"],
            ),
        ),
    )
    report = verify(engine, keys)
    assert (report.ok, report.first_bad_seq) == (False, 7)
    assert "invalid signature" in report.reason


def test_entries_signed_before_a_key_rotation_still_verify(book) -> None:
    engine, db, keys = book
    old_key_id = row(db, 6)["key_id"]
    signer = keys.rotate_signer()
    assert signer.key_id != old_key_id
    with engine.begin() as conn:
        ledger.append(conn, kind="key_rotation", actor="tester", payload={"to": signer.key_id}, signer=signer)
    report = verify(engine, keys)
    assert report.ok and report.entries == 7, report.reason
    assert row(db, 7)["key_id"] == signer.key_id
    (keys.keys_dir / f"ledger-{old_key_id}.pub").unlink()
    report = verify(engine, keys)
    assert (report.ok, report.first_bad_seq) == (False, 1)
    assert "unknown key" in report.reason


def test_payload_must_be_plain_json(book) -> None:
    engine, _, keys = book
    with engine.begin() as conn, pytest.raises(ValueError):
        ledger.append(
            conn, kind="output", actor="t", payload={"distance": float("nan")}, signer=keys.signer()
        )
    assert verify(engine, keys).entries == 6


def test_recent_entries_are_the_newest_in_order(book) -> None:
    engine, _, _ = book
    with engine.connect() as conn:
        assert [e.seq for e in ledger.recent(conn, limit=2)] == [5, 6]
        assert [e.seq for e in ledger.recent(conn, limit=2, kind="output")] == [4, 6]
        assert [e.kind for e in ledger.recent(conn, limit=100)] == list(KINDS)
        assert ledger.recent(conn, limit=0) == []
