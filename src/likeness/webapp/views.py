"""How results read in the app: banners, summaries and table rows. Plain strings; no Gradio here.

Every text that came from a user or a file is HTML-escaped before it goes into a banner.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from likeness.errors import ConsentRefused, LikenessError

if TYPE_CHECKING:
    from likeness.consent.records import ConsentRecord, Identity, OutputRecord
    from likeness.disclosure.credentials import CredentialReport
    from likeness.jobs.requests import TrackReport
    from likeness.jobs.verdict import VerifyReport
    from likeness.ledger import ChainReport, Entry
    from likeness.users import AppUser
    from likeness.webapp.studio import ModelLine, PhotoCheck, SwapResult, VideoResult

STAGE_WORDS = {
    "hash": "Reading the upload",
    "probe": "Reading the video",
    "decode": "Reading the images",
    "detect": "Finding faces",
    "consent": "Checking consent",
    "swap": "Swapping",
    "disclose": "Labelling, watermarking, signing",
    "check": "Reading the disclosure back",
    "done": "Done",
}
MAX_WINDOW_ROWS = 150
"""Time windows listed in a video's verify report (10 minutes at 2 s windows is 300)."""


def stage_words(stage: str) -> str:
    """A pipeline stage as the progress bar shows it (video frame stages carry fps and ETA)."""
    if stage in STAGE_WORDS:
        return STAGE_WORDS[stage]
    if stage.startswith("frame "):
        return "Swapping, labelling and watermarking: " + stage
    return stage[:1].upper() + stage[1:]


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


