"""``likeness audit verify``: the chain, the head file, witnesses, and every table against the ledger.

Per table (identities, face_references, consents, calibrations, outputs) it lists rows without a
signed entry, entries whose row is gone, and rows whose content differs from what their entry
signed. Unlike the gate it never stops at the first problem: it reports them all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import MultiFernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, select

from likeness import ledger
from likeness.consent import integrity, schema
from likeness.consent.bindings import calibration_hash, identity_hash, record_hash, reference_row_hash
from likeness.consent.head_file import Head, HeadFile
from likeness.consent.store import consent_from_row
from likeness.consent.trust import Bound, TrustedLedger
from likeness.errors import RegistryError

TABLES = ("identities", "face_references", "consents", "calibrations", "outputs")


@dataclass
class TableCheck:
    rows: int = 0
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "ok": not self.problems, "problems": list(self.problems)}


@dataclass(frozen=True)
class Witness:
    """A released output's manifest, read back: the ledger head it states, and whether the chain has it."""

    path: str
    head: Head | None
    problem: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ledger_head": self.head.to_dict() if self.head else None,
            "ok": self.problem is None,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class RegistryAudit:
    chain: ledger.ChainReport
    head_file: str
    head_file_problem: str | None
    tables: dict[str, TableCheck]
    witnesses: tuple[Witness, ...] = ()
    expected_head_problem: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.chain.ok
            and self.head_file_problem is None
            and self.expected_head_problem is None
            and all(not check.problems for check in self.tables.values())
            and all(w.problem is None for w in self.witnesses)
        )

    def describe(self) -> str:
        lines = [self.chain.describe()]
        lines.append(f"head file {self.head_file}: " + (self.head_file_problem or "agrees with the ledger"))
        if self.expected_head_problem:
            lines.append(self.expected_head_problem)
        for name, check in self.tables.items():
            status = "OK" if not check.problems else f"{len(check.problems)} problem(s)"
            lines.append(f"table {name}: {check.rows} rows, {status}")
            lines += [f"  - {problem}" for problem in check.problems]
        for witness in self.witnesses:
            head = f"entry {witness.head.seq}" if witness.head else "no ledger head"
            lines.append(
                f"witness {witness.path} ({head}): " + (witness.problem or "contained in the ledger")
            )
        lines.append("registry OK" if self.ok else "registry audit FAILED")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.chain.to_dict(),
            "ok": self.ok,
            "chain_ok": self.chain.ok,
            "head_file": {"path": self.head_file, "ok": self.head_file_problem is None},
            "head_file_problem": self.head_file_problem,
            "expected_head_problem": self.expected_head_problem,
            "tables": {name: check.to_dict() for name, check in self.tables.items()},
            "witnesses": [w.to_dict() for w in self.witnesses],
        }


def ledger_facts(conn: Connection) -> TrustedLedger:
    """Every stored entry applied in order, as stored (the chain is judged separately)."""
    facts = TrustedLedger()
    table = ledger.ledger_table
    for row in conn.execute(select(table.c.seq, table.c.kind, table.c.payload).order_by(table.c.seq)):
        try:
            payload = json.loads(row.payload)
        except ValueError:
            continue
        if isinstance(payload, dict):
            facts.apply(int(row.seq), str(row.kind), payload)
    return facts


def head_file_problem(conn: Connection, head_file: HeadFile) -> str | None:
    try:
        kept = head_file.read()
    except RegistryError as exc:
        return exc.reason
    if kept is None:
        return "absent (created at the next write; it cannot show truncation before that)"
    return chain_lacks(conn, kept, "the head file")


def chain_lacks(conn: Connection, head: Head, who: str) -> str | None:
    """Why the stored chain does not contain ``head`` (entry seq with that hash), else None."""
    table = ledger.ledger_table
    stored = conn.execute(select(table.c.hash).where(table.c.seq == head.seq)).scalar()
    if stored is None:
        newest = conn.execute(select(table.c.seq).order_by(table.c.seq.desc()).limit(1)).scalar() or 0
        return (
            f"{who} records ledger entry {head.seq} ({head.hash[:16]}…), but the ledger ends at entry "
            f"{newest}: entries were cut off"
        )
    if stored != head.hash:
        return (
            f"{who} records ledger entry {head.seq} as {head.hash[:16]}…, but the ledger holds "
            f"{str(stored)[:16]}… there: the ledger was replaced or rewritten"
        )
    return None


def audit_tables(
    conn: Connection, cipher: MultiFernet, verify_keys: Mapping[str, Ed25519PublicKey]
) -> dict[str, TableCheck]:
    facts = ledger_facts(conn)
    checks = {name: TableCheck() for name in TABLES}
    _identities(conn, facts, checks["identities"])
    _references(conn, cipher, facts, checks["face_references"])
    _consents(conn, facts, verify_keys, checks["consents"])
    _calibrations(conn, facts, checks["calibrations"])
    _outputs(conn, checks["outputs"])
    return checks


