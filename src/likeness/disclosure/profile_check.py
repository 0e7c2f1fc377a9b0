"""Which disclosure profile a file carries, and whether it still meets it (for ``likeness verify``).

The profile is the one the signed manifest states (``org.likeness.disclosure``); one whose manifest
no longer validates (the file changed after signing) still names it, and fails the first check. A
copy whose manifest is gone is judged against the profile its output's **signed ledger entry**
states, when this installation's ledger finds the output (by watermark id or perceptual hash); it
then fails "content credentials present", and "machine-readable marking" says whether the watermark
still names the output. The checks read the file as it is now, so a re-encoded or stripped copy is
told apart from the sealed one:

* the label as recorded: its text at least 5 % of the shorter side; for ``eu`` in the top-right
  corner; footage under a profile with a start label: the start label recorded for the first 2 s;
* the label in the pixels: a plate found (footage: in at least half of the windows); for ``eu`` one
  in the top-right corner; its text measured at least 5 % of the shorter side (less
  ``MEASURE_TOLERANCE_PX`` for re-encoding); footage under a profile with a start label: a plate on
  the first frame where the start label was drawn, its text measured the same way;
* ``cn``: the AIGC implicit label present in the file's metadata, equal to the manifest's copy,
  naming the output, and bound to this picture (``ReservedCode1``'s perceptual hash within the
  usual distance of the file's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from likeness.disclosure.footage_read import VideoDisclosureReport
from likeness.disclosure.label import CAP_FRACTION, Plate
from likeness.disclosure.phash import MAX_DISTANCE, hamming
from likeness.disclosure.profiles import PROFILES
from likeness.disclosure.read import DisclosureReport

MANIFEST_SOURCE = "content credentials (org.likeness.disclosure)"
LEDGER_SOURCE = "the output's signed ledger entry"
MEASURE_TOLERANCE_PX = 2
"""Rows the measured text height may lose to re-encoding (anti-aliased edges turn grey)."""


@dataclass(frozen=True)
class ProfileCheck:
    """One requirement of the profile and whether the file meets it."""

    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class ProfileReport:
    """The profile a file carries (from its manifest) and whether it still meets it."""

    name: str | None
    rules: str | None = None
    source: str | None = None
    """Where the profile was read: the file's content credentials or this installation's ledger."""
    checks: tuple[ProfileCheck, ...] = ()
    recorded: dict[str, Any] | None = None
    """The manifest's ``org.likeness.disclosure`` assertion."""
    aigc_in_file: dict[str, str] | None = None
    aigc_in_manifest: dict[str, str] | None = None
    plates: tuple[dict[str, object], ...] = field(default=())
    note: str | None = None

    @property
    def meets(self) -> bool | None:
        """Every check passed (``None``: no profile to check against)."""
        return None if self.name is None else all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "source": self.source,
            "rules": self.rules,
            "meets": self.meets,
            "checks": [c.to_dict() for c in self.checks],
            "recorded": self.recorded,
            "aigc": {"in_file": self.aigc_in_file, "in_manifest": self.aigc_in_manifest},
            "plates_found": list(self.plates),
            "note": self.note,
        }

    def describe(self) -> list[str]:
        if self.name is None:
            line = f"  disclosure profile: none stated ({self.note})"
            if self.aigc_in_file:
                line += f"; the metadata carries an AIGC label naming {self.aigc_in_file.get('ProduceID')}"
            return [line]
        verdict = "meets it" if self.meets else "NO LONGER MEETS IT"
        lines = [f"  disclosure profile: {self.name} ({self.rules}); {verdict}"]
        if self.source == LEDGER_SOURCE:
            lines.append(f"    (stated by {LEDGER_SOURCE}: this copy carries no content credentials)")
        lines += [f"    {'ok ' if c.ok else 'NOT'} {c.name}: {c.detail}" for c in self.checks]
        return lines


def _plates(report: DisclosureReport | VideoDisclosureReport) -> list[Plate]:
    if isinstance(report, VideoDisclosureReport):
        return [plate for window in report.windows for plate in window.plates]
    return list(report.plates)