def banner(kind: str, title: str, body_html: str = "", *, tag: str = "") -> str:
    """A coloured result box: kind is ok, refused, error, warn, synthetic, working or neutral.

    ``tag`` adds a class ``lk-<tag>`` (e.g. which job a "working" banner belongs to).
    """
    extra = f" lk-{escape(tag)}" if tag else ""
    return (
        f'<div class="lk-banner lk-{escape(kind)}{extra}"><div class="lk-banner-title">{escape(title)}</div>'
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
def short_path(path: str) -> str:
    """A data home as the header shows it: ``~/…`` under the user's home, else its last two parts."""
    full = Path(path)
    with contextlib.suppress(RuntimeError, ValueError):
        return "~/" + str(full.relative_to(Path.home()))
    parts = full.parts
    return str(full) if len(parts) <= 3 else "…/" + "/".join(parts[-2:])


def user_line(user: AppUser | None, *, auth_required: bool, home: str) -> str:
    """Who is signed in and what they may do; administrators also see the data home (shortened)."""
    if user is None:
        return banner("error", "Not signed in", _p("This account is not an app user any more. Sign out."))
    what = (
        "enrol people, record/revoke/erase consent, swap, verify, audit"
        if user.role == "admin"
        else "swap, verify, read the registry and the audit ledger"
    )
    where = (
        f' · <span title="{escape(home)}">data home {escape(short_path(home))}</span>'
        if user.can("view_installation")
        else ""
    )
    mode = " · local mode: no app users, bound to this machine only" if not auth_required else ""
    return (
        f'<div class="lk-user">Signed in as <b>{escape(user.name)}</b> '
        f'<span class="lk-role">{escape(user.role)}</span> — may {escape(what)}'
        f'<span class="lk-muted">{where}{escape(mode)}</span>'
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
        *(escape(note) for note in outcome.notes),
    ]
    if report is not None:
        wm = report.disclosure.watermark
        disclosure.append(
            f"Invisible watermark reads back: {'yes, id ' + escape(str(wm.output_id)) if wm.found else 'NO'}"
        )
        disclosure.append(
            f"Visible label detected on read-back: {'yes' if report.disclosure.label_detected else 'no'}"
        )
        disclosure.append(c2pa_line(report.disclosure.c2pa))
        disclosure.append(f"Verify verdict: {status_words(report.status)}")
    body = (
        f"<p>{outcome.faces_swapped} face(s) replaced with the likeness of {escape(result.source_name)} "
        f"for purpose <b>{escape(outcome.decision.purpose or '')}</b>.</p>"
        f"<p><b>Consent</b></p>{_items(consent_lines)}<p><b>Disclosure</b></p>{_items(disclosure)}"
        f"<p class='lk-muted'>{escape(_timings(outcome.timings))}</p>"
    )
    return banner("ok", "Done: disclosed output written", body)


def video_banner(result: VideoResult, report: VerifyReport | None) -> str:
    """A finished video swap: who was replaced under which consent, the video, its disclosure."""
    outcome, video = result.outcome, result.outcome.video
    swapped = outcome.faces_swapped
    consent_lines = [
        f"{escape(result.names.get(m.identity_id, m.identity_name))} as <b>{escape(m.role)}</b> "
        f"({escape(m.label)}): consent <code>{escape(m.consent_id)}</code> active, "
        f"match distance {m.distance:.3f}"
        for m in outcome.decision.matches
    ]
    facts = [
        f"{video.frames} frames, {video.duration:.2f} s, {escape(video.codec)} in {escape(video.container)}"
        + ("" if result.playable else " (not playable in a browser: download it)"),
        *(escape(line) for line in video.audio),
        *(escape(note) for note in video.notes),
        *(escape(note) for note in outcome.notes),  # e.g. source frames dropped, a label over a face
    ]
    if result.resumed:
        facts.insert(0, f"Resumed: {video.reused_segments} finished segment(s) of the cancelled run reused")
    check = video.self_check
    disclosure = [
        f"Output id <code>{escape(outcome.output_id)}</code>, recorded in the audit ledger",
        "Visible AI-GENERATED label and invisible watermark on every frame",
        f"Self-check before signing: the id read back in {check.windows_with_id} of {check.windows} "
        f"keyframe window(s), the label in {check.label_windows}",
    ]
    if report is not None:
        disclosure += disclosure_items(report)
        disclosure.append(f"Verify verdict: {status_words(report.status)}")
    untouched = len(outcome.tracks) - swapped
    body = (
        f"<p>{swapped} face track(s) replaced with the likeness of {escape(result.source_name)} for "
        f"purpose <b>{escape(outcome.decision.purpose or '')}</b>"
        + (f"; {untouched} left untouched (see the table below for why)" if untouched else "")
        + ".</p>"
        f"<p><b>Consent</b></p>{_items(consent_lines)}<p><b>Video</b></p>{_items(facts)}"
        f"<p><b>Disclosure</b></p>{_items(disclosure)}"
        + (windows_table(report) if report is not None else "")
        + f"<p class='lk-muted'>{escape(_timings(outcome.timings))}</p>"
    )
    return banner("ok", "Done: disclosed video written", body)


def video_working() -> str:
    body = (
        "<p>Checking consent, then following every face through the footage: consenting targets are "
        "replaced, every frame is labelled and watermarked. <b>Cancel</b> stops after the current frame; "
        "running the same job again resumes from the last finished segment.</p>"
    )
    return banner("working", "Working on the video…", body, tag="job-video")


def video_cancelled() -> str:
    body = _p(
        "Nothing was written under the output name or recorded. Finished segments are kept for "
        "24 hours: run the same job again (same source, target, purpose and options) to resume from "
        "them; otherwise they are deleted."
    )
    return banner("warn", "Cancelled", body)


TRACK_HEADERS = ["Track", "On screen", "Decision", "Person", "Consent", "Frames swapped", "Why"]
TRACK_WIDTHS = ["6%", "11%", "10%", "13%", "15%", "9%", "36%"]


def track_rows(tracks: Sequence[TrackReport], names: Mapping[str, str]) -> list[list[Any]]:
    rows = []
    for track in tracks:
        person = names.get(track.identity_id or "", track.identity_id or "") or "not identified"
        why = track.reason + (
            f"; {track.swap_failures} frame(s) left as they were (pose)" if track.swap_failures else ""
        )
        rows.append(
            [
                f"#{track.track_id}",
                f"{track.first_time:.2f}–{track.last_time:.2f} s",
                "replaced" if track.decision == "swapped" else "left untouched",
                person,
                track.consent_id or "",
                f"{track.frames_swapped} of {track.frames_seen}",
                why,
            ]
        )
    return rows


def video_json(result: VideoResult, report: VerifyReport | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "status": "done",
        **result.outcome.to_dict(),
        "source": result.source_name,
        "resumed": result.resumed,
    }
    for track in data["tracks"]:
        track["identity_name"] = result.names.get(track.get("identity_id") or "")
    if report is not None:
        data["verify"] = report.to_dict()
    return api_safe(data)


def _timings(timings: Mapping[str, float]) -> str:
    total = sum(timings.values())
    parts = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in timings.items())
    return f"took {total:.1f}s ({parts})"


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