def _identities(conn: Connection, facts: TrustedLedger, check: TableCheck) -> None:
    seen = set()
    for row in conn.execute(select(schema.identities).order_by(schema.identities.c.id)):
        check.rows += 1
        seen.add(row.id)
        _compare(
            check,
            f"row {row.id} ({row.name!r})",
            facts.identities.get(row.id),
            identity_hash(row.id, row.name),
        )
        if row.id in facts.erased and row.erased_at is None:
            check.problems.append(
                f"row {row.id} is not marked erased; ledger entry {facts.erased[row.id]} erased it"
            )
    _gone(check, facts.identities, seen, "enrolled")


def _references(conn: Connection, cipher: MultiFernet, facts: TrustedLedger, check: TableCheck) -> None:
    seen = set()
    for row in conn.execute(select(schema.face_references).order_by(schema.face_references.c.id)):
        check.rows += 1
        seen.add(row.id)
        bound = facts.references.get(row.id)
        if bound is None:
            check.problems.append(f"row {row.id} (identity {row.identity_id}) has no signed entry")
            continue
        digest = reference_row_hash(row, cipher.decrypt(row.embedding))
        if digest != bound.digest:
            check.problems.append(
                f"row {row.id} (identity {row.identity_id}) differs from ledger entry {bound.seq} "
                f"(identity {bound.identity_id})"
            )
    for row_id, bound in facts.references.items():
        if row_id not in seen:
            check.problems.append(
                f"ledger entry {bound.seq} added reference {row_id} of {bound.identity_id}, which has no row"
            )


def _consents(
    conn: Connection, facts: TrustedLedger, verify_keys: Mapping[str, Ed25519PublicKey], check: TableCheck
) -> None:
    records = [consent_from_row(row) for row in conn.execute(select(schema.consents))]
    check.rows = len(records)
    problems = integrity.consent_problems(conn, records, verify_keys, revoked=set(facts.revoked))
    check.problems += [problem for problem in problems if problem is not None]
    seen = {record.id for record in records}
    for record in records:
        if record.revoked_at is not None and record.id not in facts.revoked:
            check.problems.append(f"consent {record.id} is marked revoked but no ledger entry revoked it")
    _gone(check, facts.consents, seen, "granted")


def _calibrations(conn: Connection, facts: TrustedLedger, check: TableCheck) -> None:
    seen = set()
    for row in conn.execute(select(schema.calibrations).order_by(schema.calibrations.c.id)):
        check.rows += 1
        seen.add(row.id)
        what = f"row {row.id} ({row.embedding_space}, threshold {row.threshold})"
        _compare(check, what, facts.calibrations.get(row.id), calibration_hash(row._mapping))
    _gone(check, facts.calibrations, seen, "stored calibration")


def licence_check(conn: Connection, records: Mapping[str, Mapping[str, Any]]) -> TableCheck:
    """The licence records file (model → record dict) against the signed ``licence`` entries."""
    signed = ledger_facts(conn).records.get("licences", {})
    check = TableCheck(rows=len(records))
    for model, record in sorted(records.items()):
        _compare(check, f"record {model}", signed.get(model), record_hash(record))
    return check


def _compare(check: TableCheck, what: str, bound: Bound | None, digest: str) -> None:
    """One row (or record) against the hash its signed entry bound."""
    if bound is None:
        check.problems.append(f"{what} has no signed entry")
    elif digest != bound.digest:
        check.problems.append(f"{what} differs from ledger entry {bound.seq}")


def _gone(check: TableCheck, bound: Mapping[str, Bound], seen: set[str], verb: str) -> None:
    """Entries whose row is missing."""
    for row_id, entry in bound.items():
        if row_id not in seen:
            check.problems.append(f"ledger entry {entry.seq} {verb} {row_id}, which has no row")


def _outputs(conn: Connection, check: TableCheck) -> None:
    table, entries = schema.outputs, ledger.ledger_table
    rows = conn.execute(select(table.c.output_id)).scalars().all()
    check.rows = len(rows)
    check.problems += [problem for _, problem in integrity.output_problems(conn)]
    seen = set(rows)
    for seq, payload in conn.execute(
        select(entries.c.seq, entries.c.payload).where(entries.c.kind == "output").order_by(entries.c.seq)
    ):
        output_id = _field(payload, "output_id")
        if output_id not in seen:
            check.problems.append(f"ledger entry {seq} recorded output {output_id}, which has no row")


def _field(payload: str, name: str) -> Any:
    try:
        return json.loads(payload).get(name)
    except (ValueError, AttributeError):
        return None


def witness_of(path: str, head: Head | None, conn: Connection, state: str) -> Witness:
    if state == "invalid":
        return Witness(path, head, "its content credentials are invalid: it cannot witness the ledger")
    if head is None:
        return Witness(path, None, "its manifest states no ledger head (made before likeness recorded it)")
    return Witness(path, head, chain_lacks(conn, head, "this output's signed manifest"))


def first_table_problem(tables: Mapping[str, TableCheck]) -> str | None:
    for name in TABLES:
        if tables[name].problems:
            return f"table {name}: {tables[name].problems[0]}"
    return None


def all_problems(tables: Mapping[str, TableCheck]) -> Sequence[str]:
    return [f"table {name}: {problem}" for name, check in tables.items() for problem in check.problems]
