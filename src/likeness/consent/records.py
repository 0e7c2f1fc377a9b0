"""What the registry holds: identities, their reference faces, consent records, outputs; and the
gate's decision types (the faces a job involves, who they matched, the decision that travels with
the job into the output's ledger entry), which the registry records with each output."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from likeness.faces.types import Face
from likeness.media.image import Picture

CROP_MARGIN = 0.5
"""Context kept around the face box on each side, as a fraction of the box size."""
CROP_MAX_SIDE = 400
"""Longest side of a stored face crop, in pixels: enough for another backend to re-detect and re-embed."""


def face_crop_jpeg(picture: Picture, box: tuple[int, int, int, int]) -> bytes:
    """The face with some context, at most CROP_MAX_SIDE px, re-encoded without metadata."""
    from PIL import Image

    left, top, right, bottom = box
    pad_x, pad_y = int((right - left) * CROP_MARGIN), int((bottom - top) * CROP_MARGIN)
    crop = picture.pixels[
        max(0, top - pad_y) : min(picture.height, bottom + pad_y),
        max(0, left - pad_x) : min(picture.width, right + pad_x),
    ]
    image = Image.fromarray(crop)
    image.thumbnail((CROP_MAX_SIDE, CROP_MAX_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


@dataclass(frozen=True)
class Reference:
    """One reference face of a person being enrolled.

    ``crop_jpeg`` is a downscaled crop around the face (not the whole photo, no metadata), kept so
    another backend can re-embed the person later without asking for the photos again.
    """

    embedding: np.ndarray = field(repr=False)
    embedding_space: str
    photo_sha256: str
    crop_jpeg: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_face(cls, face: Face, picture: Picture) -> Reference:
        return cls(
            embedding=np.asarray(face.embedding, dtype=np.float32).ravel(),
            embedding_space=face.embedding_space,
            photo_sha256=picture.sha256,
            crop_jpeg=face_crop_jpeg(picture, face.box),
        )


@dataclass(frozen=True)
class Identity:
    """An enrolled person. ``reference_count`` counts reference photos; a photo embedded in several
    spaces (dlib and insightface, say) counts once, ``references_by_space`` counts per space."""

    id: str
    name: str
    created: dt.datetime
    reference_count: int
    embedding_spaces: tuple[str, ...] = ()
    erased_at: dt.datetime | None = None
    references_by_space: dict[str, int] = field(default_factory=dict)
    erase_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created": self.created.isoformat(),
            "reference_count": self.reference_count,
            "embedding_spaces": list(self.embedding_spaces),
            "references_by_space": dict(self.references_by_space),
            "erased_at": self.erased_at.isoformat() if self.erased_at else None,
            "erase_reason": self.erase_reason,
        }


ConsentStatus = str
"""``active``, ``revoked``, ``expired`` or ``not_yet_valid``."""


@dataclass(frozen=True)
class ConsentRecord:
    """A consent as recorded (fields mirror consent/consent_record.schema.json)."""

    id: str
    identity_id: str
    purposes: tuple[str, ...]
    roles: tuple[str, ...]
    media: tuple[str, ...]
    uses: str
    valid_from: dt.date
    valid_until: dt.date
    capacity: str
    grantor: str
    created_at: dt.datetime
    created_by: str
    policy_sha256: str
    basis: str | None = None
    date_of_birth: dt.date | None = None
    date_of_death: dt.date | None = None
    jurisdiction: str | None = None
    project: str | None = None
    compensation: str | None = None
    representation: str | None = None
    evidence_sha256: str | None = None
    evidence_name: str | None = None
    takedown_contact: str | None = None
    revoked_at: dt.datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None
    ledger_seq: int | None = None
    """The grant's ledger entry, which signs ``terms_sha256()``."""

    def status(self, today: dt.date) -> ConsentStatus:
        if self.revoked_at is not None:
            return "revoked"
        if today < self.valid_from:
            return "not_yet_valid"
        if today > self.valid_until:
            return "expired"
        return "active"

    def terms_dict(self) -> dict[str, Any]:
        """The granted terms (everything but revocation), as hashed into the grant's ledger entry."""
        data: dict[str, Any] = {}
        for name in (
            "id",
            "identity_id",
            "purposes",
            "roles",
            "media",
            "uses",
            "valid_from",
            "valid_until",
            "capacity",
            "grantor",
            "basis",
            "date_of_birth",
            "date_of_death",
            "jurisdiction",
            "project",
            "compensation",
            "representation",
            "evidence_sha256",
            "evidence_name",
            "takedown_contact",
            "policy_sha256",
            "created_at",
            "created_by",
        ):
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, (dt.date, dt.datetime)):
                value = value.isoformat()
            data[name] = value
        return data

    def terms_sha256(self) -> str:
        from likeness.ledger import canonical_json

        return hashlib.sha256(canonical_json(self.terms_dict()).encode("utf-8")).hexdigest()

    def to_dict(self, today: dt.date | None = None) -> dict[str, Any]:
        """Every field, plus ``status`` on ``today`` (default: the current UTC date)."""
        data = self.terms_dict()
        data["revoked_at"] = self.revoked_at.isoformat() if self.revoked_at else None
        data["revoked_by"] = self.revoked_by
        data["revoke_reason"] = self.revoke_reason
        data["ledger_seq"] = self.ledger_seq
        data["status"] = self.status(today or dt.datetime.now(dt.UTC).date())
        return data


