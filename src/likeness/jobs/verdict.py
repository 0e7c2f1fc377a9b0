"""The words of ``likeness verify``: one verdict sentence and the details, from what a file says
about itself (:mod:`likeness.disclosure.read`) and what this installation's ledger says."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from likeness.disclosure.footage_read import VideoDisclosureReport
from likeness.disclosure.profile_check import ProfileReport, check_profile
from likeness.disclosure.read import DisclosureReport


@dataclass(frozen=True)
class VerifyReport:
    """What a file says about itself (C2PA, watermark, label) and what this installation's ledger says.

    ``status`` is one of ``synthetic`` (a watermark, valid credentials or an exact ledger record
    says so), ``probably-synthetic`` (only a perceptual-hash match or a visible label; a match
    within the threshold of several outputs is ``ambiguous`` and names none of them as the origin),
    ``tampered`` (content credentials present but invalid) or ``none``.
    """

    file: Path
    disclosure: DisclosureReport | VideoDisclosureReport
    ledger: dict[str, object]

    @property
    def status(self) -> str:
        c2pa, wm = self.disclosure.c2pa, self.disclosure.watermark
        if c2pa.state == "invalid":
            return "tampered"
        matched_by = self.ledger.get("matched_by")
        if wm.found or (self.ledger.get("found") and matched_by != "perceptual hash"):
            return "synthetic"
        if c2pa.state in ("trusted", "valid-untrusted") and (c2pa.by_likeness or c2pa.ai_generated):
            return "synthetic"
        if self.ledger.get("found") or self.disclosure.label_detected:
            return "probably-synthetic"
        return "none"

    def _withdrawn_words(self) -> str:
        """'; consent … was WITHDRAWN on …' for each of the output's consents revoked since."""
        parts = []
        for item in self.ledger.get("withdrawn") or []:
            when = str(item.get("revoked_at") or "")[:10]
            reason = f" ({item['reason']})" if item.get("reason") else ""
            parts.append(
                f"consent {item['consent_id']} was WITHDRAWN on {when}{reason}"
                if when
                else f"consent {item['consent_id']} is {item.get('reason')}"
            )
        return "; " + "; ".join(parts) + " — the person no longer consents to this output" if parts else ""

    def _made(self) -> str:
        return (
            f"output {self.ledger.get('output_id')} made by this installation "
            f"on {str(self.ledger.get('created_at', ''))[:10]}"
        )

    @property
    def verdict(self) -> str:
        """One sentence in words (starts with the status: synthetic, probably synthetic, tampered, no …)."""
        c2pa, wm = self.disclosure.c2pa, self.disclosure.watermark
        found, matched_by = bool(self.ledger.get("found")), self.ledger.get("matched_by")
        status = self.status
        if status == "tampered":
            text = (
                "tampered — the content credentials are INVALID "
                f"({', '.join(c2pa.reasons) or 'unreadable manifest'}): the file changed after it was signed"
            )
            if wm.found:
                text += f"; its watermark still names output {wm.output_id}"
            if self.disclosure.unreadable:
                text += f"; its pixels no longer decode ({self.disclosure.unreadable})"
            if found:
                text += f" ({self._made()})"
            return text
        if status == "synthetic" and found and matched_by != "perceptual hash":
            evidence = []
            if wm.found and wm.output_id == self.ledger.get("output_id"):
                evidence.append("watermark and ledger agree")
            if c2pa.state == "trusted":
                evidence.append("content credentials trusted")
            elif c2pa.state == "valid-untrusted":
                evidence.append("content credentials valid but not signed by a trusted certificate")
            if matched_by == "sha256":
                evidence.append("the exact file is in the ledger")
            text = f"synthetic — {self._made()} ({'; '.join(evidence) or f'matched by {matched_by}'})"
            return text + self._withdrawn_words()
        if status == "synthetic" and wm.found:
            return (
                f"synthetic — a likeness watermark names output {wm.output_id}, but this installation has "
                "no record of it (made by another installation?)"
            )
        if status == "synthetic":
            signer = c2pa.signer.get("common_name") or c2pa.signer.get("issuer") or "an unknown signer"
            return (
                f"synthetic — content credentials signed by {signer} ({c2pa.state}) declare it "
                f"AI-generated ({(c2pa.digital_source_type or '').rsplit('/', 1)[-1]})"
            )
        if status == "probably-synthetic" and self.ambiguous:
            return self._ambiguous_verdict()
        if status == "probably-synthetic" and found:
            text = (
                f"probably synthetic — no watermark or content credentials, but it looks like {self._made()} "
                f"(perceptual-hash distance {self.ledger.get('phash_distance')} of 64 bits, threshold "
                f"{self.ledger.get('phash_threshold')}): a re-encoded, stripped or edited copy"
            )
            if self.disclosure.label_detected:
                return text + " that still shows its AI label" + self._withdrawn_words()
            return text + " (or an edited copy of the picture it was made from)" + self._withdrawn_words()
        if status == "probably-synthetic":
            return (
                "probably synthetic — a visible AI label was found, but no watermark, credentials "
                "or ledger record"
            )
        if self.disclosure.unreadable:
            return (
                "no likeness disclosure found — the pixels could not be decoded "
                f"({self.disclosure.unreadable}), so the watermark and the label were not read; "
                "neither the content credentials nor the ledger (by file hash) know this file"
            )
        source = self.ledger.get("ingredient_of")
        if isinstance(source, dict):
            return (
                f"no likeness disclosure found — this is the unmodified {source.get('role')} picture that "
                f"output {source.get('output_id')} was made from (this does not prove the file is authentic)"
            )
        if c2pa.present:
            return (
                "no likeness disclosure found; the file's content credentials do not declare AI generation "
                "(this does not prove the file is authentic)"
            )
        return "no likeness disclosure found (this does not prove the file is authentic)"

    @property
    def ambiguous(self) -> bool:
        """Whether the ledger was found only by perceptual hash, and more than one output is within
        its threshold: then none of them is named as the file's origin."""
        return bool(self.ledger.get("found") and self.ledger.get("ambiguous"))

    def _ambiguous_verdict(self) -> str:
        count, ties = self.ledger.get("phash_match_count"), int(self.ledger.get("phash_ties") or 0)
        tied = f", tied with {ties} other{'s' if ties != 1 else ''}" if ties else ""
        text = (
            f"probably synthetic — no watermark or content credentials, but it looks like {count} outputs "
            f"made by this installation (perceptual hash within the threshold of "
            f"{self.ledger.get('phash_threshold')} of 64 bits; closest {self.ledger.get('output_id')} at "
            f"distance {self.ledger.get('phash_distance')}{tied}): AMBIGUOUS, the hash cannot tell which "
            "one, if any, this is a copy of"
        )
        if self.disclosure.label_detected:
            return text + "; it still shows an AI label"
        return text + " (it may also be an edited copy of a picture they were made from)"

    def _candidate_lines(self) -> list[str]:
        """The outputs an ambiguous perceptual-hash match could be, nearest first, capped."""
        listed = [item for item in self.ledger.get("phash_matches") or [] if isinstance(item, dict)]
        count = int(self.ledger.get("phash_match_count") or len(listed))
        lines = [
            f"  ledger: AMBIGUOUS — {count} recorded outputs are within the perceptual-hash threshold "
            f"({self.ledger.get('phash_threshold')}); none is named as this file's origin:"
        ]
        for item in listed:
            withdrawn = ", ".join(str(w["consent_id"]) for w in item.get("withdrawn") or [])
            lines.append(
                f"    {item['output_id']}  distance {item['phash_distance']}  made "
                f"{str(item['created_at'])[:10]} for {item['purpose']}"
                + (f"  (consent {withdrawn} withdrawn since)" if withdrawn else "")
            )
        if count > len(listed):
            lines.append(f"    … and {count - len(listed)} more (their ids: --json, ledger.other_matches)")
        return lines

    @property
    def soft_binding(self) -> dict[str, object] | None:
        """The manifest's soft binding checked against the watermark read from the pixels."""
        c2pa = self.disclosure.c2pa
        bound = c2pa.soft_binding if c2pa is not None else None
        if not bound:
            return None
        wm = self.disclosure.watermark
        ids = list(bound.get("values") or [])
        agrees = None if not wm.found else wm.output_id in ids
        return {"alg": bound.get("alg"), "output_ids": ids, "watermark_agrees": agrees}

    @property
    def profile(self) -> ProfileReport:
        """The disclosure profile the manifest states and whether the file still meets it."""
        recorded = self.ledger.get("disclosure") if self.ledger.get("found") and not self.ambiguous else None
        aigc = self.ledger.get("aigc") if recorded else None
        return check_profile(
            self.disclosure,
            ledger_disclosure=recorded if isinstance(recorded, dict) else None,
            ledger_aigc=aigc if isinstance(aigc, dict) else None,
            ledger_output_id=str(self.ledger.get("output_id") or "") or None,
        )

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"file": str(self.file), "verdict": self.verdict, "status": self.status}
        data.update(self.disclosure.to_dict())
        data["soft_binding"] = self.soft_binding
        data["profile"] = self.profile.to_dict()
        data["ledger"] = self.ledger
        return data

    def describe(self) -> str:
        c2pa, wm = self.disclosure.c2pa, self.disclosure.watermark
        lines = [f"{self.file}: {self.verdict}"]
        lines.append(f"  content credentials (C2PA): {c2pa.describe()}")
        if c2pa.present and c2pa.output_id:
            lines.append(
                f"    names output {c2pa.output_id}, consent(s) {', '.join(c2pa.consent_ids) or 'none'}; "
                f"source type {(c2pa.digital_source_type or 'not stated').rsplit('/', 1)[-1]}; "
                f"{len(c2pa.ingredients)} ingredient(s)"
            )
        soft = self.soft_binding
        if soft is not None:
            agree = {
                True: "the watermark reads the same id",
                False: "the watermark reads ANOTHER id",
                None: "no watermark read to compare",
            }[soft["watermark_agrees"]]  # type: ignore[index]
            names = ", ".join(soft["output_ids"])  # type: ignore[arg-type]
            lines.append(f"  soft binding (c2pa.soft-binding, {soft['alg']}): names {names}; {agree}")
        if wm.found:
            lines.append(f"  watermark: output id {wm.output_id} (confidence {wm.confidence:.2f})")
        else:
            lines.append("  watermark: none found")
        lines.append(f"  visible label: {'detected' if self.disclosure.label_detected else 'not detected'}")
        lines += self.profile.describe()
        if self.disclosure.unreadable:
            lines.append(
                f"  pixels: could not be decoded ({self.disclosure.unreadable}); the watermark and the "
                "label were not read"
            )
        if isinstance(self.disclosure, VideoDisclosureReport):
            lines += ["  per time window:", *(f"    {line}" for line in self.disclosure.describe_windows())]
        if self.ambiguous:
            lines += self._candidate_lines()
        elif self.ledger.get("found"):
            how = self.ledger.get("matched_by")
            if how == "perceptual hash":
                how = f"perceptual hash, distance {self.ledger.get('phash_distance')}"
            lines.append(
                f"  ledger: output {self.ledger.get('output_id')} made {self.ledger.get('created_at')} "
                f"by {self.ledger.get('operator')} for {self.ledger.get('purpose')} under consent(s) "
                f"{', '.join(self.ledger.get('consent_ids', []))} (found by {how})"
            )
            for item in self.ledger.get("withdrawn") or []:
                lines.append(
                    f"    consent {item['consent_id']} withdrawn "
                    f"{str(item.get('revoked_at') or '')[:19] or '(no longer in the registry)'}"
                    + (f": {item['reason']}" if item.get("reason") else "")
                )
            others = self.ledger.get("other_matches") or []
            if others:
                lines.append(f"    other outputs within the perceptual-hash threshold: {', '.join(others)}")
        elif isinstance(self.ledger.get("ingredient_of"), dict):
            source = self.ledger["ingredient_of"]
            lines.append(
                f"  ledger: not an output; the exact {source.get('role')} picture of output "
                f"{source.get('output_id')}"
            )
        else:
            lines.append("  ledger: no record in this installation")
        ids = {i for i in (wm.output_id, c2pa.output_id) if i}
        if len(ids) > 1:
            lines.append(
                f"  note: the watermark and the credentials name different outputs ({', '.join(sorted(ids))})"
            )
        return "\n".join(lines)
