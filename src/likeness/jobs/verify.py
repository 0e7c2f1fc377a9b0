"""``likeness verify``: read a file's disclosure and find it in this installation's ledger."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from likeness.consent.registry import Registry
from likeness.disclosure.phash import MAX_DISTANCE as PHASH_MAX_DISTANCE
from likeness.disclosure.read import ingredient_role, ledger_matches_by_phash, read_file
from likeness.errors import LikenessError
from likeness.home import Home
from likeness.jobs.verdict import VerifyReport

if TYPE_CHECKING:
    from likeness.consent.records import OutputRecord

PHASH_MATCHES_LISTED = 10
"""How many of the outputs a perceptual-hash match could be are listed (nearest first)."""


def verify_file(path: Path, *, home: Home) -> VerifyReport:
    """Read a file's disclosure and find it in the ledger: by watermark id, by the id in its content
    credentials, by file hash, else by perceptual hash (a stripped or re-encoded copy)."""
    report = read_file(path, home=home)
    ledger: dict[str, object] = {"found": False, "phash_threshold": PHASH_MAX_DISTANCE}
    with Registry.open(home) as registry:
        record, matched_by, distance, others = None, None, None, []
        near: list[tuple[OutputRecord, int]] = []
        if report.watermark.found and report.watermark.output_id:
            record, matched_by = registry.get_output(report.watermark.output_id), "watermark"
        if record is None and report.c2pa.output_id and report.c2pa.state != "absent":
            record, matched_by = registry.get_output(report.c2pa.output_id), "content credentials"
        if record is None:
            matches = registry.find_outputs_by_sha256(report.sha256)
            record, matched_by = (matches[0] if matches else None), "sha256"
        if record is None and report.phash:
            near = ledger_matches_by_phash(registry, report.phash_variants or (report.phash,))
            for candidate, candidate_distance in near:
                role = ingredient_role(candidate, report.sha256, home)
                if role is not None:  # the unmodified picture an output was made from, not an output
                    ledger["ingredient_of"] = {
                        "output_id": candidate.output_id,
                        "role": role,
                        "phash_distance": candidate_distance,
                    }
                    near = []
                    break
            if near:
                (record, distance), matched_by = near[0], "perceptual hash"
                others = [other.output_id for other, _ in near[1:]]
        if record is not None:
            ledger = {
                "found": True,
                "matched_by": matched_by,
                "phash_distance": distance,
                "phash_threshold": PHASH_MAX_DISTANCE,
                "other_matches": others,
                **_phash_candidates(registry, near if matched_by == "perceptual hash" else []),
                **record.to_dict(),
                "withdrawn": _withdrawn(registry, record.consent_ids),
            }
            signed = registry.signed_output_entry(record.output_id)
            if signed is not None:  # only what the signed entry states, never the bare row
                ledger["disclosure"] = signed[1].get("disclosure")
                ledger["aigc"] = signed[1].get("aigc")
    return VerifyReport(file=path, disclosure=report, ledger=ledger)


def _phash_candidates(registry: Registry, near: list[tuple[OutputRecord, int]]) -> dict[str, object]:
    """The outputs a perceptual-hash match could be, nearest first: more than one is ambiguous (the
    hash cannot tell which one, if any, the file is a copy of), so none is named as its origin.

    ``phash_matches`` lists the first :data:`PHASH_MATCHES_LISTED` (``phash_match_count`` says how
    many there are); ``phash_ties`` counts the others at the closest one's distance.
    """
    closest = near[0][1] if near else None
    return {
        "ambiguous": len(near) > 1,
        "phash_match_count": len(near),
        "phash_ties": sum(1 for _, distance in near[1:] if distance == closest),
        "phash_matches": [
            {
                "output_id": candidate.output_id,
                "phash_distance": distance,
                "created_at": candidate.created_at.isoformat(),
                "purpose": candidate.purpose,
                "withdrawn": _withdrawn(registry, candidate.consent_ids),
            }
            for candidate, distance in near[:PHASH_MATCHES_LISTED]
        ],
    }


def _withdrawn(registry: Registry, consent_ids: tuple[str, ...]) -> list[dict[str, object]]:
    """The output's consents that have been revoked since (what a takedown request needs)."""
    withdrawn: list[dict[str, object]] = []
    for consent_id in consent_ids:
        try:
            record = registry.get_consent(consent_id)
        except LikenessError:  # erased or unknown: say so rather than hide it
            withdrawn.append(
                {"consent_id": consent_id, "revoked_at": None, "reason": "no longer in the registry"}
            )
            continue
        if record.revoked_at is not None:
            withdrawn.append(
                {
                    "consent_id": consent_id,
                    "identity_id": record.identity_id,
                    "revoked_at": record.revoked_at.isoformat(),
                    "reason": record.revoke_reason,
                }
            )
    return withdrawn