@dataclass(frozen=True)
class OutputRecord:
    """A recorded output: what was made, under which consents, from which inputs (by hash)."""

    output_id: str
    sha256: str
    phash: str | None
    media_type: str
    kind: str
    purpose: str
    consent_ids: tuple[str, ...]
    operator: str
    created_at: dt.datetime
    embedding_space: str
    threshold: float
    path: str | None
    ledger_seq: int
    ingredient_sha256: dict[str, str] = field(default_factory=dict, hash=False)
    """Role (``source``, ``target`` …) → sha256 of the unmodified file the user supplied; ``{}``
    when unknown (recorded before schema version 2, or by a writer that did not pass them)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "output_id": self.output_id,
            "sha256": self.sha256,
            "phash": self.phash,
            "media_type": self.media_type,
            "kind": self.kind,
            "purpose": self.purpose,
            "consent_ids": list(self.consent_ids),
            "operator": self.operator,
            "created_at": self.created_at.isoformat(),
            "embedding_space": self.embedding_space,
            "threshold": self.threshold,
            "path": self.path,
            "ledger_seq": self.ledger_seq,
            "ingredient_sha256": dict(self.ingredient_sha256),
        }


@dataclass(frozen=True)
class OperatingPoint:
    """How faces of one embedding space are matched: from a stored calibration, else the policy."""

    embedding_space: str
    metric: str
    threshold: float
    margin: float
    same_person_max: float
    source: str
    """``policy`` or ``calibration <id>``."""

    def distances(self, probe: np.ndarray, references: np.ndarray) -> np.ndarray:
        """Distances from ``probe`` (D,) to each row of ``references`` (N, D)."""
        probe = np.asarray(probe, dtype=np.float64).ravel()
        refs = np.asarray(references, dtype=np.float64).reshape(-1, probe.size)
        if self.metric == "euclidean":
            return np.linalg.norm(refs - probe, axis=1)
        norms = np.linalg.norm(refs, axis=1) * np.linalg.norm(probe)
        return 1.0 - (refs @ probe) / np.maximum(norms, 1e-12)


@dataclass(frozen=True)
class GalleryIdentity:
    """An enrolled identity's reference embeddings in one embedding space."""

    identity_id: str
    name: str
    embeddings: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Identification:
    """Who a face is under the gate's rules, before any consent is looked at.

    ``outcome``: ``match`` (nearest identity within the threshold; any runner-up beyond the
    threshold and at least ``margin`` farther), ``not_enrolled`` or ``ambiguous``.
    """

    outcome: str
    best: GalleryIdentity | None = None
    distance: float | None = None
    runner_up: GalleryIdentity | None = None
    runner_up_distance: float | None = None
    compared: int = 0


@dataclass(frozen=True)
class Involvement:
    """A face the job uses: ``role`` is ``source`` (likeness used) or ``target`` (face replaced)."""

    face: Face
    role: str
    label: str
    """Names the face for people, e.g. 'target face #1 in set.jpg'."""


@dataclass(frozen=True)
class Match:
    label: str
    role: str
    identity_id: str
    identity_name: str
    consent_id: str
    distance: float
    runner_up_distance: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "role": self.role,
            "identity_id": self.identity_id,
            "identity_name": self.identity_name,
            "consent_id": self.consent_id,
            "distance": round(self.distance, 6),
            "runner_up_distance": None
            if self.runner_up_distance is None
            else round(self.runner_up_distance, 6),
        }


@dataclass(frozen=True)
class GateDecision:
    """Every involved face matched and covered, and how that was decided."""

    matches: list[Match]
    embedding_space: str
    threshold: float
    model: dict[str, str]
    checked_at: dt.datetime
    purpose: str = ""
    media_kind: str = ""
    margin: float = 0.0
    threshold_source: str = "policy"
    metric: str = "euclidean"

    @property
    def consent_ids(self) -> list[str]:
        return list(dict.fromkeys(match.consent_id for match in self.matches))

    def ledger_dict(self) -> dict[str, Any]:
        """The checks as they go into the output's ledger entry (ids and numbers, no names)."""
        return {
            "checked_at": self.checked_at.isoformat(),
            "media_kind": self.media_kind,
            "embedding_space": self.embedding_space,
            "metric": self.metric,
            "threshold": self.threshold,
            "margin": self.margin,
            "threshold_source": self.threshold_source,
            "model": dict(self.model),
            "checks": [
                {key: value for key, value in match.to_dict().items() if key != "identity_name"}
                for match in self.matches
            ],
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.ledger_dict(), "purpose": self.purpose, "matches": [m.to_dict() for m in self.matches]}
