"""The consent gate: every face a job involves must be an enrolled person who consented to this use.

For each involved face: find the enrolled identity it matches (nearest reference within the
threshold of the analyzer's embedding space, the runner-up identity beyond the threshold and
farther by the margin), then find a consent of that identity that is in force now and covers
this purpose, media kind and role. Anything else raises :class:`ConsentRefused` naming the face,
the identity and the rule:

    not_enrolled · ambiguous · no_consent · wrong_purpose · wrong_media · wrong_role
    · revoked · not_yet_valid · expired · tampered

``tampered`` means a fact the decision uses is not what the signed ledger says (the database was
edited outside likeness): the operating point, a reference or identity row of the matched
identity or the runner-up, a consent's terms, a revocation (deleted, edited or cut off the end of
the ledger, which the walk and the head file show), or the chain itself. The gate reads only
signed facts: the operating point and the gallery come from ``Registry.gate_snapshot`` (built
from rows checked against their entries), and the rows of the identities it picked are re-read
and checked again at the moment it decides (``Registry.check_identities_used``). The refusal's
reason starts with "registry tampered:" and names the row and the entry.

When an identity has consents but none fits, the rule reported is that of the consent that came
closest (checks run in the order purpose, media, role, revoked, not yet valid, expired), so a
revoked film consent reads "revoked", not "wrong_purpose" because of an unrelated one.

Every refusal is committed to the ledger before it is raised; a passing decision travels with
the job and goes into the output's ledger entry (``Registry.record_output``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from likeness.consent.coverage import consent_fit
from likeness.consent.gallery_index import GalleryIndex
from likeness.consent.records import (
    ConsentRecord,
    GalleryIdentity,
    GateDecision,
    Identification,
    Involvement,
    Match,
    OperatingPoint,
)
from likeness.consent.registry import Registry
from likeness.errors import ConsentRefused, RegistryTampered, UsageError
from likeness.faces.types import Analyzer

__all__ = [
    "RULES",
    "GateDecision",
    "Identification",
    "Involvement",
    "Match",
    "backend_for_space",
    "check_consent",
    "decide",
    "identify",
    "rank_gallery",
]

RULES = (
    "not_enrolled",
    "ambiguous",
    "no_consent",
    "wrong_purpose",
    "wrong_media",
    "wrong_role",
    "revoked",
    "not_yet_valid",
    "expired",
    "tampered",
)
_CONSENT_CHECKS = ("wrong_purpose", "wrong_media", "wrong_role", "revoked", "not_yet_valid", "expired")


@dataclass
class _Verdict:
    match: Match | None = None
    refusal: ConsentRefused | None = None
    details: dict[str, Any] = field(default_factory=dict)


def check_consent(
    registry: Registry,
    involved: Sequence[Involvement],
    *,
    purpose: str,
    media_kind: str,
    analyzer: Analyzer,
    operator: str,
    at: dt.datetime | None = None,
) -> GateDecision:
    """Match every involved face to a consenting identity, or raise ConsentRefused (logged)."""
    if not involved:
        raise UsageError("the consent gate was given no faces to check")
    policy = registry.policy
    policy.require_known("purposes", [purpose])
    policy.require_known("media", [media_kind])
    policy.require_known("roles", [inv.role for inv in involved])
    checked_at = at or dt.datetime.now(dt.UTC)
    space = analyzer.embedding_space
    model = dict(analyzer.describe())
    try:
        snapshot = registry.gate_snapshot(space)
    except RegistryTampered as refusal:
        refusal.face = involved[0].label
        _log_refusal(registry, refusal, {"purpose": purpose, "embedding_space": space}, operator)
        raise
    point, gallery = snapshot.point, snapshot.gallery
    context = {
        "purpose": purpose,
        "media_kind": media_kind,
        "embedding_space": space,
        "metric": point.metric,
        "threshold": point.threshold,
        "margin": point.margin,
        "threshold_source": point.source,
        "model": model,
    }
    matches: list[Match] = []
    for inv in involved:
        if inv.face.embedding_space != space:
            raise UsageError(
                f"{inv.label}: its embedding is in {inv.face.embedding_space!r}, the analyzer's in {space!r}"
            )
        try:
            verdict = _check_one(registry, inv, gallery, point, purpose, media_kind, policy.today(checked_at))
        except RegistryTampered as refusal:
            refusal.face = inv.label
            verdict = _Verdict(refusal=refusal)
        if verdict.refusal is not None:
            details = {**context, "role": inv.role, **verdict.details}
            _log_refusal(registry, verdict.refusal, details, operator)
            raise verdict.refusal
        assert verdict.match is not None
        matches.append(verdict.match)
    return GateDecision(
        matches=matches,
        embedding_space=space,
        threshold=point.threshold,
        model=model,
        checked_at=checked_at,
        purpose=purpose,
        media_kind=media_kind,
        margin=point.margin,
        threshold_source=point.source,
        metric=point.metric,
    )


def _log_refusal(registry: Registry, refusal: ConsentRefused, details: dict[str, Any], operator: str) -> None:
    """Commit the refusal's ledger entry. On a tampered registry this may fail too; the refusal stands."""
    try:
        registry.log_refusal(refusal, details, operator=operator)
    except RegistryTampered:
        if refusal.rule != "tampered":
            raise


