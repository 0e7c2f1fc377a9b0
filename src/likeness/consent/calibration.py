"""Calibrating the consent gate on a labelled folder of photos.

Layout: ``DIR/<identity>/<photo>``, one folder per person (folders starting with ``_`` or ``.``
are ignored, as are files at the top level). Each photo must show exactly one face; photos with
none or several are skipped and reported, as are unreadable files and byte-identical copies.

What is measured, in the analyzer's embedding space with the policy's metric for it:

* **pairs**: every two photos of one person (genuine) and of two people (impostor). Per threshold
  ``t`` (a pair is accepted when its distance ≤ ``t``, as in the gate): the false-accept rate over
  impostor pairs, with its one-sided 95 % Clopper–Pearson upper bound (≈ 3/n for no error in n
  pairs), and the false-reject rate over genuine pairs.
* **identification, leave one out**, through the gate's own rule (``gate.decide``: nearest identity
  within ``t``, any runner-up beyond ``t`` and ``margin`` farther): each photo is a probe against
  every other photo (its own identity keeps its remaining photos) — correct, refused, or taken for
  someone else; and each photo against a gallery without its whole identity (open set) — any match
  there is a false accept.

The operating point (see :func:`choose`): the *strictest* threshold on a 0.025 grid that meets the
false-reject target while the false-accept target holds (no identification-level false accept
either). The threshold may exceed the policy's default for the space only where the data
*demonstrates* the false-accept target (95 % upper bound ≤ target); a small folder cannot loosen
the gate, only tighten it. The margin and ``same_person_max`` are the policy's unless given.

Pairs share photos, so they are not independent: the bounds are optimistic, which is one more
reason the cap above exists.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from likeness.consent.gate import decide, rank_gallery
from likeness.consent.records import GalleryIdentity, OperatingPoint
from likeness.errors import BadInput, UsageError
from likeness.faces.types import Analyzer

if TYPE_CHECKING:
    from likeness.consent.registry import Registry

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
DEFAULT_TARGET_FAR = 0.001
DEFAULT_TARGET_FRR = 0.05
GRID_STEP = 0.025
CONFIDENCE = 0.95
MIN_GENUINE_PAIRS = 20
MIN_IMPOSTOR_PAIRS = 200
"""Below these counts nothing is stored: the rates would say nothing."""

Progress = Callable[[str, float], None]


def _no_progress(stage: str, fraction: float) -> None:
    return None


# -- the labelled faces ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelledFace:
    identity: str
    photo: str
    """Relative to the folder, e.g. ``obama/1.jpg``."""
    sha256: str
    embedding: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class SkippedPhoto:
    photo: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"photo": self.photo, "reason": self.reason}


@dataclass(frozen=True)
class LabelledFaces:
    """One embedding per usable photo of a labelled folder, in one embedding space."""

    folder: Path
    embedding_space: str
    model: dict[str, str]
    faces: list[LabelledFace]
    skipped: list[SkippedPhoto]

    @property
    def identities(self) -> list[str]:
        return sorted({face.identity for face in self.faces})

    def listing_sha256(self) -> str:
        """Names what was measured: sha256 over the sorted ``identity photo-sha256`` lines."""
        lines = sorted(f"{face.identity} {face.sha256}" for face in self.faces)
        return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _photos(folder: Path) -> list[tuple[str, Path]]:
    people = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    return [
        (person.name, photo)
        for person in people
        for photo in sorted(person.iterdir())
        if photo.is_file() and not photo.name.startswith(".")
    ]


def check_folder(folder: Path) -> list[tuple[str, Path]]:
    """(person, photo path) for every file in ``folder``'s person folders; BadInput if there are none."""
    if not folder.is_dir():
        raise BadInput(
            f"{folder}: not a folder", hint="give a folder with one sub-folder of photos per person"
        )
    photos = _photos(folder)
    if not photos:
        raise BadInput(
            f"{folder}: no identity folders with photos",
            hint="lay it out as DIR/<person>/<photo>.jpg, one folder per person",
        )
    return photos