def source_note(not_offered: Sequence[tuple[Identity, str]], purpose: str | None) -> str:
    """Who is not offered as a likeness source, and why (greyed out, with the reason)."""
    if not purpose:
        return '<p class="lk-muted">Choose a purpose to see whose likeness may be used for it.</p>'
    if not not_offered:
        return ""
    items = "".join(
        f'<li class="lk-muted">{escape(person.name)} — {escape(reason)}</li>'
        for person, reason in not_offered
    )
    return f'<p class="lk-muted">Not offered for {escape(purpose)}:</p><ul class="lk-muted">{items}</ul>'


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
        [
            o.output_id,
            _when(o.created_at),
            o.purpose,
            o.operator,
            ", ".join(o.consent_ids),
            Path(str(o.path)).name if o.path else "",
        ]
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
STATUS_WORDS = {
    "synthetic": "synthetic (a disclosed AI output)",
    "probably-synthetic": "probably synthetic",
    "tampered": "TAMPERED (the content credentials are invalid)",
    "none": "no likeness disclosure found",
}


def status_words(status: str) -> str:
    return STATUS_WORDS.get(status, status)


def c2pa_line(c2pa: CredentialReport | None) -> str:
    """The content credentials in one list item: state, signer, and the failure reasons if any."""
    if c2pa is None:
        return "Content credentials (C2PA): not checked"
    if c2pa.state == "absent":
        return "Content credentials (C2PA): none in the file"
    who = escape(c2pa.signer.get("common_name") or c2pa.signer.get("issuer") or "an unknown signer")
    if c2pa.state == "trusted":
        text = (
            f"Content credentials (C2PA): <b>trusted</b> — signed by {who}, a certificate this "
            "installation trusts"
        )
    elif c2pa.state == "valid-untrusted":
        text = (
            f"Content credentials (C2PA): <b>valid but untrusted</b> — signed by {who}, whose certificate "
            "this installation does not trust"
        )
    else:
        text = "Content credentials (C2PA): <b>INVALID</b> — the file or its manifest changed after signing"
    if c2pa.output_id:
        consents = ", ".join(c2pa.consent_ids) or "none"
        text += f"; names output <code>{escape(c2pa.output_id)}</code>, consent(s) {escape(consents)}"
    reasons = _reasons(c2pa)
    return text + (_items(reasons) if reasons else "")


def _reasons(c2pa: CredentialReport) -> list[str]:
    if len(c2pa.explanations) == len(c2pa.reasons):
        pairs = zip(c2pa.reasons, c2pa.explanations, strict=True)
        return [f"<code>{escape(code)}</code>" + (f": {escape(why)}" if why else "") for code, why in pairs]
    return [f"<code>{escape(code)}</code>" for code in c2pa.reasons] + [escape(e) for e in c2pa.explanations]


def _is_video(report: VerifyReport) -> bool:
    return hasattr(report.disclosure, "windows")


