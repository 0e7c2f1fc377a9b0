"""Content hashes that bind registry rows to the signed ledger entries that recorded them.

Each hash covers what a decision reads from a row: who an identity is (id, name); what a
reference face is (its id, identity, position, embedding space, photo hash and the sha256 of the
plain embedding bytes — not the Fernet token, so a data-key rotation changes nothing); what an
operating point is (id, space, metric, threshold, margin, same-person bound). Consents are bound
by their existing ``terms_sha256``. The ledger entry that writes a row carries its hash under
``rows`` (table → row id → hash); references also carry ``reference_of`` (row id → [identity id,
embedding space]) so the ledger alone says which references each identity has in each space.

A leaf module: hashing only, no database access.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from likeness.ledger import canonical_json

CALIBRATION_FIELDS = ("id", "embedding_space", "metric", "threshold", "margin", "same_person_max")


def _digest(value: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(dict(value)).encode("utf-8")).hexdigest()


def identity_hash(identity_id: str, name: str) -> str:
    return _digest({"id": identity_id, "name": name})


def reference_hash(
    *,
    ref_id: str,
    identity_id: str,
    position: int,
    embedding_space: str,
    photo_sha256: str,
    embedding: bytes,
) -> str:
    """``embedding``: the plain little-endian float32 bytes (decrypted)."""
    return _digest(
        {
            "id": ref_id,
            "identity_id": identity_id,
            "position": int(position),
            "embedding_space": embedding_space,
            "photo_sha256": photo_sha256,
            "embedding_sha256": hashlib.sha256(embedding).hexdigest(),
        }
    )


def reference_row_hash(row: Any, plain_embedding: bytes) -> str:
    """``reference_hash`` of a ``face_references`` row, given its decrypted embedding."""
    return reference_hash(
        ref_id=row.id,
        identity_id=row.identity_id,
        position=row.position,
        embedding_space=row.embedding_space,
        photo_sha256=row.photo_sha256,
        embedding=plain_embedding,
    )


def calibration_hash(values: Mapping[str, Any]) -> str:
    """Of a calibrations row or of a calibration entry's payload (the same fields)."""
    return _digest(
        {
            name: float(values[name]) if name in ("threshold", "margin", "same_person_max") else values[name]
            for name in CALIBRATION_FIELDS
        }
    )


def record_hash(record: Mapping[str, Any]) -> str:
    """Of a plain-JSON record kept outside the database (a licence record's ``to_dict()``)."""
    return _digest(record)
