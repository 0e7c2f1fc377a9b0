"""The one road every job walks: load → analyze → gate → swap → seal → record.

The CLI and the app call the functions here and nothing below them. Each step either hands a
value to the next or raises a typed error from ``likeness.errors``; nothing is written unless
every step before the writer succeeded.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from likeness.consent.gate import GateDecision, Involvement, check_consent
from likeness.consent.registry import Identity, Reference, Registry
from likeness.disclosure.phash import MAX_DISTANCE as PHASH_MAX_DISTANCE
from likeness.disclosure.types import Ingredient, SealedOutput, Unsealed
from likeness.disclosure.verify import (
    DisclosureReport,
    ingredient_role,
    ledger_matches_by_phash,
    read_disclosure,
)
from likeness.disclosure.video_verify import read_video_disclosure
from likeness.disclosure.writer import output_format, seal
from likeness.errors import BadInput, NoFace, UsageError
from likeness.faces.backends import available_analyzers, load_analyzer
from likeness.faces.types import Analyzer, Face
from likeness.home import Home
from likeness.licences import check_model_licences, manifest_entries
from likeness.media.image import DEFAULT_MAX_PIXELS, Picture, load_image
from likeness.media.video import looks_like_video
from likeness.swap.backends import load_swapper
from likeness.swap.types import Swapper

Progress = Callable[[str, float], None]
"""Called with a stage name and the fraction of the whole job done (0..1)."""


def _no_progress(stage: str, fraction: float) -> None:
    return None


def default_operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "unknown"


@dataclass
class StageTimer:
    """Wall-clock seconds per stage, in the order they ran."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass(frozen=True)
class SwapRequest:
    source: Path
    target: Path
    purpose: str
    out: Path
    face_index: int | None = None
    """Which target face to replace, counted from 0 left to right; ``None`` replaces every face."""
    backend: str = "dlib"
    operator: str = field(default_factory=default_operator)
    max_pixels: int = DEFAULT_MAX_PIXELS
    label_corner: str = "bottom-right"
    label_language: str = "en"


@dataclass(frozen=True)
class SwapOutcome:
    output: Path
    output_id: str
    sha256: str
    consents: list[str]
    faces_swapped: int
    decision: GateDecision
    timings: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        return {
            "output": str(self.output),
            "output_id": self.output_id,
            "sha256": self.sha256,
            "consents": list(self.consents),
            "faces_swapped": self.faces_swapped,
            "matches": [m.to_dict() for m in self.decision.matches],
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
        }


def _one_face(faces: Sequence[Face], picture: Picture, what: str) -> Face:
    if not faces:
        raise NoFace(
            f"{picture.path}: no face found in the {what}",
            hint="use a sharp, well-lit, roughly frontal photo where the face is at least 80 px tall",
        )
    if len(faces) > 1:
        raise BadInput(
            f"{picture.path}: the {what} shows {len(faces)} faces; it must show exactly one person",
            hint="crop the photo to the one person",
        )
    return faces[0]


def _chosen_targets(
    faces: Sequence[Face], picture: Picture, face_index: int | None
) -> list[tuple[int, Face]]:
    if not faces:
        raise NoFace(
            f"{picture.path}: no face found in the target image",
            hint="use an image where the face to replace is sharp, lit and at least 80 px tall",
        )
    if face_index is None:
        return list(enumerate(faces))
    if not 0 <= face_index < len(faces):
        raise UsageError(
            f"--face-index {face_index} is out of range: the target shows {len(faces)} face(s), "
            f"numbered 0 to {len(faces) - 1} from left to right",
            hint="run `likeness faces TARGET` to see them",
        )
    return [(face_index, faces[face_index])]


@dataclass(frozen=True)
class Engines:
    """One backend's loaded analyzer and swapper.

    Loading verifies and reads the model files (about 0.7 s for dlib); a long-running caller such as
    the app loads them once with :func:`load_engines` and passes them to every job.
    """

    backend: str
    analyzer: Analyzer
    swapper: Swapper


def load_engines(backend: str, home: Home) -> Engines:
    return Engines(
        backend=backend, analyzer=load_analyzer(backend, home), swapper=load_swapper(backend, home)
    )


