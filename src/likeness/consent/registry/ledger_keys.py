"""Ledger and keys: verify the chain and every record against it, read entries, rotate the keys."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select, update

from likeness import ledger
from likeness.consent import integrity, schema
from likeness.consent.registry.consents import ConsentsMixin


class LedgerKeysMixin(ConsentsMixin):
    """The signed ledger and the installation's keys."""

    def verify_ledger(self) -> ledger.ChainReport:
        """Check the ledger's chain and signatures, then every consent record against its grant entry."""
        with self._read() as conn:
            report = ledger.verify_chain(conn, self.keys.verify_keys())
            if not report.ok:
                return report
            records = self._consents(conn, None)
            for record, problem in zip(records, self._attest(conn, records), strict=True):
                if problem is not None:
                    return replace(report, ok=False, first_bad_seq=record.ledger_seq, reason=problem)
            for seq, problem in integrity.output_problems(conn):
                return replace(report, ok=False, first_bad_seq=seq, reason=problem)
        return report

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