def embed_folder(
    folder: Path, analyzer: Analyzer, *, progress: Progress = _no_progress, max_pixels: int | None = None
) -> LabelledFaces:
    """Embed the one face of every photo in ``folder``'s identity folders (see the module docstring)."""
    from likeness.media.image import DEFAULT_MAX_PIXELS, load_image

    folder = Path(folder)
    photos = check_folder(folder)
    faces: list[LabelledFace] = []
    skipped: list[SkippedPhoto] = []
    seen: dict[str, str] = {}
    for number, (identity, path) in enumerate(photos):
        name = f"{identity}/{path.name}"
        progress(f"photo {number + 1}/{len(photos)}", number / len(photos))
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(SkippedPhoto(name, f"not an image file ({path.suffix or 'no suffix'})"))
            continue
        try:
            picture = load_image(path, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
        except BadInput as error:
            skipped.append(SkippedPhoto(name, error.reason.replace(str(path), name)))
            continue
        if picture.sha256 in seen:
            skipped.append(SkippedPhoto(name, f"the same file as {seen[picture.sha256]}"))
            continue
        found = analyzer.analyze(picture.pixels)
        if len(found) != 1:
            why = "no face found" if not found else f"{len(found)} faces: the label cannot say which"
            skipped.append(SkippedPhoto(name, why))
            continue
        seen[picture.sha256] = name
        embedding = np.asarray(found[0].embedding, dtype=np.float32).ravel()
        faces.append(LabelledFace(identity, name, picture.sha256, embedding))
    progress("embedded", 1.0)
    return LabelledFaces(folder, analyzer.embedding_space, dict(analyzer.describe()), faces, skipped)


# -- the measurements ---------------------------------------------------------------------------
def upper_bound(errors: int, trials: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Clopper–Pearson upper bound of an error rate (1 - (1-c)^(1/n) for no error ≈ 3/n)."""
    if trials <= 0:
        return 1.0
    if errors >= trials:
        return 1.0
    if errors == 0:
        return 1.0 - (1.0 - confidence) ** (1.0 / trials)
    from scipy.stats import beta

    return float(beta.ppf(confidence, errors + 1, trials - errors))


def trials_needed(target: float, confidence: float = CONFIDENCE) -> int:
    """Error-free trials needed before the upper bound drops to ``target``."""
    return math.ceil(math.log(1.0 - confidence) / math.log(1.0 - target))


@dataclass(frozen=True)
class Spread:
    count: int
    minimum: float
    median: float
    maximum: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            return cls(0, math.nan, math.nan, math.nan)
        return cls(len(values), min(values), statistics.median(values), max(values))

    def to_dict(self) -> dict[str, Any]:
        if not self.count:
            return {"count": 0, "min": None, "median": None, "max": None}
        return {
            "count": self.count,
            "min": round(self.minimum, 6),
            "median": round(self.median, 6),
            "max": round(self.maximum, 6),
        }


@dataclass(frozen=True)
class Identification:
    """Leave-one-out identification through the gate's rule at one threshold."""

    genuine_probes: int
    """Photos whose person has other photos left in the gallery."""
    correct: int
    refused_not_enrolled: int
    refused_ambiguous: int
    wrong_identity: int
    """Taken for another enrolled person: a false accept."""
    open_set_probes: int
    """Every photo, against a gallery without its person."""
    open_set_accepted: int
    """Matched someone anyway: a false accept."""

    @property
    def refused(self) -> int:
        return self.refused_not_enrolled + self.refused_ambiguous

    @property
    def false_accepts(self) -> int:
        return self.wrong_identity + self.open_set_accepted

    def to_dict(self) -> dict[str, int]:
        return {
            "genuine_probes": self.genuine_probes,
            "correct": self.correct,
            "refused_not_enrolled": self.refused_not_enrolled,
            "refused_ambiguous": self.refused_ambiguous,
            "wrong_identity": self.wrong_identity,
            "open_set_probes": self.open_set_probes,
            "open_set_accepted": self.open_set_accepted,
        }


@dataclass(frozen=True)
class ThresholdRow:
    threshold: float
    false_accepts: int
    impostor_pairs: int
    false_rejects: int
    genuine_pairs: int
    identification: Identification

    @property
    def far(self) -> float:
        return self.false_accepts / self.impostor_pairs if self.impostor_pairs else math.nan

    @property
    def frr(self) -> float:
        return self.false_rejects / self.genuine_pairs if self.genuine_pairs else math.nan

    @property
    def far_upper(self) -> float:
        return upper_bound(self.false_accepts, self.impostor_pairs)

    @property
    def frr_upper(self) -> float:
        return upper_bound(self.false_rejects, self.genuine_pairs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "false_accepts": self.false_accepts,
            "impostor_pairs": self.impostor_pairs,
            "far": self.far,
            "far_upper95": self.far_upper,
            "false_rejects": self.false_rejects,
            "genuine_pairs": self.genuine_pairs,
            "frr": self.frr,
            "frr_upper95": self.frr_upper,
            "identification": self.identification.to_dict(),
        }


Pair = tuple[float, str, str]


@dataclass(frozen=True)
class Measurements:
    """Pair distances and the ranked galleries of every leave-one-out probe (threshold-free)."""

    genuine: list[Pair]
    impostor: list[Pair]
    closed: list[tuple[str, list[tuple[float, GalleryIdentity]]]]
    """(probe's identity, ranked gallery without the probe photo) for probes with a genuine match left."""
    open_set: list[list[tuple[float, GalleryIdentity]]]
    """Ranked gallery without the probe's whole identity, per photo."""


def measure(faces: LabelledFaces, point: OperatingPoint) -> Measurements:
    """Every pair distance and every leave-one-out ranking, with ``point``'s metric."""
    items = faces.faces
    if not items:
        raise BadInput(f"{faces.folder}: no photo with exactly one face", hint="see the skipped photos")
    matrix = np.stack([face.embedding for face in items])
    distances = np.stack([point.distances(face.embedding, matrix) for face in items])
    genuine: list[Pair] = []
    impostor: list[Pair] = []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            pair = (float(distances[i, j]), items[i].photo, items[j].photo)
            (genuine if items[i].identity == items[j].identity else impostor).append(pair)
    closed: list[tuple[str, list[tuple[float, GalleryIdentity]]]] = []
    open_set: list[list[tuple[float, GalleryIdentity]]] = []
    for i, probe in enumerate(items):
        others = [j for j in range(len(items)) if j != i]

        def gallery(keep: list[int]) -> list[GalleryIdentity]:
            people: dict[str, list[int]] = {}
            for j in keep:
                people.setdefault(items[j].identity, []).append(j)
            return [GalleryIdentity(name, name, matrix[rows]) for name, rows in people.items()]

        if any(items[j].identity == probe.identity for j in others):
            closed.append((probe.identity, rank_gallery(probe.embedding, gallery(others), point)))
        strangers = [j for j in others if items[j].identity != probe.identity]
        open_set.append(rank_gallery(probe.embedding, gallery(strangers), point))
    return Measurements(genuine, impostor, closed, open_set)


def evaluate(measured: Measurements, point: OperatingPoint) -> ThresholdRow:
    """Pair error counts and leave-one-out identification at ``point``'s threshold and margin."""
    t = point.threshold
    outcomes = {"match": 0, "not_enrolled": 0, "ambiguous": 0, "wrong": 0}
    for identity, ranked in measured.closed:
        found = decide(ranked, point)
        if found.outcome == "match" and found.best is not None and found.best.identity_id != identity:
            outcomes["wrong"] += 1
        else:
            outcomes[found.outcome] += 1
    accepted = sum(decide(ranked, point).outcome == "match" for ranked in measured.open_set)
    return ThresholdRow(
        threshold=t,
        false_accepts=sum(d <= t for d, _, _ in measured.impostor),
        impostor_pairs=len(measured.impostor),
        false_rejects=sum(d > t for d, _, _ in measured.genuine),
        genuine_pairs=len(measured.genuine),
        identification=Identification(
            genuine_probes=len(measured.closed),
            correct=outcomes["match"],
            refused_not_enrolled=outcomes["not_enrolled"],
            refused_ambiguous=outcomes["ambiguous"],
            wrong_identity=outcomes["wrong"],
            open_set_probes=len(measured.open_set),
            open_set_accepted=accepted,
        ),
    )


def threshold_grid(genuine: Spread, impostor: Spread, *, include: Sequence[float] = ()) -> list[float]:
    """Multiples of GRID_STEP from the median genuine distance to a little past the largest one
    (but not past the median impostor distance), always covering ``include``."""
    top = genuine.maximum + 2 * GRID_STEP
    if math.isfinite(impostor.median):
        top = min(top, impostor.median)
    lows = [v for v in (genuine.median, *include) if math.isfinite(v)]
    highs = [v for v in (top, *include) if math.isfinite(v)]
    if not lows or not highs:
        return []
    start = math.floor(min(lows) / GRID_STEP + 1e-9)
    stop = math.ceil(max(highs) / GRID_STEP - 1e-9)
    return [round(k * GRID_STEP, 3) for k in range(start, stop + 1)]


# -- the choice ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Calibration:
    """What ``likeness calibrate`` measured and chose (see the module docstring)."""

    embedding_space: str
    metric: str
    model: dict[str, str]
    folder: str
    dataset_sha256: str
    identities: int
    photos: int
    skipped: list[SkippedPhoto]
    genuine: Spread
    impostor: Spread
    rows: list[ThresholdRow]
    target_far: float
    target_frr: float
    policy_point: OperatingPoint
    chosen: ThresholdRow | None
    margin: float
    same_person_max: float
    far_demonstrated: bool
    frr_met: bool
    capped: bool
    closest_impostors: list[Pair]
    farthest_genuine: list[Pair]
    notes: list[str]
    problem: str | None
    """Why nothing can be stored from this data (too small, or no threshold is safe), else None."""

    @property
    def threshold(self) -> float | None:
        return None if self.chosen is None else self.chosen.threshold

    def to_dict(self) -> dict[str, Any]:
        return {
            "embedding_space": self.embedding_space,
            "metric": self.metric,
            "model": dict(self.model),
            "folder": self.folder,
            "dataset_sha256": self.dataset_sha256,
            "identities": self.identities,
            "photos": self.photos,
            "skipped": [s.to_dict() for s in self.skipped],
            "genuine": self.genuine.to_dict(),
            "impostor": self.impostor.to_dict(),
            "target": {"far": self.target_far, "frr": self.target_frr},
            "policy": {
                "threshold": self.policy_point.threshold,
                "margin": self.policy_point.margin,
                "source": self.policy_point.source,
            },
            "rows": [row.to_dict() for row in self.rows],
            "chosen": None
            if self.chosen is None
            else {
                **self.chosen.to_dict(),
                "margin": self.margin,
                "same_person_max": self.same_person_max,
                "far_demonstrated": self.far_demonstrated,
                "frr_met": self.frr_met,
                "capped_at_policy": self.capped,
            },
            "closest_impostor_pairs": [_pair_dict(p) for p in self.closest_impostors],
            "farthest_genuine_pairs": [_pair_dict(p) for p in self.farthest_genuine],
            "notes": list(self.notes),
            "problem": self.problem,
        }

    def table(self) -> str:
        """The per-threshold table, one line per threshold (→ marks the chosen one)."""
        lines = [
            "           impostor pairs            genuine pairs    | leave-one-out identification",
            " threshold  accepted    FAR   ≤95%   rejected    FRR  | refused  wrong id  strangers accepted",
        ]
        for row in self.rows:
            ident = row.identification
            mark = "→" if self.chosen is not None and row.threshold == self.chosen.threshold else " "
            accepts = f"{row.false_accepts}/{row.impostor_pairs}"
            rejects = f"{row.false_rejects}/{row.genuine_pairs}"
            refused = f"{ident.refused}/{ident.genuine_probes}"
            strangers = f"{ident.open_set_accepted}/{ident.open_set_probes}"
            lines.append(
                f"{mark}{row.threshold:9.3f}  {accepts:>8} {row.far:6.4f} {row.far_upper:6.4f}  {rejects:>8}"
                f" {row.frr:6.3f}  | {refused:>7} {ident.wrong_identity:9d}  {strangers:>18}"
            )
        return "\n".join(lines)

    def describe(self) -> str:
        lines = [
            f"calibration of {self.embedding_space} ({self.metric} distance) on {self.folder}",
            f"  {self.identities} identities, {self.photos} photos used, {len(self.skipped)} skipped; "
            f"{self.genuine.count} genuine pairs, {self.impostor.count} impostor pairs",
        ]
        for skipped in self.skipped:
            lines.append(f"  skipped {skipped.photo}: {skipped.reason}")
        if self.genuine.count and self.impostor.count:
            lines.append("  distance        min / median / max")
            for name, spread in (("genuine", self.genuine), ("impostor", self.impostor)):
                low, mid, high = spread.minimum, spread.median, spread.maximum
                lines.append(f"  {name:<10}  {low:.3f} / {mid:.3f} / {high:.3f}")
        lines += ["", self.table(), ""]
        for distance, a, b in self.closest_impostors:
            lines.append(f"  closest impostor pair  {distance:.3f}  {a} ~ {b}")
        for distance, a, b in self.farthest_genuine:
            lines.append(f"  farthest genuine pair  {distance:.3f}  {a} ~ {b}")
        lines.append("")
        if self.chosen is not None:
            lines.append(
                f"operating point: threshold {self.chosen.threshold:.3f}, margin {self.margin:.2f}, "
                f"same_person_max {self.same_person_max:.2f} "
                f"(policy default: {self.policy_point.threshold:.3f}, {self.policy_point.source})"
            )
        lines += [f"  - {note}" for note in self.notes]
        if self.problem:
            lines.append(f"not storable: {self.problem}")
        return "\n".join(lines)


def _pair_dict(pair: Pair) -> dict[str, Any]:
    return {"distance": round(pair[0], 6), "a": pair[1], "b": pair[2]}


def choose(
    rows: Sequence[ThresholdRow], *, target_far: float, target_frr: float, policy_threshold: float
) -> tuple[ThresholdRow | None, bool]:
    """(the chosen row, whether a looser safe row was passed over because the policy caps it).

    Safe rows: pair FAR ≤ target, no identification-level false accept, and — unless the data
    demonstrates FAR ≤ target at the 95 % bound — not looser than the policy's threshold. The
    strictest safe row meeting the FRR target is chosen; if none meets it, the loosest safe row.
    """

    def measured_safe(row: ThresholdRow) -> bool:
        return row.far <= target_far and row.identification.false_accepts == 0

    def allowed(row: ThresholdRow) -> bool:
        return row.far_upper <= target_far or row.threshold <= policy_threshold + 1e-9

    safe = [row for row in rows if measured_safe(row) and allowed(row)]
    capped = any(measured_safe(row) and not allowed(row) for row in rows)
    if not safe:
        return None, capped
    meeting = [row for row in safe if row.frr <= target_frr]
    if meeting:
        return meeting[0], False
    return safe[-1], capped


def calibrate(
    faces: LabelledFaces,
    policy_point: OperatingPoint,
    *,
    target_far: float = DEFAULT_TARGET_FAR,
    target_frr: float = DEFAULT_TARGET_FRR,
    margin: float | None = None,
) -> Calibration:
    """Measure ``faces`` and choose an operating point (nothing is stored here)."""
    if faces.embedding_space != policy_point.embedding_space:
        raise UsageError(
            f"the faces were embedded in {faces.embedding_space}, the operating point is for "
            f"{policy_point.embedding_space}"
        )
    if not 0 < target_far < 1 or not 0 < target_frr < 1:
        raise UsageError("the false-accept and false-reject targets must lie between 0 and 1")
    margin = policy_point.margin if margin is None else margin
    if margin < 0:
        raise UsageError(f"--margin must not be negative (got {margin})")
    measured = measure(faces, policy_point)
    genuine = Spread.of([d for d, _, _ in measured.genuine])
    impostor = Spread.of([d for d, _, _ in measured.impostor])
    grid = threshold_grid(genuine, impostor, include=[policy_point.threshold])
    rows = [evaluate(measured, replace(policy_point, threshold=t, margin=margin)) for t in grid]
    chosen, capped = choose(
        rows, target_far=target_far, target_frr=target_frr, policy_threshold=policy_point.threshold
    )
    same_person_max = max(policy_point.same_person_max, chosen.threshold if chosen else 0.0)
    far_demonstrated = chosen is not None and chosen.far_upper <= target_far
    frr_met = chosen is not None and chosen.frr <= target_frr
    problem = _problem(measured, chosen, target_far)
    result = Calibration(
        embedding_space=faces.embedding_space,
        metric=policy_point.metric,
        model=faces.model,
        folder=str(faces.folder),
        dataset_sha256=faces.listing_sha256(),
        identities=len(faces.identities),
        photos=len(faces.faces),
        skipped=list(faces.skipped),
        genuine=genuine,
        impostor=impostor,
        rows=rows,
        target_far=target_far,
        target_frr=target_frr,
        policy_point=policy_point,
        chosen=chosen,
        margin=margin,
        same_person_max=same_person_max,
        far_demonstrated=far_demonstrated,
        frr_met=frr_met,
        capped=capped,
        closest_impostors=sorted(measured.impostor)[:3],
        farthest_genuine=sorted(measured.genuine, reverse=True)[:3],
        notes=[],
        problem=problem,
    )
    return replace(result, notes=_notes(result))


def _problem(measured: Measurements, chosen: ThresholdRow | None, target_far: float) -> str | None:
    if len(measured.genuine) < MIN_GENUINE_PAIRS or len(measured.impostor) < MIN_IMPOSTOR_PAIRS:
        return (
            f"too little data: {len(measured.genuine)} genuine and {len(measured.impostor)} impostor pairs "
            f"(at least {MIN_GENUINE_PAIRS} and {MIN_IMPOSTOR_PAIRS} are needed to store an operating point)"
        )
    if chosen is None:
        return (
            f"no threshold on the grid keeps the false-accept rate at or below {target_far:g} "
            "with no identification-level false accept"
        )
    return None


def _notes(result: Calibration) -> list[str]:
    """Plain statements of what the numbers do and do not show."""
    row = result.chosen
    if row is None:
        return []
    n, k = row.impostor_pairs, row.false_accepts
    notes = [
        f"false accepts: {k} of {n} impostor pairs at {row.threshold:.3f}; the 95 % upper bound on the "
        f"true rate is {row.far_upper:.4f} (≈ 3/n = {3 / n:.4f} when there is no error)"
        if n
        else "no impostor pairs: the false-accept rate is unknown"
    ]
    if result.far_demonstrated:
        notes.append(f"the data demonstrates FAR ≤ {result.target_far:g} at the 95 % level")
    else:
        notes.append(
            f"the data is too small to demonstrate FAR ≤ {result.target_far:g}: that needs at least "
            f"{trials_needed(result.target_far)} impostor pairs with no false accept (here {n})"
        )
    notes.append(
        f"false rejects: {row.false_rejects} of {row.genuine_pairs} genuine pairs = {row.frr:.1%} "
        f"(95 % upper bound {row.frr_upper:.1%}); target ≤ {result.target_frr:.0%}: "
        + ("met" if result.frr_met else "NOT met (no safe threshold rejects fewer)")
    )
    ident = row.identification
    notes.append(
        f"leave-one-out identification (threshold + margin {result.margin:.2f}): {ident.correct} of "
        f"{ident.genuine_probes} probes matched their own identity, {ident.refused_not_enrolled} refused as "
        f"not enrolled, {ident.refused_ambiguous} as ambiguous, {ident.wrong_identity} taken for someone "
        f"else; {ident.open_set_accepted} of {ident.open_set_probes} probes of un-enrolled people matched"
    )
    if result.capped:
        notes.append(
            f"capped at the policy default {result.policy_point.threshold:.3f}: a looser threshold passed on "
            "this data but the data cannot demonstrate the false-accept target there"
        )
    if result.impostor.count:
        gap = result.impostor.minimum - row.threshold
        notes.append(f"the closest impostor pair lies {gap:+.3f} from the threshold")
    notes.append("pairs share photos and are not independent, so these bounds are optimistic")
    return notes


# -- running it -----------------------------------------------------------------------------------
def store(registry: Registry, result: Calibration, *, operator: str) -> OperatingPoint:
    """Store ``result``'s operating point for its embedding space (a ledger entry records it)."""
    if result.problem is not None or result.chosen is None:
        raise BadInput(
            f"nothing stored: {result.problem}",
            hint="calibrate on a larger labelled folder (more people, several photos each)",
        )
    row = result.chosen
    return registry.store_calibration(
        result.embedding_space,
        metric=result.metric,
        threshold=row.threshold,
        margin=result.margin,
        same_person_max=result.same_person_max,
        operator=operator,
        false_accept_rate=row.far,
        false_reject_rate=row.frr,
        genuine_pairs=row.genuine_pairs,
        impostor_pairs=row.impostor_pairs,
        dataset=f"{result.folder} (listing sha256 {result.dataset_sha256})",
        evidence={
            "model": dict(result.model),
            "identities": result.identities,
            "photos": result.photos,
            "dataset_sha256": result.dataset_sha256,
            "far_upper95": round(row.far_upper, 6),
            "frr_upper95": round(row.frr_upper, 6),
            "far_demonstrated": result.far_demonstrated,
            "frr_met": result.frr_met,
            "capped_at_policy": result.capped,
            "identification": row.identification.to_dict(),
            "policy_threshold": result.policy_point.threshold,
        },
    )


@dataclass(frozen=True)
class CalibrationRun:
    result: Calibration
    stored: OperatingPoint | None

    def to_dict(self) -> dict[str, Any]:
        stored = None
        if self.stored is not None:
            stored = {
                "embedding_space": self.stored.embedding_space,
                "threshold": self.stored.threshold,
                "margin": self.stored.margin,
                "source": self.stored.source,
            }
        return {**self.result.to_dict(), "stored": stored}


def run_calibration(
    faces_dir: Path,
    *,
    home: Any,
    backend: str = "dlib",
    operator: str,
    store_result: bool = True,
    target_far: float = DEFAULT_TARGET_FAR,
    target_frr: float = DEFAULT_TARGET_FRR,
    margin: float | None = None,
    progress: Progress = _no_progress,
) -> CalibrationRun:
    """Embed ``faces_dir`` with ``backend``, choose the operating point, store it if asked and possible.

    When the data cannot support an operating point (``result.problem``) nothing is stored and
    ``stored`` is None; the caller decides whether that is an error.
    """
    from likeness.consent.registry import Registry
    from likeness.faces.backends import load_analyzer

    check_folder(Path(faces_dir))  # before the (slow) model load
    analyzer = load_analyzer(backend, home)
    faces = embed_folder(Path(faces_dir), analyzer, progress=progress)
    with Registry.open(home) as registry:
        policy_point = registry.policy_operating_point(analyzer.embedding_space)
        if policy_point is None:
            raise UsageError(
                f"the consent policy has no [match] rule for {analyzer.embedding_space}, "
                "so its distance metric is unknown",
                hint=f"add one (metric, threshold, margin, same_person_max) to {registry.policy.source}",
            )
        result = calibrate(faces, policy_point, target_far=target_far, target_frr=target_frr, margin=margin)
        stored = None
        if store_result and result.problem is None:
            stored = store(registry, result, operator=operator)
    return CalibrationRun(result, stored)


__all__ = [
    "Calibration",
    "CalibrationRun",
    "LabelledFaces",
    "calibrate",
    "embed_folder",
    "run_calibration",
    "store",
    "upper_bound",
]
