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
from likeness.consent.registry import Reference, Registry
from likeness.disclosure.types import Ingredient, SealedOutput, Unsealed
from likeness.disclosure.verify import DisclosureReport, read_disclosure
from likeness.disclosure.writer import output_format, seal
from likeness.errors import BadInput, NoFace, UsageError
from likeness.faces.backends import load_analyzer
from likeness.faces.types import Analyzer, Face
from likeness.home import Home
from likeness.media.image import DEFAULT_MAX_PIXELS, Picture, load_image
from likeness.swap.backends import load_swapper

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


def detect_faces(
    path: Path, *, home: Home, backend: str = "dlib", max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Picture, list[Face]]:
    """Load an image and return its faces, left to right."""
    picture = load_image(path, max_pixels=max_pixels)
    analyzer = load_analyzer(backend, home)
    return picture, analyzer.analyze(picture.pixels)


def swap_image(request: SwapRequest, *, home: Home, progress: Progress = _no_progress) -> SwapOutcome:
    """Swap the face in ``request.source`` onto the target's face(s), gated and disclosed."""
    timer = StageTimer()
    output_format(request.out)  # an unwritable output type is refused before any work
    progress("decode", 0.0)
    with timer.stage("decode"):
        source = load_image(request.source, max_pixels=request.max_pixels)
        target = load_image(request.target, max_pixels=request.max_pixels)
    progress("detect", 0.1)
    with timer.stage("load models"):
        analyzer: Analyzer = load_analyzer(request.backend, home)
        swapper = load_swapper(request.backend, home)
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
            ingredients=[
                Ingredient(role="source", path=source.path, sha256=source.sha256, format=source.format),
                Ingredient(role="target", path=target.path, sha256=target.sha256, format=target.format),
            ],
            tools={"analyzer": analyzer.describe(), "swapper": swapper.describe()},
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
    backend: str = "dlib"
    max_pixels: int = DEFAULT_MAX_PIXELS


def enrol_identity(request: EnrolRequest, *, home: Home, progress: Progress = _no_progress):  # noqa: ANN201
    """Enrol a person from reference photos (each must show exactly one face)."""
    if not request.photos:
        raise UsageError("at least one --photo is needed to enrol an identity")
    analyzer = load_analyzer(request.backend, home)
    references: list[Reference] = []
    for number, photo in enumerate(request.photos):
        progress(f"reference {number + 1}/{len(request.photos)}", number / len(request.photos))
        picture = load_image(photo, max_pixels=request.max_pixels)
        face = _one_face(analyzer.analyze(picture.pixels), picture, "reference photo")
        references.append(Reference.from_face(face, picture))
    with Registry.open(home) as registry:
        identity = registry.add_identity(request.name, references, operator=request.operator)
    progress("done", 1.0)
    return identity


@dataclass(frozen=True)
class VerifyReport:
    """What a file says about itself (label, watermark, C2PA) and what this installation's ledger says."""

    file: Path
    disclosure: DisclosureReport
    ledger: dict[str, object]

    @property
    def verdict(self) -> str:
        wm = self.disclosure.watermark
        if wm.found and self.ledger.get("found"):
            return "synthetic: made by this installation (watermark and ledger agree)"
        if wm.found:
            return "synthetic: likeness watermark found, but no record of it in this installation's ledger"
        if self.ledger.get("found"):
            return "synthetic: no watermark read, but the file matches an output in the ledger"
        if self.disclosure.label_detected:
            return "probably synthetic: a visible AI label was found, but no watermark or ledger record"
        return "no likeness disclosure found (this does not prove the file is authentic)"

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"file": str(self.file), "verdict": self.verdict}
        data.update(self.disclosure.to_dict())
        data["ledger"] = self.ledger
        return data

    def describe(self) -> str:
        wm = self.disclosure.watermark
        lines = [f"{self.file}: {self.verdict}"]
        if wm.found:
            lines.append(f"  watermark: output id {wm.output_id} (confidence {wm.confidence:.2f})")
        else:
            lines.append("  watermark: none found")
        lines.append(f"  visible label: {'detected' if self.disclosure.label_detected else 'not detected'}")
        if self.ledger.get("found"):
            lines.append(
                f"  ledger: output {self.ledger.get('output_id')} made {self.ledger.get('created_at')} "
                f"by {self.ledger.get('operator')} under consent(s) {', '.join(self.ledger.get('consent_ids', []))}"
            )
        else:
            lines.append("  ledger: no record in this installation")
        return "\n".join(lines)


def verify_file(path: Path, *, home: Home) -> VerifyReport:
    """Read a file's disclosure and look its output id (else its hash) up in the ledger."""
    report = read_disclosure(path)
    ledger: dict[str, object] = {"found": False}
    with Registry.open(home) as registry:
        record = None
        if report.watermark.found and report.watermark.output_id:
            record = registry.get_output(report.watermark.output_id)
        if record is None:
            matches = registry.find_outputs_by_sha256(report.sha256)
            record = matches[0] if matches else None
        if record is not None:
            ledger = {"found": True, **record.to_dict()}
    return VerifyReport(file=path, disclosure=report, ledger=ledger)