def rank_gallery(
    embedding: np.ndarray, gallery: Sequence[GalleryIdentity], point: OperatingPoint
) -> list[tuple[float, GalleryIdentity]]:
    """Each identity's nearest reference distance to ``embedding``, nearest identity first."""
    ranked = [(float(point.distances(embedding, entry.embeddings).min()), entry) for entry in gallery]
    return sorted(ranked, key=lambda pair: pair[0])


def decide(ranked: Sequence[tuple[float, GalleryIdentity]], point: OperatingPoint) -> Identification:
    """The gate's identification rule (threshold + runner-up margin) applied to a ranked gallery."""
    if not ranked:
        return Identification("not_enrolled")
    distance, best = ranked[0]
    runner_up, other = ranked[1] if len(ranked) > 1 else (None, None)
    found = {
        "best": best,
        "distance": distance,
        "runner_up": other,
        "runner_up_distance": runner_up,
        "compared": len(ranked),
    }
    if distance > point.threshold:
        return Identification("not_enrolled", **found)
    if runner_up is None or (runner_up > point.threshold and runner_up - distance >= point.margin):
        return Identification("match", **found)
    return Identification("ambiguous", **found)


def identify(
    embedding: np.ndarray, gallery: Sequence[GalleryIdentity], point: OperatingPoint
) -> Identification:
    """Who ``embedding`` is among ``gallery`` (one embedding space) under ``point``."""
    return decide(rank_gallery(embedding, gallery, point), point)


def _identify(
    registry: Registry, inv: Involvement, gallery: GalleryIndex, point: OperatingPoint
) -> tuple[GalleryIdentity, float, float | None] | _Verdict:
    """The one identity this face matches (with its distance and the runner-up's), or a refusal.

    A match is confirmed against the database at this moment: the matched identity's and the
    runner-up's rows must still be the ones their signed entries bind (else RegistryTampered).
    """
    found = replace(decide(gallery.rank_top(inv.face.embedding, point), point), compared=len(gallery))
    if found.outcome == "not_enrolled":
        return _not_enrolled(registry, inv, found, point)
    assert found.best is not None and found.distance is not None
    if found.outcome == "match":
        runner_up = found.runner_up.identity_id if found.runner_up is not None else None
        registry.check_identities_used(point.embedding_space, [found.best.identity_id, runner_up])
        return found.best, found.distance, found.runner_up_distance
    best, distance = found.best, found.distance
    other, runner_up = found.runner_up, found.runner_up_distance
    assert other is not None and runner_up is not None
    refusal = ConsentRefused(
        f"{inv.label} matches more than one enrolled identity: {best.name!r} ({best.identity_id}, "
        f"distance {distance:.3f}) and {other.name!r} ({other.identity_id}, distance {runner_up:.3f}); "
        f"a match needs the runner-up beyond {point.threshold:.3f} and {point.margin:.2f} farther",
        hint="use a clearer, frontal photo; if both enrolments are the same person, erase one",
        face=inv.label,
        identity_id=best.identity_id,
        rule="ambiguous",
    )
    details = {
        "distance": round(distance, 6),
        "runner_up_distance": round(runner_up, 6),
        "runner_up_identity_id": other.identity_id,
    }
    return _Verdict(refusal=refusal, details=details)


