"""Who each face in a picture is, and whether a consent would cover it — before any job runs.

``likeness faces TARGET --purpose P`` uses this so a user learns which face the gate would refuse
*before* the swap. It reads the registry only: nothing is logged, nothing is decided; the gate
still decides at the moment of the job (its answer wins where they could differ, e.g. a consent
revoked in between).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from likeness.consent.gate import identify
from likeness.consent.records import ConsentRecord
from likeness.consent.registry import Registry
from likeness.faces.types import Analyzer, Face


@dataclass(frozen=True)
class ConsentFit:
    """One consent of the person, and why it does or does not cover the job."""

    consent_id: str
    covers: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"consent_id": self.consent_id, "covers": self.covers, "why": self.why}


@dataclass(frozen=True)
class FaceWho:
    index: int
    face: Face = field(repr=False)
    outcome: str
    """``match``, ``not_enrolled`` or ``ambiguous`` (the gate's identification rule)."""
    identity_id: str | None = None
    name: str | None = None
    distance: float | None = None
    consents: tuple[ConsentFit, ...] = ()
    asked: bool = False
    """Whether a purpose was given (else consents are not looked at)."""

    @property
    def covered(self) -> bool | None:
        """Whether some consent covers the asked role/purpose/media (``None``: nothing was asked)."""
        if not self.asked:
            return None
        return self.outcome == "match" and any(c.covers for c in self.consents)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "box": list(self.face.box),
            "size_px": self.face.size,
            "identified": self.outcome,
            "identity_id": self.identity_id,
            "name": self.name,
            "distance": None if self.distance is None else round(self.distance, 4),
            "covered": self.covered,
            "consents": [c.to_dict() for c in self.consents],
        }


def consent_fit(
    record: ConsentRecord, *, purpose: str, role: str, media_kind: str, today: dt.date
) -> ConsentFit:
    """Whether ``record`` covers this use, and in words why not."""
    status = record.status(today)
    problems = []
    if status != "active":
        problems.append(
            {
                "revoked": f"withdrawn on {record.revoked_at:%Y-%m-%d}" if record.revoked_at else "withdrawn",
                "expired": f"expired on {record.valid_until.isoformat()}",
                "not_yet_valid": f"valid only from {record.valid_from.isoformat()}",
            }.get(status, status)
        )
    if purpose not in record.purposes:
        problems.append(f"purpose {purpose} not covered (only {', '.join(record.purposes)})")
    if role not in record.roles:
        problems.append(f"allows their face only as {' or '.join(record.roles)}, not as {role}")
    if media_kind not in record.media:
        problems.append(f"covers {', '.join(record.media)} only, not {media_kind}")
    if problems:
        return ConsentFit(record.id, False, "; ".join(problems))
    until = record.valid_until.isoformat()
    return ConsentFit(record.id, True, f"covers {role} for {purpose} ({media_kind}) until {until}")


def who_is(
    faces: Sequence[Face],
    registry: Registry,
    analyzer: Analyzer,
    *,
    purpose: str | None = None,
    role: str = "target",
    media_kind: str = "image",
) -> list[FaceWho]:
    """Each face's identity under the gate's rule; with ``purpose``, every consent of that person
    and whether it covers ``role`` for ``purpose`` and ``media_kind``."""
    point = registry.operating_point(analyzer.embedding_space)
    gallery = registry.gallery(analyzer.embedding_space)
    today = registry.policy.today(dt.datetime.now(dt.UTC))
    found: list[FaceWho] = []
    for index, face in enumerate(faces):
        match = identify(face.embedding, gallery, point)
        if match.outcome != "match" or match.best is None:
            found.append(
                FaceWho(index, face, match.outcome, distance=match.distance, asked=purpose is not None)
            )
            continue
        fits: tuple[ConsentFit, ...] = ()
        if purpose is not None:
            fits = tuple(
                consent_fit(record, purpose=purpose, role=role, media_kind=media_kind, today=today)
                for record in registry.list_consents(match.best.identity_id)
            )
        found.append(
            FaceWho(
                index,
                face,
                "match",
                match.best.identity_id,
                match.best.name,
                match.distance,
                fits,
                asked=purpose is not None,
            )
        )
    return found
