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

from likeness.consent.coverage import ConsentFit, consent_fit
from likeness.consent.gate import identify
from likeness.consent.registry import Registry
from likeness.faces.types import Analyzer, Face


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