def _check_one(
    registry: Registry,
    inv: Involvement,
    gallery: GalleryIndex,
    point: OperatingPoint,
    purpose: str,
    media_kind: str,
    today: dt.date,
) -> _Verdict:
    """Who this face is (``_identify``), then which of their consents covers the job."""
    identified = _identify(registry, inv, gallery, point)
    if isinstance(identified, _Verdict):
        return identified
    best, distance, runner_up = identified
    details: dict[str, Any] = {
        "distance": round(distance, 6),
        "runner_up_distance": None if runner_up is None else round(runner_up, 6),
    }
    who = f"{inv.label} is {best.name!r} ({best.identity_id}, distance {distance:.3f})"
    attested = registry.attested_consents(best.identity_id)
    tampered = [(record, problem) for record, problem in attested if problem is not None]
    if tampered:
        record, problem = tampered[0]
        refusal = ConsentRefused(
            f"{who}; consent record {record.id} does not match the signed ledger ({problem}): "
            "the registry was changed outside likeness",
            hint="run `likeness audit verify`, and restore the registry from a backup",
            face=inv.label,
            identity_id=best.identity_id,
            rule="tampered",
        )
        return _Verdict(refusal=refusal, details={**details, "consent_id": record.id})
    consents = [record for record, _ in attested]
    if not consents:
        refusal = ConsentRefused(
            f"{who}, who has no consent on record",
            hint=f"record their consent first: likeness consent grant {best.identity_id} --purpose {purpose} "
            f"--role {inv.role} --media {media_kind} --until YYYY-MM-DD --uses '...'",
            face=inv.label,
            identity_id=best.identity_id,
            rule="no_consent",
        )
        return _Verdict(refusal=refusal, details=details)

    def progress(record: ConsentRecord) -> tuple[int, dt.datetime]:
        failures = (
            purpose not in record.purposes,
            media_kind not in record.media,
            inv.role not in record.roles,
            record.revoked_at is not None,
            today < record.valid_from,
            today > record.valid_until,
        )
        passed = next((n for n, failed in enumerate(failures) if failed), len(failures))
        return passed, record.created_at

    closest = max(consents, key=progress)
    passed = progress(closest)[0]
    if passed == len(_CONSENT_CHECKS):
        match = Match(inv.label, inv.role, best.identity_id, best.name, closest.id, distance, runner_up)
        return _Verdict(match=match, details=details)
    rule = _CONSENT_CHECKS[passed]
    reason, hint = _explain(rule, who, closest, consents, purpose, media_kind, inv.role, today)
    if len(consents) > 1:  # name every consent considered, and why each does not cover the job
        fits = [
            consent_fit(record, purpose=purpose, role=inv.role, media_kind=media_kind, today=today)
            for record in consents
        ]
        reason += "; every consent considered: " + "; ".join(f"{fit.consent_id}: {fit.why}" for fit in fits)
    refusal = ConsentRefused(reason, hint=hint, face=inv.label, identity_id=best.identity_id, rule=rule)
    return _Verdict(refusal=refusal, details={**details, "consent_id": closest.id})


