"""Identities: enrolment from reference faces, more references, lookups, the gallery, erasure.

Reference embeddings and face crops are stored encrypted. Enrolment refuses a face that already
matches another enrolled identity (ConsentRefused ``already_enrolled``, logged in the same
transaction); erasure deletes the references, revokes the consents and leaves a tombstone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, delete, insert, select, update

from likeness.consent import schema
from likeness.consent.bindings import identity_hash, reference_hash
from likeness.consent.records import GalleryIdentity, Identity, OperatingPoint, Reference
from likeness.consent.registry.calibrations import CalibrationsMixin
from likeness.consent.store import as_utc, new_id, now_utc
from likeness.errors import ConsentRefused, UsageError


class IdentitiesMixin(CalibrationsMixin):
    """Enrolled identities and their encrypted reference faces."""

    def gallery(self, embedding_space: str) -> list[GalleryIdentity]:
        """Every enrolled (not erased) identity with references in ``embedding_space``, decrypted,
        each row checked against its signed ledger entry (RegistryTampered if one is not)."""
        return self.gate_snapshot(embedding_space).gallery.identities()

    def _gallery(self, conn: Connection, embedding_space: str) -> list[GalleryIdentity]:
        refs, ids = schema.face_references, schema.identities
        rows = conn.execute(
            select(ids.c.id, ids.c.name, refs.c.embedding)
            .join(refs, refs.c.identity_id == ids.c.id)
            .where(refs.c.embedding_space == embedding_space, ids.c.erased_at.is_(None))
            .order_by(ids.c.created_at, ids.c.id, refs.c.position)
        ).all()
        cipher = self.keys.cipher()
        grouped: dict[str, tuple[str, list[np.ndarray]]] = {}
        for row in rows:
            vector = np.frombuffer(cipher.decrypt(row.embedding), dtype="<f4")
            grouped.setdefault(row.id, (row.name, []))[1].append(vector)
        return [GalleryIdentity(key, name, np.stack(vectors)) for key, (name, vectors) in grouped.items()]

    def identities_by_space(self) -> dict[str, set[str]]:
        """Embedding space → ids of the enrolled (not erased) identities with references in it."""
        refs, ids = schema.face_references, schema.identities
        with self._read() as conn:
            rows = conn.execute(
                select(refs.c.embedding_space, refs.c.identity_id)
                .join(ids, ids.c.id == refs.c.identity_id)
                .where(ids.c.erased_at.is_(None))
                .distinct()
            ).all()
        spaces: dict[str, set[str]] = {}
        for row in rows:
            spaces.setdefault(row.embedding_space, set()).add(row.identity_id)
        return spaces

    def add_identity(self, name: str, references: Sequence[Reference], *, operator: str) -> Identity:
        """Enrol a person. Refuses a taken name (UsageError) and a face already enrolled (ConsentRefused)."""
        clean = " ".join(name.split())
        if not clean:
            raise UsageError("an identity needs a name", hint="give the person's name")
        if len(clean) > 200:
            raise UsageError("the name is longer than 200 characters")
        if not references:
            raise UsageError(f"no reference photo given for {clean!r}", hint="give at least one --photo")
        refusal: ConsentRefused | None = None
        with self._write() as conn:
            taken = conn.execute(
                select(schema.identities.c.id, schema.identities.c.name).where(
                    schema.identities.c.name_key == clean.casefold()
                )
            ).first()
            if taken is not None:
                raise UsageError(
                    f"an identity named {taken.name!r} is already enrolled ({taken.id})",
                    hint="grant consent to that identity, or enrol this person under a distinguishing name",
                )
            points = {
                ref.embedding_space: self._operating_point(conn, ref.embedding_space) for ref in references
            }
            _check_same_person(references, points, clean)
            duplicate = self._nearest_enrolled(conn, references, points)
            if duplicate is not None:
                other_id, other_name, distance, space = duplicate
                refusal = ConsentRefused(
                    f"cannot enrol {clean!r}: the face already matches enrolled identity {other_name!r} "
                    f"({other_id}) at distance {distance:.3f} in {space} "
                    f"(threshold {points[space].threshold:.3f}); "
                    "one person may be enrolled only once",
                    hint=f"grant consent to {other_name!r} instead; if these really are two people, "
                    "the registry cannot tell them apart and will refuse to swap either",
                    face=f"reference photos of {clean!r}",
                    identity_id=other_id,
                    rule="already_enrolled",
                )
                photos = sorted({r.photo_sha256 for r in references})
                self._log_already_enrolled(
                    conn, operator, refusal, duplicate, points[space], photo_sha256=photos
                )
            else:
                identity = self._insert_identity(conn, clean, references, operator)
        if refusal is not None:
            raise refusal
        return identity

    def _log_already_enrolled(
        self,
        conn: Connection,
        operator: str,
        refusal: ConsentRefused,
        duplicate: tuple[str, str, float, str],
        point: OperatingPoint,
        **extra: Any,
    ) -> None:
        """The ledger entry of references refused because they match another enrolled identity."""
        other_id, _, distance, space = duplicate
        self._log(
            conn,
            "refusal",
            operator,
            {
                "rule": "already_enrolled",
                "face": refusal.face,
                "identity_id": other_id,
                "distance": round(distance, 6),
                "threshold": point.threshold,
                "embedding_space": space,
                **extra,
            },
        )

    def _insert_identity(
        self, conn: Connection, name: str, references: Sequence[Reference], operator: str
    ) -> Identity:
        identity_id, now = new_id("idn"), now_utc()
        conn.execute(
            insert(schema.identities).values(
                id=identity_id, name=name, name_key=name.casefold(), created_at=now, created_by=operator
            )
        )
        bound, owners = self._insert_references(conn, identity_id, references, start=1, now=now)
        spaces = tuple(sorted({ref.embedding_space for ref in references}))
        self._log(
            conn,
            "enrol",
            operator,
            {
                "identity_id": identity_id,
                "references": len(references),
                "embedding_spaces": list(spaces),
                "photo_sha256": list(dict.fromkeys(ref.photo_sha256 for ref in references)),
                "rows": {
                    "identities": {identity_id: identity_hash(identity_id, name)},
                    "face_references": bound,
                },
                "reference_of": owners,
            },
        )
        return self._identity(conn, self._identity_row(conn, identity_id))

    def add_references(self, identity_id: str, references: Sequence[Reference], *, operator: str) -> Identity:
        """Add reference faces to an enrolled identity, e.g. in another backend's embedding space.

        The same checks as enrolment run per space: the new references must look like the
        identity's existing ones in that space (``same_person_max``) and must not match another
        enrolled identity (ConsentRefused ``already_enrolled``, logged).
        """
        if not references:
            raise UsageError("no reference faces to add")
        refusal: ConsentRefused | None = None
        with self._write() as conn:
            row = self._identity_row(conn, identity_id)
            if row.erased_at is not None:
                raise UsageError(f"identity {row.id} ({row.name}) was erased; it cannot get new references")
            points = {
                ref.embedding_space: self._operating_point(conn, ref.embedding_space) for ref in references
            }
            duplicate = self._nearest_enrolled(conn, references, points, exclude=row.id)
            existing = self._references(conn, row.id)
            if duplicate is None:
                _check_same_person([*existing, *references], points, row.name)
            if duplicate is not None:
                other_id, other_name, distance, space = duplicate
                refusal = ConsentRefused(
                    f"cannot add these references to {row.name!r}: they match enrolled identity "
                    f"{other_name!r} ({other_id}) at distance {distance:.3f} in {space} "
                    f"(threshold {points[space].threshold:.3f})",
                    hint="check the photos are of this person; if both enrolments are one person, erase one",
                    face=f"new reference faces of {row.name!r}",
                    identity_id=other_id,
                    rule="already_enrolled",
                )
                self._log_already_enrolled(
                    conn, operator, refusal, duplicate, points[space], for_identity_id=row.id
                )
            else:
                start = len(existing) + 1
                bound, owners = self._insert_references(conn, row.id, references, start=start, now=now_utc())
                self._log(
                    conn,
                    "references_added",
                    operator,
                    {
                        "identity_id": row.id,
                        "references": len(references),
                        "embedding_spaces": sorted({ref.embedding_space for ref in references}),
                        "photo_sha256": list(dict.fromkeys(ref.photo_sha256 for ref in references)),
                        "rows": {"face_references": bound},
                        "reference_of": owners,
                    },
                )
                identity = self._identity(conn, row)
        if refusal is not None:
            raise refusal
        return identity

    def _insert_references(
        self,
        conn: Connection,
        identity_id: str,
        references: Sequence[Reference],
        *,
        start: int,
        now: dt.datetime,
    ) -> tuple[dict[str, str], dict[str, list[str]]]:
        """Insert the rows; return (row id → content hash, row id → [identity id, space]) for the entry."""
        cipher = self.keys.cipher()
        bound: dict[str, str] = {}
        owners: dict[str, list[str]] = {}
        for position, ref in enumerate(references, start=start):
            vector = np.asarray(ref.embedding, dtype="<f4").ravel()
            ref_id = new_id("ref")
            bound[ref_id] = reference_hash(
                ref_id=ref_id,
                identity_id=identity_id,
                position=position,
                embedding_space=ref.embedding_space,
                photo_sha256=ref.photo_sha256,
                embedding=vector.tobytes(),
            )
            owners[ref_id] = [identity_id, ref.embedding_space]
            conn.execute(
                insert(schema.face_references).values(
                    id=ref_id,
                    identity_id=identity_id,
                    position=position,
                    embedding_space=ref.embedding_space,
                    photo_sha256=ref.photo_sha256,
                    embedding=cipher.encrypt(vector.tobytes()),
                    crop=cipher.encrypt(ref.crop_jpeg) if ref.crop_jpeg else None,
                    created_at=now,
                )
            )
        return bound, owners

    def _references(self, conn: Connection, identity_id: str) -> list[Reference]:
        """An identity's stored references, decrypted (every space, in order)."""
        refs = schema.face_references
        rows = conn.execute(
            select(refs).where(refs.c.identity_id == identity_id).order_by(refs.c.position, refs.c.id)
        ).all()
        cipher = self.keys.cipher()
        return [
            Reference(
                embedding=np.frombuffer(cipher.decrypt(r.embedding), dtype="<f4"),
                embedding_space=r.embedding_space,
                photo_sha256=r.photo_sha256,
                crop_jpeg=cipher.decrypt(r.crop) if r.crop is not None else None,
            )
            for r in rows
        ]

    def _nearest_enrolled(
        self,
        conn: Connection,
        references: Sequence[Reference],
        points: Mapping[str, OperatingPoint],
        *,
        exclude: str | None = None,
    ) -> tuple[str, str, float, str] | None:
        """The closest already-enrolled identity within the match threshold of any reference.

        Each reference is compared only with references of its own embedding space.
        """
        best: tuple[str, str, float, str] | None = None
        for space, point in points.items():
            for entry in self._gallery(conn, space):
                if entry.identity_id == exclude:
                    continue
                for ref in references:
                    if ref.embedding_space != space:
                        continue
                    distance = float(point.distances(ref.embedding, entry.embeddings).min())
                    if distance <= point.threshold and (best is None or distance < best[2]):
                        best = (entry.identity_id, entry.name, distance, space)
        return best

    def _identity_row(self, conn: Connection, id_or_name: str) -> Any:
        ids = schema.identities
        key = id_or_name.strip()
        where = (
            ids.c.id == key if key.startswith("idn_") else ids.c.name_key == " ".join(key.split()).casefold()
        )
        row = conn.execute(select(ids).where(where)).first()
        if row is None:
            raise UsageError(
                f"unknown identity {id_or_name!r}",
                hint="`likeness identity list` shows the enrolled identities",
            )
        return row

    def _identity(self, conn: Connection, row: Any) -> Identity:
        refs = schema.face_references
        stored = conn.execute(
            select(refs.c.embedding_space, refs.c.photo_sha256).where(refs.c.identity_id == row.id)
        ).all()
        per_space: dict[str, int] = {}
        for space, _ in stored:
            per_space[space] = per_space.get(space, 0) + 1
        return Identity(
            row.id,
            row.name,
            as_utc(row.created_at),
            len({photo for _, photo in stored}),
            tuple(sorted(per_space)),
            as_utc(row.erased_at),
            references_by_space=dict(sorted(per_space.items())),
            erase_reason=row.erase_reason,
        )

    def get_identity(self, id_or_name: str) -> Identity:
        with self._read() as conn:
            return self._identity(conn, self._identity_row(conn, id_or_name))

    def list_identities(self) -> list[Identity]:
        ids = schema.identities
        with self._read() as conn:
            rows = conn.execute(select(ids).order_by(ids.c.created_at, ids.c.id)).all()
            return [self._identity(conn, row) for row in rows]

    def reference_crops(self, identity_id: str) -> list[bytes]:
        """The stored JPEG face crops of an identity (decrypted), one per reference photo."""
        return [crop for _, crop in self.reference_photos(identity_id)]

    def reference_photos(self, identity_id: str) -> list[tuple[str, bytes]]:
        """(photo sha256, decrypted JPEG face crop) per reference photo, in enrolment order.

        A photo embedded in several spaces is stored once per space; it is listed once here.
        """
        refs = schema.face_references
        with self._read() as conn:
            row = self._identity_row(conn, identity_id)
            rows = conn.execute(
                select(refs.c.photo_sha256, refs.c.crop)
                .where(refs.c.identity_id == row.id, refs.c.crop.is_not(None))
                .order_by(refs.c.position, refs.c.id)
            ).all()
        cipher = self.keys.cipher()
        photos: dict[str, bytes] = {}
        for photo, token in rows:
            if photo not in photos:
                photos[photo] = cipher.decrypt(token)
        return list(photos.items())

    def erase(self, identity_id: str, *, reason: str, operator: str) -> Identity:
        """Delete a person's reference photos and embeddings, revoke their consents, leave a tombstone."""
        if not reason.strip():
            raise UsageError("erasure needs a reason", hint="e.g. --reason 'erasure request of 2025-03-01'")
        now = now_utc()
        with self._write() as conn:
            row = self._identity_row(conn, identity_id)
            if row.erased_at is not None:
                raise UsageError(f"identity {row.id} was already erased on {as_utc(row.erased_at):%Y-%m-%d}")
            refs = schema.face_references
            photos = (
                conn.execute(select(refs.c.photo_sha256).where(refs.c.identity_id == row.id)).scalars().all()
            )
            conn.execute(delete(refs).where(refs.c.identity_id == row.id))
            table = schema.consents
            revoked = (
                conn.execute(
                    select(table.c.id).where(table.c.identity_id == row.id, table.c.revoked_at.is_(None))
                )
                .scalars()
                .all()
            )
            conn.execute(
                update(table)
                .where(table.c.id.in_(revoked))
                .values(
                    revoked_at=now, revoked_by=operator, revoke_reason=f"identity erased: {reason.strip()}"
                )
            )
            conn.execute(
                update(schema.identities)
                .where(schema.identities.c.id == row.id)
                .values(erased_at=now, erased_by=operator, erase_reason=reason.strip(), name_key=None)
            )
            self._log(
                conn,
                "erasure",
                operator,
                {
                    "identity_id": row.id,
                    "references_deleted": len(photos),
                    "photo_sha256": list(photos),
                    "consents_revoked": list(revoked),
                    "reason": reason.strip(),
                },
            )
        self._checkpoint_wal()  # move the overwritten pages out of the WAL file too
        return self.get_identity(row.id)


def _check_same_person(
    references: Sequence[Reference], points: Mapping[str, OperatingPoint], name: str
) -> None:
    """Each reference must lie within ``same_person_max`` of another one of the same space."""
    for space, point in points.items():
        indexed = [(n, ref) for n, ref in enumerate(references, start=1) if ref.embedding_space == space]
        if len(indexed) < 2:
            continue
        matrix = np.stack([np.asarray(ref.embedding, dtype=np.float64).ravel() for _, ref in indexed])
        for row, (number, ref) in enumerate(indexed):
            others = np.delete(matrix, row, axis=0)
            nearest = float(point.distances(ref.embedding, others).min())
            if nearest > point.same_person_max:
                raise UsageError(
                    f"reference photo {number} for {name!r} does not look like the others "
                    f"(nearest distance {nearest:.3f} > {point.same_person_max:.2f}): "
                    "are these photos of one person?",
                    hint="enrol with photos of this one person only",
                )