def _label_checks(
    name: str, recorded: dict[str, Any], report: DisclosureReport | VideoDisclosureReport
) -> list[ProfileCheck]:
    checks = []
    label = recorded.get("label") or {}
    fraction = float(label.get("cap_fraction") or 0.0)
    checks.append(
        ProfileCheck(
            "label size recorded",
            fraction >= CAP_FRACTION,
            f"text {label.get('cap_height_px')} px on a {label.get('shorter_side_px')} px shorter side "
            f"({fraction:.1%}; at least {CAP_FRACTION:.0%})",
        )
    )
    profile = PROFILES[name]
    if len(profile.corners) < 4:
        checks.append(
            ProfileCheck(
                "label corner recorded",
                label.get("corner") in profile.corners,
                f"{label.get('corner')} (the {name} profile: {', '.join(profile.corners)})",
            )
        )
    footage = isinstance(report, VideoDisclosureReport)
    if footage and profile.start_seconds > 0:
        start = recorded.get("start_label") or {}
        seconds = float(start.get("seconds") or 0.0)
        checks.append(
            ProfileCheck(
                "start label recorded",
                seconds >= profile.start_seconds,
                f"{start.get('text')!r} over the first {seconds:g} s (at least {profile.start_seconds:g} s)"
                if start
                else "no start label recorded",
            )
        )
    if report.unreadable:
        checks.append(ProfileCheck("label in the pixels", False, "the pixels could not be decoded"))
        return checks
    if footage and profile.start_seconds > 0:
        checks.append(_start_label_seen(recorded.get("start_label") or {}, report))
    short = min(report.width, report.height)
    plates = [p for p in _plates(report) if p.corner in profile.corners]
    if footage:
        labelled = sum(1 for w in report.windows if any(p.corner in profile.corners for p in w.plates))
        seen = bool(report.windows) and 2 * labelled >= len(report.windows)
        where = f"in {labelled} of {len(report.windows)} windows"
    else:
        seen = bool(plates)
        where = "found" if plates else "not found"
    corners = "any corner" if len(profile.corners) == 4 else f"the {', '.join(profile.corners)} corner"
    checks.append(ProfileCheck("label in the pixels", seen, f"a label plate in {corners}: {where}"))
    if plates:
        tallest = max(p.text_height for p in plates)
        if footage:  # every labelled window's label must be tall enough: the smallest of them
            tallest = min(
                max(p.text_height for p in w.plates if p.corner in profile.corners)
                for w in report.windows
                if any(p.corner in profile.corners for p in w.plates)
            )
        need = CAP_FRACTION * short - MEASURE_TOLERANCE_PX
        detail = f"{tallest} px of {short} px ({tallest / short:.1%}; at least {CAP_FRACTION:.0%}"
        if need <= tallest < CAP_FRACTION * short:  # passes only by the tolerance: say so
            detail += f", less the {MEASURE_TOLERANCE_PX} px measuring may lose to re-encoding"
        checks.append(ProfileCheck("label text height measured", tallest >= need, detail + ")"))
    return checks


def _start_label_seen(start: dict[str, Any], report: VideoDisclosureReport) -> ProfileCheck:
    """The start label as recorded, found on the first frame: a plate over the recorded box, its
    text measured at least 5 % of the shorter side (less the re-encoding tolerance)."""
    name = "start label in the pixels"
    if not start.get("box"):
        return ProfileCheck(name, False, "no start label recorded to look for")
    box = start["box"]
    recorded = tuple(int(box[k]) for k in ("left", "top", "right", "bottom"))
    short = min(report.width, report.height)
    over = [p for p in report.first_frame_plates if _overlap(p.box, recorded) >= 0.5]
    if not over:
        return ProfileCheck(
            name, False, f"no label plate on the first frame where it was drawn {list(recorded)}"
        )
    tallest = max(p.text_height for p in over)
    need = CAP_FRACTION * short - MEASURE_TOLERANCE_PX
    return ProfileCheck(
        name,
        tallest >= need,
        f"on the first frame where it was drawn; text {tallest} px of {short} px ({tallest / short:.1%}; "
        f"at least {CAP_FRACTION:.0%})",
    )


