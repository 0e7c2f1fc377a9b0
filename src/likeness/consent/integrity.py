"""Do the registry's tables still say what the signed ledger says?

The ledger is signed; the tables are not. Anyone with write access to the database file could widen
a consent's dates, undo a revocation or rewrite an output's hash (or the hashes of its inputs).
These checks compare each row with the signed entry that recorded it, so the gate
(``attested_consents``) and ``likeness audit verify`` notice such an edit, and name the entry.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, select

from likeness import ledger
from likeness.consent import schema
from likeness.consent.records import ConsentRecord


def revoked_in_ledger(conn: Connection) -> set[str]:
    """Consent ids of every revoke and erasure entry, as stored (unverified: for reports)."""
    table = ledger.ledger_table
    revoked: set[str] = set()
    for kind, payload in conn.execute(
        select(table.c.kind, table.c.payload).where(table.c.kind.in_(("revoke", "erasure")))
    ):
        try:
            data = json.loads(payload)
        except ValueError:
            continue
        revoked.update([data.get("consent_id")] if kind == "revoke" else data.get("consents_revoked", []))
    return revoked


def consent_problems(
    conn: Connection,
    records: Sequence[ConsentRecord],
    verify_keys: Mapping[str, Ed25519PublicKey],
    *,
    revoked: Collection[str] | None = None,
) -> list[str | None]:
    """Per record: None if it matches its signed grant entry (and any revocation), else what differs.

    ``revoked``: the consent ids the verified ledger revoked (``trust.TrustedLedger.revoked``);
    by default those of every stored revoke / erasure entry.
    """
    table = ledger.ledger_table
    seqs = [record.ledger_seq for record in records if record.ledger_seq is not None]
    grants = {row.seq: row for row in conn.execute(select(table).where(table.c.seq.in_(seqs)))}
    if revoked is None:
        revoked = revoked_in_ledger(conn)
    problems: list[str | None] = []
    for record in records:
        row = grants.get(record.ledger_seq)
        problem = None if row is None else ledger.entry_problem(row, verify_keys)
        if row is None:
            problem = f"consent {record.id} has no grant entry in the ledger"
        elif problem is None:
            signed = json.loads(row.payload)
            if (row.kind, signed.get("consent_id"), signed.get("terms_sha256")) != (
                "grant",
                record.id,
                record.terms_sha256(),
            ):
                problem = f"consent {record.id} differs from the terms signed in ledger entry {row.seq}"
        if problem is None and record.id in revoked and record.revoked_at is None:
            problem = f"consent {record.id} was revoked in the ledger but is not marked revoked"
        problems.append(problem)
    return problems


def output_problems(conn: Connection) -> Iterator[tuple[int, str]]:
    """(ledger seq, what differs) for output rows that do not match their signed output entry."""
    table, entries = schema.outputs, ledger.ledger_table
    signed = {
        row.seq: json.loads(row.payload)
        for row in conn.execute(select(entries.c.seq, entries.c.payload).where(entries.c.kind == "output"))
    }
    for row in conn.execute(select(table).order_by(table.c.ledger_seq)):
        payload = signed.get(row.ledger_seq)
        if payload is None:
            yield row.ledger_seq, f"output {row.output_id} has no output entry in the ledger"
            continue
        recorded = (
            payload.get("output_id"),
            payload.get("sha256"),
            sorted(payload.get("consent_ids", [])),
            payload.get("ingredient_sha256") or {},
        )
        if recorded != (row.output_id, row.sha256, sorted(row.consent_ids), row.ingredient_sha256 or {}):
            yield (
                row.ledger_seq,
                (f"output {row.output_id} differs from the record signed in ledger entry {row.ledger_seq}"),
            )
