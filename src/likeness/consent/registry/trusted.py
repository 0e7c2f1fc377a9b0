"""The registry's signed view: the verified ledger, galleries built only from bound rows, checks
of the rows a decision uses, and the signed operating point.

Everything here raises :class:`~likeness.errors.RegistryTampered` ("registry tampered: …", the
row and the ledger entry named) instead of returning a fact no signed entry vouches for. The
verified ledger (``consent.trust.TrustedLedger``) and the galleries are cached in the Registry
instance: the first decision walks the whole ledger and decrypts the gallery; later ones check
the newest entry, the head file and the rows they use.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, select

from likeness import ledger
from likeness.consent import schema
from likeness.consent.bindings import calibration_hash, identity_hash, reference_row_hash
from likeness.consent.gallery_index import GalleryIndex
from likeness.consent.head_file import Head
from likeness.consent.records import OperatingPoint
from likeness.consent.registry.core import RegistryCore
from likeness.consent.trust import TrustedLedger, advance
from likeness.errors import RegistryTampered, UsageError

MODEL_HASHES = "model_hashes"
"""The bound records of model files trusted on first verified use (``name/file`` → sha256)."""


@dataclass(frozen=True)
class GateSnapshot:
    """What one decision reads: the signed operating point and the verified gallery, at ``head``."""

    point: OperatingPoint
    gallery: GalleryIndex
    head: Head


class TrustMixin(RegistryCore):
    """The verified ledger and the facts the gate may act on."""

    # -- the verified ledger ---------------------------------------------------------------------
    def _trusted_ledger(self, conn: Connection) -> tuple[TrustedLedger, Head]:
        with self._trust_lock:
            head = advance(
                self._trusted, conn, self.keys.verify_keys, self.head_file, self._committed_hash_at
            )
            if head.seq and self.head_file.read() is None:
                self.head_file.advance(head)  # first use on this machine: trust the verified chain
            return self._trusted, head

    def _committed_hash_at(self, seq: int) -> str | None:
        """The hash of entry ``seq`` as committed now (a new connection, so a new snapshot)."""
        table = ledger.ledger_table
        with self._engine.connect() as conn:
            found = conn.execute(select(table.c.hash).where(table.c.seq == seq)).scalar()
        return None if found is None else str(found)

    def ledger_head(self) -> Head:
        """The verified head of the ledger now (newest entry authentic, chain walked, head file held)."""
        with self._read() as conn:
            return self._trusted_ledger(conn)[1]

    def gate_snapshot(self, embedding_space: str) -> GateSnapshot:
        """The signed operating point and the verified gallery of ``embedding_space``."""
        with self._read() as conn:
            trusted, head = self._trusted_ledger(conn)
            point = self._signed_operating_point(conn, trusted, embedding_space)
            return GateSnapshot(point, self._verified_gallery(conn, trusted, embedding_space), head)

    def check_identities_used(self, embedding_space: str, identity_ids: Iterable[str | None]) -> None:
        """Re-read the rows of the identities a decision used (match and runner-up) and check each
        against its signed entry: identity row, and every reference it has in the ledger."""
        wanted = [i for i in dict.fromkeys(identity_ids) if i]
        if not wanted:
            return
        with self._read() as conn, self._trust_lock:
            # against the facts ``gate_snapshot`` verified for this decision (no second ledger check)
            self._check_rows(conn, self._trusted, embedding_space, wanted)

    # -- records kept outside the database (licences) ----------------------------------------------
    def bind_records(self, kind: str, table: str, digests: dict[str, str], *, operator: str) -> None:
        """One signed entry binding records kept elsewhere (record id → content hash)."""
        with self._write() as conn:
            self._log(conn, kind, operator, {"rows": {table: dict(digests)}})

    def signed_records(self, table: str) -> dict[str, str]:
        """Record id → content hash, as the newest verified entry binding each one says."""
        with self._read() as conn:
            trusted, _ = self._trusted_ledger(conn)
            return {row_id: bound.digest for row_id, bound in trusted.records.get(table, {}).items()}

    # -- model files recorded on first verified use ------------------------------------------------
    def check_model_hashes(self, uses: Iterable[Any], *, operator: str) -> None:
        """Bind the hash of each model file a job runs to a signed ledger entry, and refuse a file
        whose hash differs from the one signed before.

        Pinned models (``state == "verified"``: their hash is in likeness's own code) need no entry.
        Files trusted on first verified use (insightface packs, inswapper: the model store records
        their sha256 in a plain file) are bound here the first time a job runs them, and checked
        every time after: replacing a model file and editing its recorded hash to match is a
        "registry tampered" refusal."""
        wanted = {
            f"{use.name}/{use.file}": str(use.sha256)
            for use in uses
            if getattr(use, "sha256", None) and getattr(use, "state", "verified") != "verified"
        }
        if not wanted:
            return
        signed = self.signed_records(MODEL_HASHES)
        for key, sha256 in wanted.items():
            if key in signed and signed[key] != sha256:
                raise RegistryTampered(
                    f"model file {key} has sha256 {sha256[:16]}…, but the hash signed in the ledger is "
                    f"{signed[key][:16]}…: the file was replaced and its recorded hash edited to match"
                )
        new = {key: sha256 for key, sha256 in wanted.items() if key not in signed}
        if new:
            self.bind_records("model_hash", MODEL_HASHES, new, operator=operator)

    # -- the operating point ---------------------------------------------------------------------
    def _signed_operating_point(
        self, conn: Connection, trusted: TrustedLedger, embedding_space: str
    ) -> OperatingPoint:
        """The newest signed calibration of the space (its row must match), else the policy's."""
        table = schema.calibrations
        row = conn.execute(
            select(table)
            .where(table.c.embedding_space == embedding_space)
            .order_by(table.c.created_at.desc(), table.c.id.desc())
            .limit(1)
        ).first()
        signed = trusted.newest_calibration.get(embedding_space)
        if row is not None:
            bound = trusted.calibrations.get(row.id)
            if bound is None:
                raise RegistryTampered(
                    f"calibrations row {row.id} ({embedding_space}, threshold {row.threshold}) has no signed "
                    "calibration entry in the ledger"
                )
            if calibration_hash(row._mapping) != bound.digest:
                raise RegistryTampered(
                    f"calibrations row {row.id} differs from the calibration signed in ledger entry "
                    f"{bound.seq}"
                )
        if signed is not None:
            if row is None or row.id != signed.calibration_id:
                raise RegistryTampered(
                    f"the newest signed calibration of {embedding_space} is {signed.calibration_id} (ledger "
                    f"entry {signed.seq}), but the calibrations table's newest row is "
                    f"{row.id if row is not None else 'missing'}"
                )
            values = signed.values
            return OperatingPoint(
                embedding_space,
                str(values["metric"]),
                float(values["threshold"]),
                float(values["margin"]),
                float(values["same_person_max"]),
                source=f"calibration {signed.calibration_id}",
            )
        point = self.policy.operating_point(embedding_space)
        if point is None:
            raise UsageError(
                f"no match threshold is known for embedding space {embedding_space!r}",
                hint="add a [match] rule for it (or a space_prefix rule) to the consent policy "
                f"({self.policy.source}), then run `likeness calibrate --faces DIR` for this backend",
            )
        return point

    # -- galleries -------------------------------------------------------------------------------
    def _verified_gallery(
        self, conn: Connection, trusted: TrustedLedger, embedding_space: str
    ) -> GalleryIndex:
        with self._trust_lock:
            cached = self._galleries.get(embedding_space)
            if cached is not None and cached.built_at >= trusted.references_changed_at:
                return cached
            built = self._build_gallery(conn, trusted, embedding_space)
            self._galleries[embedding_space] = built
            return built

    def _build_gallery(self, conn: Connection, trusted: TrustedLedger, embedding_space: str) -> GalleryIndex:
        """Every enrolled identity's references in the space, each row checked against its entry,
        and every reference the ledger lists for the space present."""
        refs, ids = schema.face_references, schema.identities
        rows = conn.execute(
            select(
                refs.c.id,
                refs.c.identity_id,
                refs.c.position,
                refs.c.embedding_space,
                refs.c.photo_sha256,
                refs.c.embedding,
                ids.c.name,
                ids.c.erased_at,
            )
            .join(ids, ids.c.id == refs.c.identity_id)
            .where(refs.c.embedding_space == embedding_space)
            .order_by(ids.c.created_at, ids.c.id, refs.c.position)
        ).all()
        cipher = self.keys.cipher()
        owners: list[str] = []
        names: dict[str, str] = {}
        vectors: list[np.ndarray] = []
        seen: set[str] = set()
        for row in rows:
            plain = cipher.decrypt(row.embedding)
            _check_reference(trusted, row, plain)
            seen.add(row.id)
            if row.identity_id not in names:
                _check_identity(trusted, row.identity_id, row.name, row.erased_at)
                names[row.identity_id] = row.name
            owners.append(row.identity_id)
            vectors.append(np.frombuffer(plain, dtype="<f4"))
        for ref_id, bound in trusted.references.items():
            if bound.embedding_space == embedding_space and ref_id not in seen:
                raise RegistryTampered(
                    f"face_references row {ref_id} of identity {bound.identity_id} (ledger entry "
                    f"{bound.seq}) is missing from the database"
                )
        return GalleryIndex.build(embedding_space, owners, names, vectors, built_at=trusted.seq)

    def _check_rows(
        self, conn: Connection, trusted: TrustedLedger, embedding_space: str, identity_ids: Sequence[str]
    ) -> None:
        refs, ids = schema.face_references, schema.identities
        rows = {row.id: row for row in conn.execute(select(ids).where(ids.c.id.in_(identity_ids)))}
        bound = {
            rid: ref
            for identity_id in identity_ids
            for rid, ref in trusted.references_of(identity_id).items()
            if ref.embedding_space == embedding_space
        }
        columns = (refs.c.id, refs.c.identity_id, refs.c.position, refs.c.embedding_space)
        wanted = (*columns, refs.c.photo_sha256, refs.c.embedding)
        found = {  # two indexed lookups (an OR of both would scan the table)
            row.id: row
            for where in (refs.c.identity_id.in_(identity_ids), refs.c.id.in_(list(bound)))
            for row in conn.execute(select(*wanted).where(where))
        }
        stored = [row for row in found.values() if row.embedding_space == embedding_space]
        for identity_id in identity_ids:
            row = rows.get(identity_id)
            if row is None:
                raise RegistryTampered(f"identities row {identity_id} is missing from the database")
            _check_identity(trusted, row.id, row.name, row.erased_at)
        cipher = self.keys.cipher()
        for ref in stored:
            _check_reference(trusted, ref, cipher.decrypt(ref.embedding))
        missing = sorted(set(bound) - {ref.id for ref in stored})
        if missing:
            first = bound[missing[0]]
            raise RegistryTampered(
                f"face_references row {missing[0]} of identity {first.identity_id} (ledger entry "
                f"{first.seq}) is missing from the database"
            )


def _check_identity(trusted: TrustedLedger, identity_id: str, name: str, erased_at: Any) -> None:
    bound = trusted.identities.get(identity_id)
    if bound is None:
        raise RegistryTampered(f"identities row {identity_id} ({name!r}) has no signed entry in the ledger")
    if identity_hash(identity_id, name) != bound.digest:
        raise RegistryTampered(
            f"identities row {identity_id} ({name!r}) differs from the identity signed in ledger entry "
            f"{bound.seq}"
        )
    if identity_id in trusted.erased and erased_at is None:
        raise RegistryTampered(
            f"identities row {identity_id} is not marked erased, but ledger entry "
            f"{trusted.erased[identity_id]} erased it"
        )


def _check_reference(trusted: TrustedLedger, row: Any, plain_embedding: bytes) -> None:
    bound = trusted.references.get(row.id)
    if bound is None:
        raise RegistryTampered(
            f"face_references row {row.id} (identity {row.identity_id}, {row.embedding_space}) has no signed "
            "entry in the ledger"
        )
    digest = reference_row_hash(row, plain_embedding)
    if digest != bound.digest:
        raise RegistryTampered(
            f"face_references row {row.id} (now identity {row.identity_id}) differs from the reference "
            f"signed in ledger entry {bound.seq} (identity {bound.identity_id}): re-pointed or edited"
        )