def disclosure_items(report: VerifyReport) -> list[str]:
    """Content credentials, watermark, visible label and ledger record, one list item each."""
    disclosure = report.disclosure
    wm = disclosure.watermark
    video = _is_video(report)
    windows = list(getattr(disclosure, "windows", ()))
    if wm.found and video:
        with_id = sum(1 for w in windows if w.output_id == wm.output_id)
        mark = (
            f"Watermark: output id <code>{escape(str(wm.output_id))}</code> in {with_id} of {len(windows)} "
            "time window(s)"
        )
    elif wm.found:
        mark = (
            f"Watermark: output id <code>{escape(str(wm.output_id))}</code> (confidence {wm.confidence:.2f})"
        )
    else:
        mark = "Watermark: none found" + (f" in {len(windows)} time window(s)" if video else "")
    others = list(getattr(disclosure, "other_ids", ()))
    if others:
        mark += f"; <b>other output ids in some windows: {escape(', '.join(others))}</b> (spliced footage?)"
    label = f"Visible AI label: {'detected' if disclosure.label_detected else 'not detected'}"
    if video:
        label += f" (in {sum(1 for w in windows if w.label_detected)} of {len(windows)} window(s))"
    items = [c2pa_line(disclosure.c2pa), mark, label, _ledger_line(report.ledger)]
    if disclosure.unreadable:
        items.insert(
            1,
            f"Pixels: <b>could not be decoded</b> ({escape(disclosure.unreadable)}); the watermark and the "
            "visible label were not read",
        )
    skipped = list(getattr(disclosure, "skipped", ()))
    if skipped:
        spans = "; ".join(
            f"{s.start:.2f}–{'end' if s.end is None else f'{s.end:.2f}'} s ({escape(s.reason)})"
            for s in skipped
        )
        items.append(f"Damaged stretches skipped while reading: {spans}")
    return items


def _ledger_line(ledger: Mapping[str, Any]) -> str:
    if ledger.get("found") and ledger.get("ambiguous"):
        return _ambiguous_ledger_line(ledger)
    if ledger.get("found"):
        consents = ", ".join(str(c) for c in ledger.get("consent_ids", []) or [])
        how = str(ledger.get("matched_by") or "")
        if how == "perceptual hash":
            how += (
                f", distance {ledger.get('phash_distance')} of 64 bits "
                f"(threshold {ledger.get('phash_threshold')})"
            )
        line = (
            f"Ledger: output <code>{escape(str(ledger.get('output_id')))}</code> made "
            f"{escape(_when(str(ledger.get('created_at', ''))))} by {escape(str(ledger.get('operator')))} "
            f"for {escape(str(ledger.get('purpose', '')))} under consent(s) {escape(consents)} "
            f"(found by {escape(how)})"
        )
        others = ledger.get("other_matches") or []
        if others:
            line += f"; other outputs within the threshold: {escape(', '.join(str(o) for o in others))}"
        return line
    source = ledger.get("ingredient_of")
    if isinstance(source, Mapping):
        return (
            f"Ledger: not an output — the unmodified {escape(str(source.get('role')))} picture of output "
            f"<code>{escape(str(source.get('output_id')))}</code>"
        )
    return "Ledger: no record of this file in this installation"


def _ambiguous_ledger_line(ledger: Mapping[str, Any]) -> str:
    """Several outputs within the perceptual-hash threshold: each with its distance, none as the origin."""
    listed = [m for m in ledger.get("phash_matches") or [] if isinstance(m, Mapping)]
    count = int(ledger.get("phash_match_count") or len(listed))
    names = ", ".join(
        f"<code>{escape(str(m.get('output_id')))}</code> (distance {escape(str(m.get('phash_distance')))})"
        for m in listed
    )
    more = f" and {count - len(listed)} more" if count > len(listed) else ""
    return (
        f"Ledger: <b>ambiguous</b> — {count} recorded outputs are within the perceptual-hash threshold "
        f"({escape(str(ledger.get('phash_threshold')))} of 64 bits); none is named as this file's origin: "
        f"{names}{more}"
    )


