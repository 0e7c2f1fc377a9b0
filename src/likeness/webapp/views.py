"""How results read in the app: banners, summaries and table rows. Plain strings; no Gradio here.

Every text that came from a user or a file is HTML-escaped before it goes into a banner.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from likeness.errors import ConsentRefused, LikenessError

if TYPE_CHECKING:
    from likeness.consent.records import ConsentRecord, Identity, OutputRecord
    from likeness.ledger import ChainReport, Entry
    from likeness.pipeline import VerifyReport
    from likeness.users import AppUser
    from likeness.webapp.studio import PhotoCheck, SwapResult

STAGE_WORDS = {
    "decode": "Reading the images",
    "detect": "Finding faces",
    "consent": "Checking consent",
    "swap": "Swapping",
    "disclose": "Labelling, watermarking, signing",
    "check": "Reading the disclosure back",
    "done": "Done",
}

RULE_WORDS = {
    "not_enrolled": "a face is not an enrolled person",
    "ambiguous": "a face matches more than one enrolled person",
    "no_consent": "no consent is recorded",
    "wrong_purpose": "the consent does not cover this purpose",
    "wrong_media": "the consent does not cover this kind of media",
    "wrong_role": "the consent does not cover this role",
    "revoked": "the consent was revoked",
    "not_yet_valid": "the consent is not valid yet",
    "expired": "the consent has expired",
    "already_enrolled": "this face is already enrolled",
}


def api_safe(value: Any) -> Any:
    """Plain JSON for API clients, with no key named ``path``.

    gradio_client takes any dict with a string ``path`` for a file and tries to download it, so
    record fields called ``path`` are renamed ``file_path``.
    """
    from likeness.cli.support import to_jsonable

    value = to_jsonable(value)
    if isinstance(value, dict):
        return {("file_path" if key == "path" else key): api_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [api_safe(item) for item in value]
    return value


def banner(kind: str, title: str, body_html: str = "") -> str:
    """A coloured result box: kind is ok, refused, error, warn, synthetic or neutral."""
    return (
        f'<div class="lk-banner lk-{escape(kind)}"><div class="lk-banner-title">{escape(title)}</div>'
        f'<div class="lk-banner-body">{body_html}</div></div>'
    )


def _p(text: str | None) -> str:
    return f"<p>{escape(text)}</p>" if text else ""


def _items(lines: Iterable[str]) -> str:
    rows = "".join(f"<li>{line}</li>" for line in lines)
    return f"<ul>{rows}</ul>" if rows else ""


def _when(value: dt.datetime | dt.date | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return str(value)[:16].replace("T", " ")


# -- who is signed in -------------------------------------------------------------------------
def user_line(user: AppUser | None, *, auth_required: bool, home: str) -> str:
    if user is None:
        return banner("error", "Not signed in", _p("This account is not an app user any more. Sign out."))
    what = (
        "enrol people, record/revoke/erase consent, swap, verify, audit"
        if user.role == "admin"
        else "swap, verify, read the registry and the audit ledger"
    )
    mode = "" if auth_required else " · local mode: no app users, bound to this machine only"
    return (
        f'<div class="lk-user">Signed in as <b>{escape(user.name)}</b> '
        f'<span class="lk-role">{escape(user.role)}</span> — may {escape(what)}'
        f'<span class="lk-muted"> · data home {escape(home)}{escape(mode)}</span>'
        + (' · <a href="/logout">sign out</a>' if auth_required else "")
        + "</div>"
    )


# -- errors ------------------------------------------------------------------------------------
def error_banner(error: LikenessError) -> str:
    """A refusal or an error in plain words: what happened, what to do, that nothing was written."""
    hint = f"<p><b>What to do:</b> {escape(error.hint)}</p>" if error.hint else ""
    if isinstance(error, ConsentRefused):
        rule = RULE_WORDS.get(error.rule or "", error.rule or "")
        title = f"Refused by the consent gate: {rule}" if rule else "Refused by the consent gate"
        body = (
            _p(error.reason) + hint + _p("No file was written. The refusal is recorded in the audit ledger.")
        )
        return banner("refused", title, body)
    if error.kind == "cancelled":
        return banner("warn", "Cancelled", _p(error.reason))
    titles = {
        "usage": "Check the form",
        "policy": "The consent policy does not allow this",
        "bad_input": "This file cannot be used",
        "no_face": "No face found",
        "model_missing": "A model file is missing",
        "not_allowed": "Not allowed for your role",
        "licence": "A model's licence does not allow this purpose",
        "disclosure": "The output could not be disclosed, so nothing was written",
        "registry": "The registry could not be used",
    }
    return banner("error", titles.get(error.kind, "Something went wrong"), _p(error.reason) + hint)


def error_json(error: LikenessError) -> dict[str, Any]:
    status = (
        "refused"
        if isinstance(error, ConsentRefused)
        else ("cancelled" if error.kind == "cancelled" else "error")
    )
    return api_safe({"status": status, **error.to_dict()})


# -- swap ---------------------------------------------------------------------------------------
def face_choices(count: int) -> list[tuple[str, str]]:
    choices = [("All faces", "all")]
    for index in range(count):
        where = (
            " (leftmost)"
            if index == 0 and count > 1
            else (" (rightmost)" if index == count - 1 and count > 1 else "")
        )
        choices.append((f"Face #{index}{where}", str(index)))
    return choices


def faces_note(count: int) -> str:
    if count == 0:
        return "No face found in this image: choose another target."
    if count == 1:
        return "One face found; it will be replaced."
    return f"{count} faces found, numbered left to right. Click a thumbnail to replace only that face."


def swap_banner(result: SwapResult, report: VerifyReport | None) -> str:
    outcome = result.outcome
    consent_lines = [
        f"{escape(m.identity_name)} as <b>{escape(m.role)}</b> ({escape(m.label)}): consent "
        f"<code>{escape(m.consent_id)}</code> active, match distance {m.distance:.3f}"
        for m in outcome.decision.matches
    ]
    disclosure = [
        f"Output id <code>{escape(outcome.output_id)}</code>, recorded in the audit ledger",
        "Visible AI-GENERATED label in the corner",
    ]
    if report is not None:
        wm = report.disclosure.watermark
        disclosure.append(
            f"Invisible watermark reads back: {'yes, id ' + escape(str(wm.output_id)) if wm.found else 'NO'}"
        )
        disclosure.append(
            f"Visible label detected on read-back: {'yes' if report.disclosure.label_detected else 'no'}"
        )
        c2pa = _c2pa_words(report.to_dict())
        if c2pa:
            disclosure.append(f"C2PA manifest: {escape(c2pa)}")
    body = (
        f"<p>{outcome.faces_swapped} face(s) replaced with the likeness of {escape(result.source_name)} "
        f"for purpose <b>{escape(outcome.decision.purpose or '')}</b>.</p>"
        f"<p><b>Consent</b></p>{_items(consent_lines)}<p><b>Disclosure</b></p>{_items(disclosure)}"
        f"<p class='lk-muted'>{escape(_timings(outcome.timings))}</p>"
    )
    return banner("ok", "Done: disclosed output written", body)


def _timings(timings: Mapping[str, float]) -> str:
    total = sum(timings.values())
    parts = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in timings.items())
    return f"took {total:.1f}s ({parts})"


def _c2pa_words(data: Mapping[str, Any]) -> str:
    c2pa = data.get("c2pa")
    if not isinstance(c2pa, Mapping):
        return ""
    if not c2pa.get("present", c2pa.get("found", True)):
        return "none"
    state = c2pa.get("validation_state") or c2pa.get("state") or c2pa.get("status")
    return str(state) if state else "present"


def swap_json(result: SwapResult, report: VerifyReport | None) -> dict[str, Any]:
    data: dict[str, Any] = {"status": "done", **result.outcome.to_dict(), "source": result.source_name}
    if report is not None:
        data["verify"] = report.to_dict()
    return api_safe(data)


# -- enrolment and consent -------------------------------------------------------------------------
def check_rows(checks: Sequence[PhotoCheck]) -> list[list[Any]]:
    return [[c.name, c.faces, c.face_px or "", "ok" if c.ok else "no", c.message] for c in checks]


def checks_banner(checks: Sequence[PhotoCheck]) -> str:
    if not checks:
        return banner("neutral", "Add reference photos to check them")
    bad = [c for c in checks if not c.ok]
    if not bad:
        return banner(
            "ok", f"All {len(checks)} photo(s) usable", _p("Each shows one face, large enough to match.")
        )
    lines = [f"{escape(c.name)}: {escape(c.message)}" for c in bad]
    return banner("warn", f"{len(bad)} of {len(checks)} photo(s) cannot be used", _items(lines))


def enrol_banner(identity: Identity) -> str:
    body = _p(
        f"{identity.name} is enrolled as {identity.id} from {identity.reference_count} reference face(s). "
        "No consent is recorded yet: nobody can swap this face until you record one under Grant consent."
    )
    return banner("ok", f"Enrolled {identity.name}", body)


def consent_banner(record: ConsentRecord, name: str, action: str) -> str:
    status = record.status(dt.datetime.now(dt.UTC).date())
    lines = [
        f"Consent <code>{escape(record.id)}</code> of {escape(name)}: <b>{escape(status)}</b>",
        f"Purposes {escape(', '.join(record.purposes))}; roles {escape(', '.join(record.roles))}; "
        f"media {escape(', '.join(record.media))}",
        f"Valid {escape(str(record.valid_from))} to {escape(str(record.valid_until))}; capacity "
        f"{escape(record.capacity)}; granted by {escape(record.grantor)}",
    ]
    if record.revoked_at is not None:
        lines.append(
            f"Revoked {escape(_when(record.revoked_at))} by {escape(record.revoked_by or '')}: "
            f"{escape(record.revoke_reason or '')}"
        )
    kind = (
        "ok" if action == "granted" and status == "active" else ("warn" if action == "revoked" else "neutral")
    )
    title = {"granted": "Consent recorded", "revoked": "Consent revoked"}.get(action, "Consent")
    extra = _p("New and queued jobs that rely on it are refused from now on.") if action == "revoked" else ""
    return banner(kind, title, _items(lines) + extra)


def erase_banner(identity: Identity) -> str:
    body = _p(
        f"{identity.name} ({identity.id}): reference faces and embeddings deleted, every consent revoked, "
        f"erased {_when(identity.erased_at)}. A tombstone and the ledger entries remain."
    )
    return banner("warn", f"Erased {identity.name}", body)


def identity_choices(identities: Sequence[Identity]) -> list[tuple[str, str]]:
    return [(f"{i.name} · {i.id}", i.id) for i in identities if i.erased_at is None]


def consent_choices(consents: Sequence[ConsentRecord], names: Mapping[str, str]) -> list[tuple[str, str]]:
    today = dt.datetime.now(dt.UTC).date()
    return [
        (
            f"{names.get(c.identity_id, c.identity_id)} · {', '.join(c.purposes)} · "
            f"until {c.valid_until} · {c.id}",
            c.id,
        )
        for c in consents
        if c.status(today) in ("active", "not_yet_valid")
    ]


def identity_rows(identities: Sequence[Identity], consents: Sequence[ConsentRecord]) -> list[list[Any]]:
    today = dt.datetime.now(dt.UTC).date()
    rows = []
    for person in identities:
        mine = [c for c in consents if c.identity_id == person.id]
        active = [c for c in mine if c.status(today) == "active"]
        state = "erased" if person.erased_at else ("consent active" if active else "no active consent")
        purposes = sorted({p for c in active for p in c.purposes})
        rows.append(
            [
                person.name,
                person.id,
                person.reference_count,
                _when(person.created),
                state,
                ", ".join(purposes),
            ]
        )
    return rows


def consent_rows(consents: Sequence[ConsentRecord], names: Mapping[str, str]) -> list[list[Any]]:
    today = dt.datetime.now(dt.UTC).date()
    return [
        [
            c.id,
            names.get(c.identity_id, c.identity_id),
            c.status(today),
            ", ".join(c.purposes),
            ", ".join(c.roles),
            ", ".join(c.media),
            str(c.valid_from),
            str(c.valid_until),
            c.capacity,
            c.uses,
        ]
        for c in consents
    ]


def output_rows(outputs: Sequence[OutputRecord]) -> list[list[Any]]:
    return [
        [o.output_id, _when(o.created_at), o.purpose, o.operator, ", ".join(o.consent_ids), o.path or ""]
        for o in outputs
    ]


def person_banner(
    identity: Identity, consents: Sequence[ConsentRecord], outputs: Sequence[OutputRecord]
) -> str:
    today = dt.datetime.now(dt.UTC).date()
    active = sum(1 for c in consents if c.status(today) == "active")
    if identity.erased_at is not None:
        return banner("warn", f"{identity.name} — erased", _p(f"Erased {_when(identity.erased_at)}."))
    body = _p(
        f"{identity.id} · enrolled {_when(identity.created)} · "
        f"{identity.reference_count} reference face(s) · "
        f"{len(consents)} consent record(s), {active} active · {len(outputs)} output(s) made under them"
    )
    return banner("ok" if active else "neutral", identity.name, body)


# -- verify ---------------------------------------------------------------------------------------
def verify_banner(report: VerifyReport) -> str:
    verdict = report.verdict
    kind = "synthetic" if verdict.startswith(("synthetic", "probably synthetic")) else "neutral"
    title = {
        "synthetic": "AI-generated: this file is a disclosed synthetic output",
        "neutral": "No likeness disclosure found",
    }[kind]
    if verdict.startswith("probably"):
        title = "Probably AI-generated: a visible label, but no watermark or record"
    wm = report.disclosure.watermark
    lines = [
        "Watermark: "
        + (
            f"output id <code>{escape(str(wm.output_id))}</code> (confidence {wm.confidence:.2f})"
            if wm.found
            else "none found"
        ),
        f"Visible AI label: {'detected' if report.disclosure.label_detected else 'not detected'}",
    ]
    c2pa = _c2pa_words(report.to_dict())
    if c2pa:
        lines.append(f"C2PA manifest: {escape(c2pa)}")
    ledger = report.ledger
    if ledger.get("found"):
        consents = ", ".join(str(c) for c in ledger.get("consent_ids", []) or [])
        lines.append(
            f"Ledger: output <code>{escape(str(ledger.get('output_id')))}</code> made "
            f"{escape(_when(str(ledger.get('created_at', ''))))} by {escape(str(ledger.get('operator')))} "
            f"for {escape(str(ledger.get('purpose', '')))} under consent(s) {escape(consents)}"
        )
    else:
        lines.append("Ledger: no record of this file in this installation")
    note = (
        "" if kind == "synthetic" else _p("Absence of a disclosure does not prove that a file is authentic.")
    )
    return banner(kind, title, _p(verdict) + _items(lines) + note)


def verify_json(report: VerifyReport) -> dict[str, Any]:
    return api_safe({"status": "done", **report.to_dict()})


# -- audit ------------------------------------------------------------------------------------------
def chain_banner(report: ChainReport) -> str:
    if report.ok:
        body = _p(
            f"{report.entries} entries; every hash link and signature checks out. Head: entry "
            f"{report.head_seq} {report.head_hash} (keep it elsewhere to detect truncation)."
        )
        return banner("ok", "Ledger intact", body)
    return banner("refused", f"Ledger BROKEN at entry {report.first_bad_seq}", _p(report.reason))


def entry_summary(entry: Entry) -> str:
    payload = entry.payload
    keys = ("identity_id", "consent_id", "output_id", "rule", "purpose", "reason", "consent_ids")
    parts = []
    for key in keys:
        if key in payload and payload[key] not in (None, "", []):
            value = payload[key]
            parts.append(f"{key}={','.join(value) if isinstance(value, list) else value}")
    text = "; ".join(parts) or json.dumps(payload, sort_keys=True)[:160]
    return text[:240]


def ledger_rows(entries: Sequence[Entry], limit: int) -> list[list[Any]]:
    newest_first = list(reversed(entries))[: max(1, limit)]
    return [
        [e.seq, e.time[:19].replace("T", " "), e.kind, e.actor, entry_summary(e), e.hash[:16]]
        for e in newest_first
    ]
