"""Whether one consent covers a use (purpose, role, media, in force), and in words why not.

Used to name *every* consent considered when the gate refuses a face, by ``likeness faces --purpose``
and by the app's pickers. The gate's own decision (``consent.gate``) checks the same fields.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from likeness.consent.records import ConsentRecord


@dataclass(frozen=True)
class ConsentFit:
    """One consent of the person, and why it does or does not cover the job."""

    consent_id: str
    covers: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"consent_id": self.consent_id, "covers": self.covers, "why": self.why}


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