def windows_table(report: VerifyReport) -> str:
    """A video's findings per time window, as an HTML table (at most ``MAX_WINDOW_ROWS`` rows)."""
    windows = list(getattr(report.disclosure, "windows", ()))
    if not windows:
        return ""
    summary = report.disclosure.watermark.output_id
    rows = []
    for w in windows[:MAX_WINDOW_ROWS]:
        if w.output_id is None:
            mark = '<span class="lk-muted">no id read</span>'
        elif w.output_id != summary:
            mark = f"<b>{escape(w.output_id)} — a different output</b>"
        else:
            mark = f"<code>{escape(w.output_id)}</code>"
        rows.append(
            f"<tr><td>{w.start:.2f}–{w.end:.2f} s</td><td>{w.frames}</td><td>{mark}</td>"
            f"<td>{'yes' if w.label_detected else 'no'}</td></tr>"
        )
    more = len(windows) - MAX_WINDOW_ROWS
    tail = f'<p class="lk-muted">… and {more} more window(s): see the JSON details.</p>' if more > 0 else ""
    return (
        "<p><b>Per time window</b></p>"
        '<table class="lk-windows"><thead><tr><th>Time</th><th>Frames</th><th>Watermark</th>'
        f"<th>Label</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{tail}"
    )


VERDICT_BANNERS = {
    "synthetic": ("synthetic", "AI-generated: this file is a disclosed synthetic output"),
    "probably-synthetic": ("warn", "Probably AI-generated: some of its disclosure is missing"),
    "tampered": ("refused", "TAMPERED: the content credentials are invalid"),
    "none": ("neutral", "No likeness disclosure found"),
}


def verify_banner(report: VerifyReport) -> str:
    """The verdict from ``report.status`` (its own colour and title each), then the evidence."""
    status = report.status
    kind, title = VERDICT_BANNERS.get(status, ("neutral", status))
    note = ""
    if status == "none":
        note = _p("Absence of a disclosure does not prove that a file is authentic.")
    elif status == "tampered":
        note = _p(
            "The file was changed after it was signed (edited, or its bytes damaged). Do not rely on "
            "its content credentials; the watermark and the ledger may still say where it came from."
        )
    body = f'<p class="lk-verdict">{escape(report.verdict)}</p>' + _items(disclosure_items(report))
    return banner(kind, title, body + windows_table(report) + note)


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


# -- models ----------------------------------------------------------------------------------------
MODEL_HEADERS = ["Model", "Role", "File", "Present", "Hash state", "Commercial use", "Licence"]
MODEL_WIDTHS = ["17%", "11%", "22%", "7%", "9%", "10%", "24%"]


def model_rows(lines: Sequence[ModelLine]) -> list[list[Any]]:
    today = dt.datetime.now(dt.UTC).date()
    return [
        [
            line.row.entry.name,
            line.row.entry.role,
            line.row.path.name,
            "yes" if line.row.present else "no",
            line.row.state,
            line.commercial_use(today),
            line.row.entry.licence,
        ]
        for line in lines
    ]


def models_json(lines: Sequence[ModelLine], *, full_paths: bool) -> dict[str, Any]:
    """The ``likeness models list --json`` rows; paths on the server only for administrators."""
    today = dt.datetime.now(dt.UTC).date()
    files = []
    for line in lines:
        data = line.row.to_dict()
        if not full_paths:
            data["file"] = line.row.path.name
            data.pop("how_to_get", None)
        data["commercial"] = line.commercial_use(today)
        data["commercial_licence"] = line.licence.to_dict() if line.licence is not None else None
        files.append(data)
    return api_safe({"status": "done", "files": files})


def models_banner(lines: Sequence[ModelLine]) -> str:
    usable = sum(1 for line in lines if line.row.usable)
    bad = [line for line in lines if line.row.unusable]
    restricted = [
        line.row.entry.name for line in lines if line.row.present and not line.row.entry.commercial_use
    ]
    body = f"<p>{usable} of {len(lines)} model files present and usable."
    if restricted:
        body += (
            f" Non-commercial licence: {escape(', '.join(restricted))} — a job for a commercial purpose "
            "(e.g. film) is refused unless a licence for it is recorded "
            "(<code>likeness models licence NAME --holder … --evidence …</code>)."
        )
    body += "</p>"
    if bad:
        lines_html = [f"{escape(line.row.entry.name)}: {escape(line.row.detail)}" for line in bad]
        return banner("refused", f"{len(bad)} model file(s) must not be loaded", body + _items(lines_html))
    return banner("neutral", "Models and licences", body)
