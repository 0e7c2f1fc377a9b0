"""Ledger and keys: verify the chain and every record against it, read entries, rotate the keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import select, update

from likeness import ledger
from likeness.consent import integrity, schema, table_audit
from likeness.consent.head_file import Head
from likeness.consent.registry.consents import ConsentsMixin


class LedgerKeysMixin(ConsentsMixin):
    """The signed ledger and the installation's keys."""

    def verify_ledger(self) -> ledger.ChainReport:
        """Check the ledger's chain and signatures, the head file, then every table against the ledger;
        the first problem found is the report's reason (``audit_registry`` lists them all)."""
        with self._read() as conn:
            report = ledger.verify_chain(conn, self.keys.verify_keys())
            if not report.ok:
                return report
            records = self._consents(conn, None)
            problems = integrity.consent_problems(conn, records, self.keys.verify_keys())
            for record, problem in zip(records, problems, strict=True):
                if problem is not None:
                    return replace(report, ok=False, first_bad_seq=record.ledger_seq, reason=problem)
            for seq, problem in integrity.output_problems(conn):
                return replace(report, ok=False, first_bad_seq=seq, reason=problem)
            kept = table_audit.head_file_problem(conn, self.head_file)
            if kept is not None and not kept.startswith("absent"):
                return replace(report, ok=False, reason=f"head file {self.head_file.path}: {kept}")
            first = table_audit.first_table_problem(
                table_audit.audit_tables(conn, self.keys.cipher(), self.keys.verify_keys())
            )
            if first is not None:
                return replace(report, ok=False, reason=first)
        return report

    def audit_registry(
        self,
        *,
        witnesses: Sequence[tuple[str, Head | None, str]] = (),
        expected_head: str | None = None,
        licence_records: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> table_audit.RegistryAudit:
        """The full check behind ``likeness audit verify``: chain and signatures, head file, every
        table against the ledger, and ``witnesses`` ((file, head its manifest states, manifest state))."""
        with self._read() as conn:
            chain = ledger.verify_chain(conn, self.keys.verify_keys())
            tables = table_audit.audit_tables(conn, self.keys.cipher(), self.keys.verify_keys())
            if licence_records is not None:
                tables["licences"] = table_audit.licence_check(conn, licence_records)
            head_problem = table_audit.head_file_problem(conn, self.head_file)
            if head_problem is not None and head_problem.startswith("absent"):
                head_problem = None if chain.entries == 0 else head_problem
            expected = None
            if expected_head:
                wanted = expected_head.strip().lower()
                table = ledger.ledger_table
                if conn.execute(select(table.c.seq).where(table.c.hash == wanted)).first() is None:
                    expected = (
                        f"the ledger no longer contains the head {expected_head} kept earlier: "
                        "entries were removed or the ledger was replaced"
                    )
            checked = tuple(
                table_audit.witness_of(path, head, conn, state) for path, head, state in witnesses
            )
        return table_audit.RegistryAudit(
            chain=chain,
            head_file=str(self.head_file.path),
            head_file_problem=head_problem,
            tables=tables,
            witnesses=checked,
            expected_head_problem=expected,
        )

    def ledger_entries(self, kind: str | None = None) -> list[ledger.Entry]:
        with self._read() as conn:
            return list(ledger.entries(conn, kind=kind))

    def recent_ledger_entries(self, limit: int, kind: str | None = None) -> list[ledger.Entry]:
        """The newest ``limit`` entries (optionally of one kind), oldest of them first."""
        with self._read() as conn:
            return ledger.recent(conn, limit=limit, kind=kind)

    def rotate_data_key(self, *, operator: str) -> int:
        """Re-encrypt every stored photo, embedding and document with a new key; returns how many."""
        cipher = self.keys.add_data_key()
        count = 0
        with self._write() as conn:
            for table, key, columns in (
                (schema.face_references, "id", ("embedding", "crop")),
                (schema.evidence, "sha256", ("data",)),
            ):
                for row in conn.execute(select(table)).all():
                    values = {
                        c: cipher.rotate(getattr(row, c)) for c in columns if getattr(row, c) is not None
                    }
                    conn.execute(update(table).where(table.c[key] == getattr(row, key)).values(**values))
                    count += 1
            self._log(conn, "key_rotation", operator, {"key": "data", "blobs_reencrypted": count})
        self.keys.drop_old_data_keys()
        return count

    def rotate_signing_key(self, *, operator: str) -> str:
        """Sign new ledger entries with a new key (the old public key stays for verification)."""
        old = self._signer.key_id
        self._signer = self.keys.rotate_signer()
        with self._write() as conn:
            self._log(
                conn, "key_rotation", operator, {"key": "ledger", "from": old, "to": self._signer.key_id}
            )
        return self._signer.key_id