def _engines_for(backend: str, home: Home, engines: Engines | None) -> Engines:
    if engines is not None and engines.backend == backend:
        return engines
    return load_engines(backend, home)


def detect_faces(
    path: Path,
    *,
    home: Home,
    backend: str = "dlib",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    engines: Engines | None = None,
) -> tuple[Picture, list[Face]]:
    """Load an image and return its faces, left to right."""
    picture = load_image(path, max_pixels=max_pixels)
    analyzer = (
        engines.analyzer
        if engines is not None and engines.backend == backend
        else load_analyzer(backend, home)
    )
    return picture, analyzer.analyze(picture.pixels)


def swap_image(
    request: SwapRequest,
    *,
    home: Home,
    progress: Progress = _no_progress,
    engines: Engines | None = None,
) -> SwapOutcome:
    """Swap the face in ``request.source`` onto the target's face(s), gated and disclosed.

    ``engines``: already-loaded models to reuse (used when their backend is ``request.backend``).
    """
    timer = StageTimer()
    output_format(request.out)  # an unwritable output type is refused before any work
    progress("decode", 0.0)
    with timer.stage("decode"):
        source = load_image(request.source, max_pixels=request.max_pixels)
        target = load_image(request.target, max_pixels=request.max_pixels)
    progress("detect", 0.1)
    with timer.stage("load models"):
        loaded = _engines_for(request.backend, home, engines)
        analyzer: Analyzer = loaded.analyzer
        swapper = loaded.swapper
    licences = check_model_licences(request.purpose, [*analyzer.model_files(), *swapper.model_files()], home)
    with timer.stage("detect+embed"):
        source_face = _one_face(analyzer.analyze(source.pixels), source, "source photo")
        targets = _chosen_targets(analyzer.analyze(target.pixels), target, request.face_index)

    progress("consent", 0.4)
    involved = [Involvement(face=source_face, role="source", label=f"source photo {source.path.name}")]
    involved += [
        Involvement(face=face, role="target", label=f"target face #{index} in {target.path.name}")
        for index, face in targets
    ]
    with Registry.open(home) as registry:
        with timer.stage("gate"):
            decision = check_consent(
                registry,
                involved,
                purpose=request.purpose,
                media_kind="image",
                analyzer=analyzer,
                operator=request.operator,
            )

        progress("swap", 0.5)
        with timer.stage("swap"):
            pixels = target.pixels
            for _, face in targets:
                pixels = swapper.swap(pixels, face, source.pixels, source_face)

        progress("disclose", 0.8)
        unsealed = Unsealed(
            pixels=pixels,
            kind="swap",
            purpose=request.purpose,
            consent_ids=decision.consent_ids,
            consent_hashes={cid: registry.get_consent(cid).terms_sha256() for cid in decision.consent_ids},
            ingredients=[
                Ingredient(role="source", path=source.path, sha256=source.sha256, format=source.format),
                Ingredient(role="target", path=target.path, sha256=target.sha256, format=target.format),
            ],
            tools={
                "analyzer": analyzer.describe(),
                "swapper": swapper.describe(),
                "models": manifest_entries(licences),
            },
            operator=request.operator,
            label_corner=request.label_corner,
            label_language=request.label_language,
        )

        def record(sealed: SealedOutput) -> None:
            registry.record_output(sealed, decision=decision, operator=request.operator)

        sealed = seal(unsealed, request.out, home=home, record=record, timer=timer)
    progress("done", 1.0)
    return SwapOutcome(
        output=sealed.path,
        output_id=sealed.output_id,
        sha256=sealed.sha256,
        consents=list(decision.consent_ids),
        faces_swapped=len(targets),
        decision=decision,
        timings=dict(timer.seconds),
    )


@dataclass(frozen=True)
class EnrolRequest:
    name: str
    photos: Sequence[Path]
    operator: str = field(default_factory=default_operator)
    backend: str = "all"
    """``all``: every available backend (see ``available_analyzers``), so any backend can match later."""
    max_pixels: int = DEFAULT_MAX_PIXELS


