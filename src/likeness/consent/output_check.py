"""The gate on a generated output: every face the model made is matched against the whole registry.

A generated face that matches nobody is **synthetic** and recorded as such; a face that matches an
enrolled identity needs that person's in-force consent to be generated (role ``generate``) for this
purpose and media, checked by the same gate as every other face (:func:`check_consent`, which logs
every refusal); an ambiguous face is refused as anywhere else. The ledger entry of the output says that
the check ran, with which model, embedding space and threshold, how many faces it saw and what each was.

Identities enrolled only in other embedding spaces cannot be compared with this analyzer: the check
lists them (``identities_not_compared``) so the record never claims more than was checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from likeness.consent.gate import GateDecision, Involvement, Match, check_consent, identify
from likeness.consent.registry import Registry
from likeness.faces.types import Analyzer, Face

GENERATE_ROLE = "generate"


@dataclass(frozen=True)
class OutputFace:
    """One face found in a generated output and what the check made of it."""

    label: str
    box: tuple[int, int, int, int]
    outcome: str
    """``synthetic`` (matches no enrolled identity) or ``consented`` (matches one who consented)."""
    nearest_distance: float | None = None
    match: Match | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "box": list(self.box),
            "outcome": self.outcome,
            "nearest_distance": None if self.nearest_distance is None else round(self.nearest_distance, 6),
            "match": None if self.match is None else self.match.to_dict(),
        }


@dataclass(frozen=True)
class OutputCheck:
    faces: list[OutputFace]
    facts: dict[str, Any]
    """What the ledger states: ran, model, space, metric, threshold, counts, each face (no names)."""

    @property
    def matches(self) -> list[Match]:
        return [face.match for face in self.faces if face.match is not None]


@dataclass(frozen=True)
class GenerationDecision(GateDecision):
    """The gate's decision for a generation job: the inputs' matches plus the output check's."""

    output_check: dict[str, Any] = field(default_factory=dict)

    def ledger_dict(self) -> dict[str, Any]:
        return {**super().ledger_dict(), "output_check": dict(self.output_check)}


def check_output(
    registry: Registry,
    faces: Sequence[tuple[str, Face]],
    *,
    purpose: str,
    media_kind: str,
    analyzer: Analyzer,
    operator: str,
) -> OutputCheck:
    """Check each ``(label, face)`` of a generated output; :class:`ConsentRefused` for a face of an
    enrolled person without a covering consent (logged by the gate)."""
    space = analyzer.embedding_space
    point = registry.operating_point(space)
    gallery = registry.gallery(space)
    compared = {entry.identity_id for entry in gallery}
    not_compared = sorted(
        person.id
        for person in registry.list_identities()
        if person.erased_at is None and person.id not in compared
    )
    checked: list[OutputFace] = []
    for label, face in faces:
        found = identify(face.embedding, gallery, point)
        if found.outcome == "not_enrolled":
            checked.append(OutputFace(label, face.box, "synthetic", found.distance))
            continue
        # A match or an ambiguous match: the gate decides (and logs a refusal) as for any face.
        decision = check_consent(
            registry,
            [Involvement(face=face, role=GENERATE_ROLE, label=label)],
            purpose=purpose,
            media_kind=media_kind,
            analyzer=analyzer,
            operator=operator,
        )
        match = decision.matches[0]
        checked.append(OutputFace(label, face.box, "consented", match.distance, match))
    facts = {
        "ran": True,
        "model": dict(analyzer.describe()),
        "embedding_space": space,
        "metric": point.metric,
        "threshold": point.threshold,
        "margin": point.margin,
        "threshold_source": point.source,
        "identities_compared": len(compared),
        "identities_not_compared": not_compared,
        "faces": len(checked),
        "synthetic": sum(1 for face in checked if face.outcome == "synthetic"),
        "consented": sum(1 for face in checked if face.outcome == "consented"),
        "checks": [
            {
                "label": face.label,
                "outcome": face.outcome,
                "nearest_distance": None
                if face.nearest_distance is None
                else round(face.nearest_distance, 6),
                "identity_id": face.match.identity_id if face.match else None,
                "consent_id": face.match.consent_id if face.match else None,
            }
            for face in checked
        ],
    }
    return OutputCheck(checked, facts)
