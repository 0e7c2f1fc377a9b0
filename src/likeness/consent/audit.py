"""The audit report a rights holder can read (``likeness audit export``).

Per identity: how and when they were enrolled, each consent (terms, status, grantor and capacity,
evidence hash, whether it still matches its signed ledger entry), every output made under those
consents (id, time, purpose, operator, sha256, and the sha256 of each input it was made from, so a
person can check whether a given photo or video of theirs was used), the refusals that involved
them, and any erasure tombstone. On top: the ledger's chain status and head hash (keep the head
elsewhere: it is what shows that no newest entries were removed later).

The report holds names, ids, dates and hashes, never photos or embeddings. It is written
atomically (a temporary file in the same folder, fsync, rename), private to the user (0600).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from likeness.consent.records import ConsentRecord, Identity, OutputRecord
from likeness.errors import UsageError
from likeness.fsutil import write_atomic
from likeness.ledger import ChainReport, Entry

if TYPE_CHECKING:
    from likeness.consent.registry import Registry

FORMATS = ("md", "json")


@dataclass(frozen=True)
class IdentityAudit:
    identity: Identity
    consents: list[tuple[ConsentRecord, str | None]]
    """Each consent with ``None`` if it matches its signed grant entry, else what differs."""
    outputs: list[OutputRecord]
    refusals: list[Entry]
    enrolments: list[Entry]
    tombstones: list[Entry]

    def to_dict(self, today: dt.date) -> dict[str, Any]:
        return {
            "identity": self.identity.to_dict(),
            "consents": [
                {**record.to_dict(today), "matches_ledger": problem is None, "ledger_problem": problem}
                for record, problem in self.consents
            ],
            "outputs": [output.to_dict() for output in self.outputs],
            "refusals": [entry.to_dict() for entry in self.refusals],
            "enrolments": [entry.to_dict() for entry in self.enrolments],
            "erasures": [entry.to_dict() for entry in self.tombstones],
        }


@dataclass(frozen=True)
class AuditReport:
    generated_at: dt.datetime
    generated_by: str
    registry: str
    policy_sha256: str
    policy_source: str
    chain: ChainReport
    identities: list[IdentityAudit]
    capacity_descriptions: dict[str, str]

    @property
    def today(self) -> dt.date:
        return self.generated_at.date()

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "generated_by": self.generated_by,
            "registry": self.registry,
            "policy": {"sha256": self.policy_sha256, "source": self.policy_source},
            "ledger": self.chain.to_dict(),
            "identities": [person.to_dict(self.today) for person in self.identities],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def to_markdown(self) -> str:
        chain = self.chain
        status = (
            f"**intact** — {chain.entries} entries, hash chain and signatures verified"
            if chain.ok
            else f"**FAILED at entry {chain.first_bad_seq}** — {chain.reason}"
        )
        lines = [
            "# likeness audit report",
            "",
            f"Generated {_when(self.generated_at)} by {_cell(self.generated_by)} from `{self.registry}`.",
            "",
            "## Ledger",
            "",
            f"- Chain: {status}",
            f"- Head: entry {chain.head_seq}, hash `{chain.head_hash}`",
            "  (keep this hash elsewhere: a later ledger that no longer contains it has lost entries)",
            f"- Consent policy in force: `{self.policy_sha256}` ({_cell(self.policy_source)})",
            "",
        ]
        if not self.identities:
            lines += ["No identities are enrolled.", ""]
        for person in self.identities:
            lines += self._identity_markdown(person)
        return "\n".join(lines).rstrip("\n") + "\n"

    def _identity_markdown(self, person: IdentityAudit) -> list[str]:
        who = person.identity
        lines = [f"## {_cell(who.name)} (`{who.id}`)", ""]
        spaces = ", ".join(who.embedding_spaces) or "none"
        photos = who.reference_count
        lines.append(f"- Enrolled {_when(who.created)}; reference photos: {photos} (face models: {spaces})")
        if who.erased_at is not None:
            lines.append(
                f"- **Erased** {_when(who.erased_at)}: reference photos and face embeddings deleted"
                + (f" — {_cell(who.erase_reason)}" if who.erase_reason else "")
            )
        for entry in person.enrolments:
            when = _when_text(entry.time)
            lines.append(f"- Ledger entry {entry.seq}: {entry.kind} by {_cell(entry.actor)} on {when}")
        lines += ["", f"### Consents ({len(person.consents)})", ""]
        if not person.consents:
            lines += ["No consent is on record.", ""]
        for record, problem in person.consents:
            lines += self._consent_markdown(record, problem)
        lines += [f"### Outputs made under these consents ({len(person.outputs)})", ""]
        if person.outputs:
            lines += [
                "| output id | made (UTC) | purpose | operator | sha256 | made from (sha256) | consent "
                "| ledger entry |",
                "|---|---|---|---|---|---|---|---|",
            ]
            own = {record.id for record, _ in person.consents}
            for output in person.outputs:
                consents = ", ".join(c for c in output.consent_ids if c in own)
                inputs = "; ".join(
                    f"{_cell(role)} `{digest}`" for role, digest in sorted(output.ingredient_sha256.items())
                )
                lines.append(
                    f"| `{output.output_id}` | {_when(output.created_at)} | {_cell(output.purpose)} | "
                    f"{_cell(output.operator)} | `{output.sha256}` | {inputs or 'not recorded'} | {consents} "
                    f"| {output.ledger_seq} |"
                )
        else:
            lines.append("No output was made under these consents.")
        lines += ["", f"### Refused jobs that involved them ({len(person.refusals)})", ""]
        if person.refusals:
            lines += [
                "| when (UTC) | rule | face | purpose | operator | ledger entry |",
                "|---|---|---|---|---|---|",
            ]
            for entry in person.refusals:
                data = entry.payload
                lines.append(
                    f"| {_when_text(entry.time)} | {_cell(data.get('rule'))} | {_cell(data.get('face'))} | "
                    f"{_cell(data.get('purpose'))} | {_cell(entry.actor)} | {entry.seq} |"
                )
        else:
            lines.append("None.")
        lines.append("")
        if person.tombstones:
            lines += ["### Erasure", ""]
            for entry in person.tombstones:
                data = entry.payload
                revoked = ", ".join(data.get("consents_revoked", [])) or "none"
                lines.append(
                    f"- Ledger entry {entry.seq}, {_when_text(entry.time)}, by {_cell(entry.actor)}: "
                    f"{data.get('references_deleted', 0)} reference face(s) deleted; "
                    f"consents revoked: {revoked}; "
                    f"reason: {_cell(data.get('reason'))}"
                )
            lines.append("")
        return lines

    def _consent_markdown(self, record: ConsentRecord, problem: str | None) -> list[str]:
        status = record.status(self.today)
        capacity = self.capacity_descriptions.get(record.capacity, "")
        rows = [
            ("Status", f"**{status}**"),
            ("Purposes", ", ".join(record.purposes)),
            ("Roles", ", ".join(record.roles)),
            ("Media", ", ".join(record.media)),
            ("Intended uses", record.uses),
            ("Project", record.project),
            ("Valid", f"{record.valid_from} to {record.valid_until} (inclusive)"),
            (
                "Granted by",
                f"{record.grantor} — capacity `{record.capacity}`" + (f" ({capacity})" if capacity else ""),
            ),
            ("Date of birth", record.date_of_birth),
            ("Date of death", record.date_of_death),
            ("Jurisdiction", record.jurisdiction),
            ("Legal basis", record.basis),
            ("Compensation", record.compensation),
            ("Representation", record.representation),
            (
                "Signed consent document",
                f"{record.evidence_name}, sha256 `{record.evidence_sha256}`"
                if record.evidence_sha256
                else None,
            ),
            ("Takedown contact", record.takedown_contact),
            (
                "Recorded",
                f"{_when(record.created_at)} by {record.created_by}, ledger entry {record.ledger_seq}",
            ),
            (
                "Revoked",
                f"{_when(record.revoked_at)} by {record.revoked_by}: {record.revoke_reason}"
                if record.revoked_at
                else None,
            ),
            (
                "Integrity",
                "matches the terms signed in the ledger"
                if problem is None
                else f"**DOES NOT MATCH**: {problem}",
            ),
        ]
        lines = [f"#### Consent `{record.id}`", "", "| | |", "|---|---|"]
        lines += [f"| {name} | {_cell(value)} |" for name, value in rows if value not in (None, "")]
        return [*lines, ""]


def _cell(value: object) -> str:
    """Text safe inside a Markdown table cell."""
    if value is None:
        return "—"
    return " ".join(str(value).split()).replace("|", "\\|")


def _when(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _when_text(value: str) -> str:
    try:
        return _when(dt.datetime.fromisoformat(value))
    except ValueError:
        return value


def _involves(entry: Entry, identity_id: str) -> bool:
    data = entry.payload
    return identity_id in (
        data.get("identity_id"),
        data.get("runner_up_identity_id"),
        data.get("for_identity_id"),
    )


def build_audit_report(registry: Registry, *, identity: str | None = None, operator: str) -> AuditReport:
    """The report for one identity (id or name) or, with ``identity=None``, for everyone enrolled."""
    people = [registry.get_identity(identity)] if identity else registry.list_identities()
    entries = registry.ledger_entries()
    chain = registry.verify_ledger()
    audits: list[IdentityAudit] = []
    for person in people:
        consents = registry.audited_consents(person.id)
        mine = [entry for entry in entries if _involves(entry, person.id)]
        audits.append(
            IdentityAudit(
                identity=person,
                consents=consents,
                outputs=registry.list_outputs(identity_id=person.id),
                refusals=[e for e in mine if e.kind == "refusal"],
                enrolments=[e for e in mine if e.kind in ("enrol", "references_added")],
                tombstones=[e for e in mine if e.kind == "erasure"],
            )
        )
    return AuditReport(
        generated_at=dt.datetime.now(dt.UTC),
        generated_by=operator,
        registry=registry.location,
        policy_sha256=registry.policy.sha256,
        policy_source=registry.policy.source,
        chain=chain,
        identities=audits,
        capacity_descriptions={name: rule.description for name, rule in registry.policy.capacities.items()},
    )


def render(report: AuditReport, fmt: str) -> str:
    if fmt == "md":
        return report.to_markdown()
    if fmt == "json":
        return report.to_json()
    raise UsageError(f"unknown report format {fmt!r}", hint=f"choose one of: {', '.join(FORMATS)}")


def write_atomically(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder", hint="give a file name, e.g. --out report.md")
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent}: no such folder", hint="create it first, or choose another --out")
    try:
        write_atomic(path, text.encode("utf-8"), mode=0o600)
    except OSError as exc:
        raise UsageError(f"{path}: the report cannot be written ({exc.strerror})") from exc
    return path
