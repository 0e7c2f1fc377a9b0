"""Consents: grant (checked against the policy, with its evidence document), revoke, look up,
attest against the signed ledger; and the ledger entry of a refusal."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, update

from likeness.consent import integrity, schema
from likeness.consent.policy import check_grant
from likeness.consent.records import ConsentRecord
from likeness.consent.registry.identities import IdentitiesMixin
from likeness.consent.store import as_utc, consent_from_row, new_id, now_utc, unique_names
from likeness.consent.trust import TrustedLedger
from likeness.errors import ConsentRefused, UsageError
from likeness.fsutil import sha256_bytes


class ConsentsMixin(IdentitiesMixin):
    """Consent records of enrolled identities, and refusals."""

    def grant(
        self,
        identity_id: str,
        *,
        purposes: Sequence[str],
        roles: Sequence[str],
        valid_until: dt.date,
        uses: str,
        operator: str,
        media: Sequence[str] = ("image",),
        valid_from: dt.date | None = None,
        capacity: str = "self",
        grantor: str | None = None,
        basis: str | None = None,
        date_of_birth: dt.date | None = None,
        date_of_death: dt.date | None = None,
        jurisdiction: str | None = None,
        project: str | None = None,
        compensation: str | None = None,
        representation: str | None = None,
        evidence: Path | None = None,
        takedown_contact: str | None = None,
        at: dt.datetime | None = None,
    ) -> ConsentRecord:
        """Record a consent after checking it against the policy (PolicyViolation names the rule).

        ``grantor`` defaults to the person themself for capacity ``self`` and to the operator
        recording it for ``rights_expired``. ``evidence`` is the signed consent document; it is
        stored encrypted and referenced by its sha256.
        """
        now = as_utc(at) or now_utc()
        today = self.policy.today(now)
        document = _read_evidence(evidence) if evidence is not None else None
        with self._write() as conn:
            identity = self._identity_row(conn, identity_id)
            if identity.erased_at is not None:
                raise UsageError(f"identity {identity.id} was erased; it cannot be granted consent")
            if grantor is None and capacity == "self":
                grantor = identity.name
            elif grantor is None and capacity == "rights_expired":
                grantor = operator
            record = ConsentRecord(
                id=new_id("cns"),
                identity_id=identity.id,
                purposes=unique_names(purposes),
                roles=unique_names(roles),
                media=unique_names(media),
                uses=" ".join(uses.split()),
                valid_from=valid_from or today,
                valid_until=valid_until,
                capacity=capacity,
                grantor=grantor or "",
                created_at=now,
                created_by=operator,
                policy_sha256=self.policy.sha256,
                basis=basis,
                date_of_birth=date_of_birth,
                date_of_death=date_of_death,
                jurisdiction=jurisdiction,
                project=project,
                compensation=compensation,
                representation=representation,
                evidence_sha256=document[0] if document else None,
                evidence_name=document[1] if document else None,
                takedown_contact=takedown_contact,
            )
            check_grant(self.policy, record, today=today)
            if document is not None:
                self._store_evidence(conn, *document, now=now)
            entry = self._log(
                conn,
                "grant",
                operator,
                {
                    "consent_id": record.id,
                    "identity_id": record.identity_id,
                    "terms_sha256": record.terms_sha256(),
                    "purposes": list(record.purposes),
                    "roles": list(record.roles),
                    "media": list(record.media),
                    "valid_from": record.valid_from.isoformat(),
                    "valid_until": record.valid_until.isoformat(),
                    "capacity": record.capacity,
                    "policy_sha256": record.policy_sha256,
                    "evidence_sha256": record.evidence_sha256,
                },
            )
            record = replace(record, ledger_seq=entry.seq)
            values = {f.name: getattr(record, f.name) for f in fields(record)}
            values.update(
                purposes=list(record.purposes),
                roles=list(record.roles),
                media=list(record.media),
                terms_sha256=record.terms_sha256(),
            )
            conn.execute(insert(schema.consents).values(**values))
        return record

    def _store_evidence(
        self, conn: Connection, sha256: str, name: str, data: bytes, *, now: dt.datetime
    ) -> None:
        table = schema.evidence
        if conn.execute(select(table.c.sha256).where(table.c.sha256 == sha256)).first() is None:
            conn.execute(
                insert(table).values(sha256=sha256, name=name, data=self.keys.encrypt(data), created_at=now)
            )

    def evidence_document(self, sha256: str) -> bytes:
        """The stored consent document with this sha256, decrypted."""
        with self._read() as conn:
            token = conn.execute(
                select(schema.evidence.c.data).where(schema.evidence.c.sha256 == sha256)
            ).scalar()
        if token is None:
            raise UsageError(f"no consent document with sha256 {sha256} is stored")
        return self.keys.decrypt(token)

    def revoke(
        self, consent_id: str, *, reason: str, operator: str, at: dt.datetime | None = None
    ) -> ConsentRecord:
        """Revoke at once: new jobs, and jobs already past the gate, are refused from now on."""
        if not reason.strip():
            raise UsageError(
                "revoking needs a reason", hint="e.g. --reason 'withdrawn by the performer by e-mail'"
            )
        now = as_utc(at) or now_utc()
        with self._write() as conn:
            record = self._consent(conn, consent_id)
            if record.revoked_at is not None:
                raise UsageError(
                    f"consent {consent_id} was already revoked on {record.revoked_at:%Y-%m-%d %H:%M} UTC "
                    f"by {record.revoked_by}"
                )
            conn.execute(
                update(schema.consents)
                .where(schema.consents.c.id == record.id)
                .values(revoked_at=now, revoked_by=operator, revoke_reason=reason.strip())
            )
            self._log(
                conn,
                "revoke",
                operator,
                {
                    "consent_id": record.id,
                    "identity_id": record.identity_id,
                    "reason": reason.strip(),
                },
            )
            return self._consent(conn, record.id)

    def _consent(self, conn: Connection, consent_id: str) -> ConsentRecord:
        row = conn.execute(select(schema.consents).where(schema.consents.c.id == consent_id.strip())).first()
        if row is None:
            raise UsageError(
                f"unknown consent {consent_id!r}", hint="`likeness consent list` shows the consents"
            )
        return consent_from_row(row)

    def get_consent(self, consent_id: str) -> ConsentRecord:
        with self._read() as conn:
            return self._consent(conn, consent_id)

    def list_consents(self, identity_id: str | None = None) -> list[ConsentRecord]:
        with self._read() as conn:
            return self._consents(conn, identity_id)

    def _consents(self, conn: Connection, identity_id: str | None) -> list[ConsentRecord]:
        table = schema.consents
        query = select(table).order_by(table.c.created_at, table.c.id)
        if identity_id is not None:
            query = query.where(table.c.identity_id == self._identity_row(conn, identity_id).id)
        return [consent_from_row(row) for row in conn.execute(query)]

    def attested_consents(self, identity_id: str) -> list[tuple[ConsentRecord, str | None]]:
        """An identity's consents, each with ``None`` if it matches its signed ledger entries, else why not.

        The gate relies on this rather than on the table alone: a consent edited in the database
        (dates widened, a revocation undone) no longer matches the terms its grant entry signed.
        """
        with self._read() as conn:
            records = self._consents(conn, identity_id)
            return list(zip(records, self._attest(conn, records), strict=True))

    def audited_consents(self, identity_id: str) -> list[tuple[ConsentRecord, str | None]]:
        """Like ``attested_consents`` but for reports: never raises on a tampered ledger, compares
        with the revoke / erasure entries as stored (``likeness audit verify`` judges the chain)."""
        with self._read() as conn:
            records = self._consents(conn, identity_id)
            problems = integrity.consent_problems(conn, records, self.keys.verify_keys())
            return list(zip(records, problems, strict=True))

    def _attest(self, conn: Connection, records: Sequence[ConsentRecord]) -> list[str | None]:
        """Per record, why it differs from the signed ledger (None if it does not). Revocations come
        from the verified ledger (RegistryTampered if a revocation was deleted, edited or cut off)."""
        trusted, _ = self._trusted_ledger(conn)
        return [_attest_one(trusted, record) for record in records]

    def log_refusal(self, refusal: ConsentRefused, details: Mapping[str, Any], *, operator: str) -> None:
        """Commit a ledger entry for a refusal (the job fails, the record of it stays)."""
        with self._write() as conn:
            self._log(
                conn,
                "refusal",
                operator,
                {
                    "rule": refusal.rule,
                    "face": refusal.face,
                    "identity_id": refusal.identity_id,
                    **details,
                },
            )


def _attest_one(trusted: TrustedLedger, record: ConsentRecord) -> str | None:
    """Why ``record`` differs from the verified ledger (its grant's signed terms, any revocation)."""
    bound = trusted.consents.get(record.id)
    if bound is None:
        return f"consent {record.id} has no grant entry in the ledger"
    if bound.seq != record.ledger_seq or bound.digest != record.terms_sha256():
        return f"consent {record.id} differs from the terms signed in ledger entry {bound.seq}"
    if record.id in trusted.revoked and record.revoked_at is None:
        return (
            f"consent {record.id} was revoked in the ledger (entry {trusted.revoked[record.id]}) "
            "but is not marked revoked"
        )
    return None


def _read_evidence(path: Path) -> tuple[str, str, bytes]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: the consent document cannot be read ({exc.strerror})") from exc
    if not data:
        raise UsageError(f"{path}: the consent document is empty")
    return sha256_bytes(data), Path(path).name, data