def _overlap(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _aigc_checks(
    report: DisclosureReport | VideoDisclosureReport,
    in_manifest: dict[str, str] | None,
    output_id: str | None,
    stated_by: str = "the signed manifest",
) -> list[ProfileCheck]:
    found = report.aigc
    checks = [
        ProfileCheck(
            "AIGC implicit label in the metadata",
            found is not None,
            "present (XMP TC260:AIGC)" if found else "missing: the metadata was stripped or rewritten",
        )
    ]
    if found is None:
        return checks
    checks.append(
        ProfileCheck(
            "AIGC matches the manifest" if stated_by == "the signed manifest" else "AIGC matches the ledger",
            found == in_manifest,
            f"the same JSON as {stated_by} states"
            if found == in_manifest
            else f"differs from {stated_by}'s copy (edited after signing?)",
        )
    )
    names = found.get("ProduceID")
    checks.append(
        ProfileCheck(
            "AIGC names the output",
            bool(names) and names == output_id and found.get("Label") == "1",
            f"Label {found.get('Label')!r}, ProduceID {names!r} ({stated_by} names {output_id})",
        )
    )
    bound = found.get("ReservedCode1", "")
    if bound.startswith("phash:") and report.phash:
        try:
            distance = min(hamming(bound[6:], h) for h in (report.phash_variants or (report.phash,)))
        except ValueError:
            distance = 64
        checks.append(
            ProfileCheck(
                "AIGC bound to this picture",
                distance <= MAX_DISTANCE,
                f"ReservedCode1's perceptual hash is {distance} of 64 bits from the file's "
                f"(at most {MAX_DISTANCE})",
            )
        )
    return checks


def check_profile(
    report: DisclosureReport | VideoDisclosureReport,
    *,
    ledger_disclosure: dict[str, Any] | None = None,
    ledger_aigc: dict[str, str] | None = None,
    ledger_output_id: str | None = None,
) -> ProfileReport:
    """The profile ``report``'s file carries and each requirement checked (see the module docstring).

    ``ledger_*``: what the output's authentic ledger entry states (``likeness verify`` passes them
    when this installation's ledger found the output); used only when the file's manifest is gone.
    """
    c2pa = report.c2pa
    if c2pa is None or c2pa.state == "absent":
        if ledger_disclosure is not None and ledger_disclosure.get("profile") in PROFILES:
            return _check_stripped(report, ledger_disclosure, ledger_aigc, ledger_output_id)
        return ProfileReport(name=None, aigc_in_file=report.aigc, note="no content credentials")
    recorded = c2pa.disclosure
    name = str((recorded or {}).get("profile") or "")
    if name not in PROFILES or recorded is None:
        return ProfileReport(
            name=None,
            aigc_in_file=report.aigc,
            aigc_in_manifest=c2pa.aigc,
            note="the manifest states no disclosure profile (made before profiles, or by another tool)",
        )
    checks = [
        ProfileCheck(
            "content credentials valid",
            c2pa.state != "invalid",
            f"{c2pa.state}: the manifest that states the profile "
            + ("no longer matches the file" if c2pa.state == "invalid" else "matches the file"),
        ),
        *_label_checks(name, recorded, report),
    ]
    if PROFILES[name].implicit:
        checks += _aigc_checks(report, c2pa.aigc, c2pa.output_id)
    return _report(report, name, recorded, checks, MANIFEST_SOURCE, c2pa.aigc)


def _check_stripped(
    report: DisclosureReport | VideoDisclosureReport,
    recorded: dict[str, Any],
    aigc: dict[str, str] | None,
    output_id: str | None,
) -> ProfileReport:
    """A copy without credentials, judged against the profile its output's ledger entry states."""
    name = str(recorded["profile"])
    wm = report.watermark
    marked = bool(wm.found) and wm.output_id == output_id
    if marked:
        marking = f"the watermark still names output {output_id}"
    elif wm.found:
        marking = f"the watermark names ANOTHER output ({wm.output_id}, the ledger found {output_id})"
    else:
        marking = "no watermark reads: only the perceptual hash ties this copy to its output"
    checks = [
        ProfileCheck(
            "content credentials present",
            False,
            "stripped: the copy carries no manifest (the profile comes from the ledger)",
        ),
        ProfileCheck("machine-readable marking", marked, marking),
        *_label_checks(name, recorded, report),
    ]
    if PROFILES[name].implicit:
        checks += _aigc_checks(report, aigc, output_id, stated_by="the ledger entry")
    return _report(report, name, recorded, checks, LEDGER_SOURCE, aigc)


def _report(
    report: DisclosureReport | VideoDisclosureReport,
    name: str,
    recorded: dict[str, Any],
    checks: list[ProfileCheck],
    source: str,
    aigc_stated: dict[str, str] | None,
) -> ProfileReport:
    short = min(report.width, report.height) or 1
    return ProfileReport(
        name=name,
        rules=str(recorded.get("rules") or PROFILES[name].rules),
        source=source,
        checks=tuple(checks),
        recorded=dict(recorded),
        aigc_in_file=report.aigc,
        aigc_in_manifest=aigc_stated,
        plates=tuple(p.to_dict(report.width or short, report.height or short) for p in _plates(report)),
    )