def backend_for_space(space: str) -> str:
    """The ``--backend`` name that computes embeddings in ``space`` (best effort, for hints)."""
    if space.startswith("dlib_"):
        return "dlib"
    if space.startswith("arcface_"):
        return "insightface"
    return space


def _not_enrolled(
    registry: Registry, inv: Involvement, found: Identification, point: OperatingPoint
) -> _Verdict:
    space = point.embedding_space
    lacking = [
        person
        for person in registry.list_identities()
        if person.erased_at is None and space not in person.embedding_spaces
    ]
    if found.best is not None and found.distance is not None:
        reason = (
            f"{inv.label}: no enrolled identity matches this face (the nearest is at distance "
            f"{found.distance:.3f}, above the threshold {point.threshold:.3f} for {space})"
        )
    else:
        reason = f"{inv.label}: no enrolled identity matches this face (no one is enrolled for {space})"
    if lacking:
        names = ", ".join(f"{p.name!r} ({p.id})" for p in lacking[:3])
        more = f" and {len(lacking) - 3} more" if len(lacking) > 3 else ""
        spaces = sorted({s for p in lacking for s in p.embedding_spaces})
        noun = "identity is" if len(lacking) == 1 else "identities are"
        reason += (
            f"; {len(lacking)} {noun} enrolled only with {', '.join(spaces)} and could not be compared: "
            f"{names}{more}"
        )
        backend = backend_for_space(space)
        others = " or ".join(f"--backend {backend_for_space(s)}" for s in spaces)
        hint = (
            f"re-enrol them for this backend: `likeness identity reembed IDENTITY --backend {backend}` "
            f"(uses their stored reference crops), or run the job with {others}"
        )
    else:
        hint = "enrol the person (likeness identity add NAME --photo P) and record their consent"
    details = {
        "distance": None if found.distance is None else round(found.distance, 6),
        "identities_compared": found.compared,
        "identities_without_space": [p.id for p in lacking],
    }
    return _Verdict(
        refusal=ConsentRefused(reason, hint=hint, face=inv.label, identity_id=None, rule="not_enrolled"),
        details=details,
    )


def _explain(
    rule: str,
    who: str,
    record: ConsentRecord,
    consents: list[ConsentRecord],
    purpose: str,
    media_kind: str,
    role: str,
    today: dt.date,
) -> tuple[str, str]:
    renew = f"record a new consent: likeness consent grant {record.identity_id} ..."
    if rule == "wrong_purpose":
        active = [c for c in consents if c.status(today) == "active"]
        covered = sorted({p for c in (active or consents) for p in c.purposes})
        scope = "their active consents cover" if active else "their consents (none in force) covered"
        return (
            f"{who}; no consent covers purpose {purpose!r}: {scope} {', '.join(covered)}",
            f"run the job for a covered purpose, or {renew} with --purpose {purpose}",
        )
    if rule == "wrong_media":
        return (
            f"{who}; consent {record.id} covers {', '.join(record.media)} only, not {media_kind}",
            f"{renew} with --media {media_kind}",
        )
    if rule == "wrong_role":
        allowed = " or ".join(record.roles)
        return (
            f"{who}; consent {record.id} allows their face only as {allowed}, not as {role}",
            f"{renew} with --role {role}",
        )
    if rule == "revoked":
        why = f": {record.revoke_reason}" if record.revoke_reason else ""
        when = f"{record.revoked_at:%Y-%m-%d}" if record.revoked_at else "?"
        return (
            f"{who}; consent {record.id} was revoked on {when}{why}",
            "a revoked consent cannot be used; only the person (or their representative) can grant a new one",
        )
    if rule == "not_yet_valid":
        return (
            f"{who}; consent {record.id} is valid only from {record.valid_from}",
            "wait, or record a new consent",
        )
    return (f"{who}; consent {record.id} expired on {record.valid_until}", f"ask for a renewal and {renew}")
