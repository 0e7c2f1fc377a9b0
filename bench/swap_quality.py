"""Quality of the classical swapper, the committed version ("old") against the working tree ("new").

    PYTHONPATH=src python bench/swap_quality.py [--pairs 60] [--seed 7] [--old-ref HEAD]

The same random (source photo, target photo) pairs of different test identities go through both; each
output is analysed again with dlib and measured (one row per swapper):

- **ID top-1**: the output's nearest identity is the source (gallery: mean embedding per identity,
  leaving out the source and target photos of the pair).
- **closer to src**: the output is nearer the source photo's embedding than the target photo's.
- **landmarks**: mean distance of the output's 68 landmarks from the target's, % of inter-ocular distance.
  Since the swap moves the target's features part of the way to the source's layout (identity), this
  mixes face shape with pose and expression; the next column measures those alone.
- **pose / expression Δ**: mean absolute difference between the output and the target of the head turn
  (:func:`likeness.swap.classical._yaw`, −1..1), the mouth's opening and the eyes' opening (each a share
  of the mouth's or the eye's width): 0 when pose and expression are kept.
- **ΔE cheeks–neck**: CIELAB ΔE76 between the median colour of the output's cheeks and of the target's
  neck skin (pixels below the chin that look like this face's skin, see :func:`neck`; pairs with too
  little neck skin showing are left out). The target's own cheeks against its neck are printed for scale.
- **edge step**: how steeply the (slightly blurred) change of lightness rises across the outer edge of
  the changed region, in L* per 1 % of the face size (0: no step). A kept open mouth's edge is scored
  apart ("mouth edge", with its pair count): there the source's lips meet the target's teeth.
- **seam (first score)**: the same gradient along the whole edge of the changed region over its mean
  inside, as first defined; kept as it was, but a kept mouth's hole moves both its numerator and its
  denominator, so it no longer compares swappers that keep different things. The kept mouth's edge is
  not a mask seam: it runs along the inner lips, where the picture itself steps from lip to teeth, so a
  step in the change there is not seen as a seam; it is scored apart ("mouth edge"), and the seam that
  compares swappers is the outer one. The first score is also printed over the pairs where neither
  output has a hole.
- **seam (outer)**: the first score's ratio on the outer edge alone: holes in the changed region (a kept
  open mouth) filled, their edges left out of both the band and the inside, so it compares swappers
  that keep different things (the kept mouth's edge is the "mouth edge" column).
- **worse ID**: pairs where the new output is farther from the source than the old one by > --margin.

Outputs are never written: the people in the test photos did not consent to being swapped.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from likeness.errors import BadInput
from likeness.faces.dlib_backend import DlibAnalyzer
from likeness.faces.types import Face
from likeness.media.image import load_image
from likeness.swap.classical import SKIN_OUTLINE, ClassicalSwapper, _yaw
from likeness.swap.classical_masks import mouth_opening

REPO = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("LIKENESS_SHARED", REPO.parent / "shared")) / "testdata" / "faces"
CACHE = Path(tempfile.gettempdir()) / "likeness_swap_quality_faces.pkl"


@dataclass(frozen=True)
class Photo:
    identity: str
    path: Path


@dataclass
class Scores:
    top1: list[bool] = field(default_factory=list)
    closer: list[bool] = field(default_factory=list)
    landmark_error: list[float] = field(default_factory=list)
    pose: list[tuple[float, float, float]] = field(default_factory=list)
    """(|Δ yaw|, |Δ mouth opening|, |Δ eye opening|) of the output against the target, per pair."""
    delta_e: list[float] = field(default_factory=list)
    seam: list[float] = field(default_factory=list)
    outer_seam: list[float] = field(default_factory=list)
    edge: list[float] = field(default_factory=list)
    mouth_edge: list[float] = field(default_factory=list)
    seam_by_pair: dict[int, tuple[float, bool]] = field(default_factory=dict)
    """Pair number → (first seam score, whether the changed region has a hole)."""
    to_source: list[float] = field(default_factory=list)
    how: dict[int, str] = field(default_factory=dict)
    """Pair number → the mask used and whether the mouth was kept (swappers with ``swap_with_report``)."""
    lost: int = 0
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)


def photos() -> list[Photo]:
    found = []
    for folder in sorted(p for p in FACES.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
                found.append(Photo(folder.name, path))
    return found


def analysed(analyzer: DlibAnalyzer, every: list[Photo]) -> dict[Path, Face]:
    """The largest face of every photo (cached in the temp folder: analysing takes a while)."""
    cache: dict[Path, Face] = {}
    if CACHE.exists():
        cache = pickle.loads(CACHE.read_bytes())
    for photo in every:
        if photo.path not in cache:
            faces = analyzer.analyze(load_image(photo.path).pixels)
            if faces:
                cache[photo.path] = max(faces, key=lambda f: f.size)
    CACHE.write_bytes(pickle.dumps(cache))
    return cache


def old_module(ref: str) -> ModuleType:
    """``likeness.swap.classical`` as committed at ``ref``, imported from a temporary copy."""
    text = subprocess.run(
        ["git", "show", f"{ref}:src/likeness/swap/classical.py"], cwd=REPO, check=True, capture_output=True
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="classical_old_"))
    (folder / "classical_old.py").write_bytes(text)
    spec = importlib.util.spec_from_file_location("classical_old", folder / "classical_old.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["classical_old"] = module
    spec.loader.exec_module(module)
    return module


def eye_opening(points: np.ndarray) -> float:
    """Both eyes' mean height (upper to lower lid) as a share of their width (corner to corner)."""
    openings = []
    for eye in (points[36:42], points[42:48]):
        width = float(np.hypot(*(eye[3] - eye[0])))
        height = float(np.hypot(*(eye[[1, 2]] - eye[[5, 4]]).T).mean())
        openings.append(height / max(width, 1e-6))
    return float(np.mean(openings))