def enrol_identity(request: EnrolRequest, *, home: Home, progress: Progress = _no_progress) -> Identity:
    """Enrol a person from reference photos (each must show exactly one face)."""
    if not request.photos:
        raise UsageError("at least one --photo is needed to enrol an identity")
    analyzers = (
        available_analyzers(home) if request.backend == "all" else [load_analyzer(request.backend, home)]
    )
    references: list[Reference] = []
    for number, photo in enumerate(request.photos):
        progress(f"reference {number + 1}/{len(request.photos)}", number / len(request.photos))
        picture = load_image(photo, max_pixels=request.max_pixels)
        for analyzer in analyzers:
            face = _one_face(analyzer.analyze(picture.pixels), picture, f"reference photo ({analyzer.name})")
            references.append(Reference.from_face(face, picture))
    with Registry.open(home) as registry:
        identity = registry.add_identity(request.name, references, operator=request.operator)
    progress("done", 1.0)
    return identity


@dataclass(frozen=True)
class VerifyReport:
    """What a file says about itself (C2PA, watermark, label) and what this installation's ledger says.

    ``status`` is one of ``synthetic`` (a watermark, valid credentials or an exact ledger record
    says so), ``probably-synthetic`` (only a perceptual-hash match or a visible label),
    ``tampered`` (content credentials present but invalid) or ``none``.
    """

    file: Path
    disclosure: DisclosureReport
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
            return f"synthetic — {self._made()} ({'; '.join(evidence) or f'matched by {matched_by}'})"
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
        if status == "probably-synthetic" and found:
            text = (
                f"probably synthetic — no watermark or content credentials, but it looks like {self._made()} "
                f"(perceptual-hash distance {self.ledger.get('phash_distance')} of 64 bits, threshold "
                f"{self.ledger.get('phash_threshold')}): a re-encoded, stripped or edited copy"
            )
            if self.disclosure.label_detected:
                return text + " that still shows its AI label"
            return text + " (or an edited copy of the picture it was made from)"
        if status == "probably-synthetic":
            return (
                "probably synthetic — a visible AI label was found, but no watermark, credentials "
                "or ledger record"
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

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"file": str(self.file), "verdict": self.verdict, "status": self.status}
        data.update(self.disclosure.to_dict())
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
        if wm.found:
            lines.append(f"  watermark: output id {wm.output_id} (confidence {wm.confidence:.2f})")
        else:
            lines.append("  watermark: none found")
        lines.append(f"  visible label: {'detected' if self.disclosure.label_detected else 'not detected'}")
        if hasattr(self.disclosure, "describe_windows"):
            lines += ["  per time window:", *(f"    {line}" for line in self.disclosure.describe_windows())]
        if self.ledger.get("found"):
            how = self.ledger.get("matched_by")
            if how == "perceptual hash":
                how = f"perceptual hash, distance {self.ledger.get('phash_distance')}"
            lines.append(
                f"  ledger: output {self.ledger.get('output_id')} made {self.ledger.get('created_at')} "
                f"by {self.ledger.get('operator')} for {self.ledger.get('purpose')} under consent(s) "
                f"{', '.join(self.ledger.get('consent_ids', []))} (found by {how})"
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


def verify_file(path: Path, *, home: Home) -> VerifyReport:
    """Read a file's disclosure and find it in the ledger: by watermark id, by the id in its content
    credentials, by file hash, else by perceptual hash (a stripped or re-encoded copy)."""
    report = (
        read_video_disclosure(path, home=home) if looks_like_video(path) else read_disclosure(path, home=home)
    )
    ledger: dict[str, object] = {"found": False, "phash_threshold": PHASH_MAX_DISTANCE}
    with Registry.open(home) as registry:
        record, matched_by, distance, others = None, None, None, []
        if report.watermark.found and report.watermark.output_id:
            record, matched_by = registry.get_output(report.watermark.output_id), "watermark"
        if record is None and report.c2pa.output_id and report.c2pa.state != "absent":
            record, matched_by = registry.get_output(report.c2pa.output_id), "content credentials"
        if record is None:
            matches = registry.find_outputs_by_sha256(report.sha256)
            record, matched_by = (matches[0] if matches else None), "sha256"
        if record is None:
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
                **record.to_dict(),
            }
    return VerifyReport(file=path, disclosure=report, ledger=ledger)