def pose_expression_change(out: np.ndarray, target: np.ndarray) -> tuple[float, float, float]:
    """(|Δ yaw|, |Δ mouth opening|, |Δ eye opening|) between two faces' 68 landmarks."""
    return (
        abs(_yaw(out) - _yaw(target)),
        abs(mouth_opening(out) - mouth_opening(target)),
        abs(eye_opening(out) - eye_opening(target)),
    )


def inter_ocular(points: np.ndarray) -> float:
    return float(np.hypot(*(points[42:48].mean(axis=0) - points[36:42].mean(axis=0))))


def median_lab(pixels: np.ndarray, region: np.ndarray) -> np.ndarray | None:
    if region.sum() < 50:
        return None
    lab = cv2.cvtColor(pixels.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    return np.median(lab[region], axis=0)


def cheeks(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape[:2], dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points[SKIN_OUTLINE]).astype(np.int32)], 255)
    for eye in (points[36:42], points[42:48]):  # the outline runs along the lower eyelids
        cv2.fillPoly(mask, [np.round(eye).astype(np.int32)], 0)
    return mask > 0


def neck(points: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """The target's neck skin: pixels below the chin (between the jaw points under the mouth corners,
    down to half a face height) whose hue and chroma are near the target's own cheeks'.

    A fixed box there often lands on a collar, a suit or a beard (measured: a mean ΔE of 21 against a
    median of 10); a box pixel counts only if it looks like skin of this face (hue within 20°, chroma
    within 0.5–1.6 times the cheeks', L* within 35 of them: necks lie in shadow).
    """
    shape = pixels.shape
    height = points[8, 1] - points[17:27, 1].mean()
    x0, x1 = sorted((points[4, 0], points[12, 0]))
    y0, y1 = points[8, 1] + 0.05 * height, points[8, 1] + 0.5 * height
    box = np.zeros(shape[:2], dtype=bool)
    rows = slice(max(0, int(y0)), max(0, min(shape[0], int(y1))))
    cols = slice(max(0, int(x0)), max(0, min(shape[1], int(x1))))
    box[rows, cols] = True
    own = median_lab(pixels, cheeks(points, shape))
    if own is None or box.sum() < 50:
        return box & False
    lab = cv2.cvtColor(pixels.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    chroma, own_chroma = np.hypot(lab[..., 1], lab[..., 2]), float(np.hypot(own[1], own[2]))
    skin = box & (np.abs(lab[..., 0] - own[0]) < 35.0)
    if own_chroma < 5.0:  # a greyscale photo: lightness alone
        return skin & (chroma < 10.0)
    hue = np.degrees(np.arctan2(lab[..., 2], lab[..., 1]))
    own_hue = float(np.degrees(np.arctan2(own[2], own[1])))
    near_hue = np.abs((hue - own_hue + 180.0) % 360.0 - 180.0) < 20.0
    return skin & near_hue & (chroma > 0.5 * own_chroma) & (chroma < 1.6 * own_chroma)


def seam_score(out: np.ndarray, target: np.ndarray, face_size: float) -> float | None:
    """How much the swap's change steps at the outer edge of what it changed, relative to inside.

    The change ``out - target`` (lightness, blurred by 1.5 % of the face to ignore pixel texture) varies
    inside the face with the features; a seam is where it steps along the edge of the changed region.
    Score: mean gradient magnitude of the change in a band around that region's edge over its mean in
    the rest of the changed region (a hard paste measures several times what a feathered, tone-matched
    one does). This is the score as first defined; its denominator depends on what the swap keeps (a
    kept open mouth leaves a hole whose edge counts as seam and whose inside lowers the mean), so
    :func:`edge_step` is the one compared.
    """
    changed = np.any(out != target, axis=2).astype(np.uint8)
    if changed.sum() < 100:
        return None
    width = max(3.0, 0.05 * face_size)
    inside = cv2.distanceTransform(changed, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - changed, cv2.DIST_L2, 5)
    band = ((changed > 0) & (inside < width)) | ((changed == 0) & (outside < width))
    core = (changed > 0) & (inside >= width)
    if core.sum() < 50:
        return None
    magnitude = change_gradient(out, target, face_size)
    return float(magnitude[band].mean() / max(float(magnitude[core].mean()), 1e-6))


@dataclass(frozen=True)
class _Edges:
    """The changed region with its holes filled, and the bands :func:`outer_seam_score` and
    :func:`edge_step` measure in (each ``width`` wide)."""

    band: np.ndarray
    """Both sides of the outer edge, away from the holes."""
    core: np.ndarray
    """The filled region deeper than ``width``, away from the holes."""
    near_hole: np.ndarray
    holes: np.ndarray


def _edges(out: np.ndarray, target: np.ndarray, face_size: float) -> _Edges | None:
    from scipy.ndimage import binary_fill_holes

    changed = np.any(out != target, axis=2)
    if changed.sum() < 100:
        return None
    filled = binary_fill_holes(changed)
    holes = cv2.morphologyEx((filled & ~changed).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    width = max(3.0, 0.05 * face_size)
    inside = cv2.distanceTransform(filled.astype(np.uint8), cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - filled.astype(np.uint8), cv2.DIST_L2, 5)
    near_hole = cv2.distanceTransform(1 - holes, cv2.DIST_L2, 5) < width
    band = ((filled & (inside < width)) | (~filled & (outside < width))) & ~near_hole
    core = filled & (inside >= width) & ~near_hole
    return _Edges(band=band, core=core, near_hole=near_hole, holes=holes)


def outer_seam_score(out: np.ndarray, target: np.ndarray, face_size: float) -> float | None:
    """:func:`seam_score` on the outer edge only: holes of the changed region filled, a band of the same
    width around each hole left out of both the edge band and the inside."""
    edges = _edges(out, target, face_size)
    if edges is None or edges.core.sum() < 50 or not edges.band.any():
        return None
    magnitude = change_gradient(out, target, face_size)
    return float(magnitude[edges.band].mean() / max(float(magnitude[edges.core].mean()), 1e-6))


def edge_step(out: np.ndarray, target: np.ndarray, face_size: float) -> tuple[float | None, float | None]:
    """(outer edge, hole edges): how steeply the change of lightness rises across the outer edge of the
    changed region, and across the edges of holes in it (a kept open mouth), in L* per 1 % of the face
    size (0: no step; the same absolute unit for every swapper, so nothing depends on what it kept).
    The hole value is None when there is no hole.
    """
    edges = _edges(out, target, face_size)
    if edges is None:
        return None, None
    per_percent = change_gradient(out, target, face_size) * (0.01 * face_size)
    outer = float(per_percent[edges.band].mean()) if edges.band.any() else None
    return outer, float(per_percent[edges.near_hole].mean()) if edges.holes.any() else None


def change_gradient(out: np.ndarray, target: np.ndarray, face_size: float) -> np.ndarray:
    """Gradient magnitude (L* per pixel) of the change of lightness, blurred by 1.5 % of the face."""

    def lightness(pixels: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(pixels.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[..., 0]

    change = cv2.GaussianBlur(lightness(out) - lightness(target), (0, 0), max(1.0, 0.015 * face_size))
    return np.hypot(cv2.Sobel(change, cv2.CV_32F, 1, 0), cv2.Sobel(change, cv2.CV_32F, 0, 1)) / 8.0


def nearest(analyzer: DlibAnalyzer, pixels: np.ndarray, where: Face) -> Face | None:
    faces = [f for f in analyzer.analyze(pixels) if abs(f.center_x - where.center_x) < where.size / 2]
    return faces[0] if faces else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--old-ref", default="HEAD", help="git revision of the 'old' classical.py")
    parser.add_argument("--margin", type=float, default=0.02, help="distance margin for 'worse ID'")
    parser.add_argument("--verbose", action="store_true", help="one line per pair")
    args = parser.parse_args()

    analyzer = DlibAnalyzer()
    every = photos()
    faces = analysed(analyzer, every)
    every = [p for p in every if p.path in faces]
    identities = sorted({p.identity for p in every})
    rng = np.random.default_rng(args.seed)
    pairs: list[tuple[Photo, Photo]] = []
    while len(pairs) < args.pairs:
        source, target = (every[i] for i in rng.choice(len(every), size=2, replace=False))
        if source.identity != target.identity:
            pairs.append((source, target))

    swappers = {"old": old_module(args.old_ref).ClassicalSwapper(), "new": ClassicalSwapper()}
    scores = {name: Scores() for name in swappers}
    own_delta_e: list[float] = []
    pixels_of: dict[Path, np.ndarray] = {}
    for number, (source, target) in enumerate(pairs):
        for photo in (source, target):
            if photo.path not in pixels_of:
                pixels_of[photo.path] = load_image(photo.path).pixels
        src_px, dst_px = pixels_of[source.path], pixels_of[target.path]
        src_face, dst_face = faces[source.path], faces[target.path]
        gallery = {
            name: np.mean(
                [faces[p.path].embedding for p in every if p.identity == name and p not in (source, target)],
                axis=0,
            )
            for name in identities
        }
        neck_lab = median_lab(dst_px, neck(dst_face.landmarks, dst_px))
        own = median_lab(dst_px, cheeks(dst_face.landmarks, dst_px.shape))
        if neck_lab is not None and own is not None:
            own_delta_e.append(float(np.linalg.norm(own - neck_lab)))
        line = [f"{number:2d} {source.identity}/{source.path.name} → {target.identity}/{target.path.name}"]
        for name, swapper in swappers.items():
            score = scores[name]
            start = time.perf_counter()
            try:
                if hasattr(swapper, "swap_with_report"):
                    out, report = swapper.swap_with_report(
                        dst_px, dst_face, src_px, src_face, timings=score.stages
                    )
                    score.how[number] = f"{report.mask} mask{', mouth kept' if report.mouth_kept else ''}"
                else:
                    out = swapper.swap(dst_px, dst_face, src_px, src_face, timings=score.stages)
            except BadInput:
                score.lost += 1
                line.append(f"{name}: refused")
                continue
            score.seconds += time.perf_counter() - start
            seam = seam_score(out, dst_px, float(dst_face.size))
            if seam is not None:
                score.seam.append(seam)
            outer_seam = outer_seam_score(out, dst_px, float(dst_face.size))
            if outer_seam is not None:
                score.outer_seam.append(outer_seam)
            outer_step, hole_step = edge_step(out, dst_px, float(dst_face.size))
            if outer_step is not None:
                score.edge.append(outer_step)
            if hole_step is not None:
                score.mouth_edge.append(hole_step)
            if seam is not None:
                score.seam_by_pair[number] = (seam, hole_step is not None)
            found = nearest(analyzer, out, dst_face)
            if found is None:
                score.lost += 1
                score.to_source.append(np.nan)
                line.append(f"{name}: no face")
                continue
            dists = {n: analyzer.distance(found.embedding, e) for n, e in gallery.items()}
            score.top1.append(min(dists, key=dists.__getitem__) == source.identity)
            d_src = analyzer.distance(found.embedding, src_face.embedding)
            d_dst = analyzer.distance(found.embedding, dst_face.embedding)
            score.closer.append(d_src < d_dst)
            score.to_source.append(d_src)
            error = np.linalg.norm(found.landmarks - dst_face.landmarks, axis=1).mean()
            score.landmark_error.append(100.0 * error / inter_ocular(dst_face.landmarks))
            score.pose.append(pose_expression_change(found.landmarks, dst_face.landmarks))
            cheek_lab = median_lab(out, cheeks(dst_face.landmarks, out.shape))
            if neck_lab is not None and cheek_lab is not None:
                score.delta_e.append(float(np.linalg.norm(cheek_lab - neck_lab)))
            line.append(
                f"{name}: d_src {d_src:.3f} seam {seam or 0:.2f} {score.how.get(number, '')}".rstrip()
            )
        if args.verbose:
            print(" | ".join(line), flush=True)

    old, new = scores["old"].to_source, scores["new"].to_source
    worse = [
        number
        for number, (a, b) in enumerate(zip(old, new, strict=True))
        if np.isfinite(a) and np.isfinite(b) and b > a + args.margin
    ]
    print(f"\n{args.pairs} pairs of {len(identities)} identities, seed {args.seed}; old = {args.old_ref}")
    print(f"target's own cheeks vs neck: median ΔE {np.median(own_delta_e):.1f}\n")
    header = ("", "ID top-1", "closer to src", "landmarks %IOD", "pose / expression Δ (yaw, mouth, eyes)")
    header += ("ΔE cheeks–neck", "edge step", "mouth edge")
    header += ("seam (first score)", "seam (outer)")
    header += ("lost", "s/swap")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, score in scores.items():
        done = max(1, args.pairs - score.lost)
        print(
            f"| {name} | {100 * np.mean(score.top1):.1f} % | {100 * np.mean(score.closer):.1f} % "
            f"| {np.mean(score.landmark_error):.2f} "
            f"| {' / '.join(f'{v:.3f}' for v in np.mean(score.pose, axis=0))} "
            f"| {np.median(score.delta_e):.1f} "
            f"(mean {np.mean(score.delta_e):.1f}) "
            f"| {np.median(score.edge):.3f} (mean {np.mean(score.edge):.3f}) "
            f"| {np.median(score.mouth_edge or [np.nan]):.3f} ({len(score.mouth_edge)}) "
            f"| {np.median(score.seam):.2f} (mean {np.mean(score.seam):.2f}) "
            f"| {np.median(score.outer_seam):.3f} (mean {np.mean(score.outer_seam):.3f}) "
            f"| {score.lost} | {score.seconds / done:.2f} |"
        )
    print(f"\npairs where new is farther from the source than old by > {args.margin}: {len(worse)}")
    for number in worse:
        source, target = pairs[number]
        print(
            f"  {number:2d} {source.identity}/{source.path.name} → {target.identity}/{target.path.name}: "
            f"{old[number]:.3f} → {new[number]:.3f} ({scores['new'].how.get(number, '')})"
        )
    no_hole = [
        number
        for number in scores["new"].seam_by_pair
        if number in scores["old"].seam_by_pair
        and not scores["new"].seam_by_pair[number][1]
        and not scores["old"].seam_by_pair[number][1]
    ]
    firsts = {n: np.median([scores[n].seam_by_pair[k][0] for k in no_hole] or [np.nan]) for n in scores}
    print(
        f"seam (first score) on the {len(no_hole)} pairs where neither output has a hole (kept mouth): "
        + ", ".join(f"{name} {value:.3f}" for name, value in firsts.items())
    )
    for name, score in scores.items():
        done = max(1, args.pairs - score.lost)
        stages = ", ".join(f"{stage} {1000 * seconds / done:.0f}" for stage, seconds in score.stages.items())
        print(f"{name}: ms per swap by stage: {stages}")


if __name__ == "__main__":
    main()
