"""The classical swapper: landmark-driven piecewise-affine warp, colour matching and seamless blending.

No learned model beyond the 68-point landmarks the analyzer already found. The steps, one function each:

1. **Pose.** Faces turned further than :data:`MAX_YAW` are refused with a reason (a 3/4-to-profile
   face cannot be served by a 2-D warp: the result looks like a mask). A source turned the other way
   from the target is mirrored: faces are near enough symmetric that the mirror image is the better donor.
2. **Regions.** Work in a square around the target face (1.6× the landmarks' extent) and a matching
   one around the source face. Parts of either square outside its photo are filled by mirroring the
   photo, so landmarks predicted outside the photo (a face cut by the border) never sample a flat
   colour. A source face larger than the target is area-downscaled first (no aliasing); a target
   square larger than :data:`MAX_WORK_SIDE` is processed downscaled and the result upscaled (bounded
   memory on 60–100 MP photos).
3. **Warp.** Delaunay triangulation of the target's landmarks 0–59 (not the inner lips: they coincide
   in a closed mouth and fold against an open one), ten forehead points (the brows lifted along the
   face's up direction) and points on the square's border (mapped by the best similarity transform).
   The target's brows, eyes, nose and outer lips are first moved part of the way (:data:`SHAPE_SHARE`)
   to the source's layout, aligned onto the target's face: the face shape is then partly the source's,
   which is much of its identity, while the jaw, the pose and the inner lips stay the target's.
   Points within a pixel of each other are merged; triangles that would fold over are relaxed towards
   the similarity transform; each target pixel takes its triangle's affine map (one ``cv2.remap``,
   continuous across triangle edges, never NaN).
4. **Mask.** Convex hull of the jaw and the forehead points, eroded by 6 % of the face size and blurred
   within that erosion: it follows the jaw, replaces the brows (the seam runs over smooth forehead
   skin), and is exactly 0 outside the hull, so every pixel outside it is returned unchanged. A full
   dark beard on the target is cut out of it pixel by pixel; a kept open mouth is cut out inside the
   inner lips.
5. **Colour.** In CIELAB, measured on cheek-and-nose skin of both faces: a monotone lightness curve
   matching the 5th/50th/95th percentiles (slopes limited, soft roll-off instead of clipping), chroma
   scaled (not shifted) to the target's mean so whites stay white. A greyscale or sepia source takes the
   target's own smoothed chroma, so lips and cheeks get the target's colouring.
6. **Blend.** ``pyramid`` (default): a Laplacian-pyramid blend, then the feathered mask. ``poisson``:
   ``cv2.seamlessClone``. Looking at both on the test photos, Poisson pulls dark boundary content (hair,
   beard, shadow) into the face as blotches and shifts the whole face's tone; the pyramid blend keeps
   the colour-matched face and hides the seam, so it is the default.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from likeness.errors import BadInput, UsageError
from likeness.faces.types import Face
from likeness.models import ModelUse
from likeness.swap.classical_masks import (
    CHEEKS,
    INNER_LIPS,
    FacialHair,
    beard_weight,
    facial_hair,
    keeps_target_mouth,
    mouth_interior,
    mouth_opening,
    to_lab,
)
from likeness.swap.skin_tone import match_colour, match_surroundings

BLENDS = ("pyramid", "poisson")

JAW = np.arange(0, 17)
BROWS = np.arange(17, 27)
WARP_POINTS = np.arange(0, 60)
"""Landmarks used by the warp: all but the inner lips (60–67)."""
# fmt: off
MIRROR_68 = np.array([
    16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,  # jaw
    26, 25, 24, 23, 22, 21, 20, 19, 18, 17,                    # brows
    27, 28, 29, 30, 35, 34, 33, 32, 31,                        # nose
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,            # eyes
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,            # outer lips
    64, 63, 62, 61, 60, 67, 66, 65,                            # inner lips
])
# fmt: on
"""Index of each landmark's mirror image in the 68-point scheme (left eye ↔ right eye …)."""
SKIN_OUTLINE = CHEEKS
"""Cheeks and nose between the lower eyelids and the nostrils: skin in nearly every face (beards and
moustaches start lower, fringes higher), so colour statistics taken there compare like with like."""

MAX_YAW = 0.75
"""Faces turned further than this (see :func:`_yaw`) are refused. Measured: frontal 0.0–0.3, the
3/4 views in testdata 0.45–0.7, strong 3/4 views and a profile 0.8–0.82 (swaps onto those looked like
a flat mask pasted on a turned head)."""
MIRROR_YAW_GAIN = 0.2
"""Mirror the source when that brings its head turn at least this much closer to the target's."""
REGION_SCALE = 1.6
"""Side of the working square, in units of the landmarks' larger extent (room for blur and border)."""
MAX_WORK_SIDE = 2048
"""Target squares larger than this are processed downscaled (memory and time stay bounded)."""
FOREHEAD_LIFT = 0.17
"""Forehead points: the brows moved up by this fraction of the chin-to-brow vector. More of the source's
forehead is more of its identity (0.12 before; on the bench's 60 pairs 0.22 brought the output nearer
the source by 0.01 dlib distance on average and lowered the outer seam score), but at 0.22 a source's
bright forehead left flat patches on Darwin's (the flat-patch check of the tests); 0.17 does not."""
MASK_FEATHER = 0.06
"""The mask's hull is eroded by this share of the face size for its core, and alpha rises from 0 on the
hull's edge to 1 at twice that depth. 0.045 brought the output nearer the source (mean dlib distance
−0.016 on the bench's 60 pairs) but raised the outer seam score from 0.144 to 0.199: not taken."""
SHAPE_SHARE = 0.5
"""How far the target's brows, eyes, nose and outer lips move towards the source's layout (see
:func:`_towards_source_shape`): 0 keeps the target's face shape, 1 takes the source's. On the bench's
60 pairs against d35dd87 (seed 7): without it (forehead 0.12) 8 pairs were farther from the source by
more than 0.02 (kept beards and kept mouths: the target's own features); at 0.45 with the lips of a
kept mouth left the target's, none (seed 7) but one by 0.09 (seed 11, a kept wide smile); at 0.5 with
every outer lip moved, none on seeds 7 and 11, one by 0.027 on seed 13 (a kept smile: keeping the
target's teeth there costs 0.09 on its own). The output's landmarks then lie further from the
target's (5.0 % of the inter-ocular distance, 3.5 for d35dd87): most of that is the face's shape; of
pose and expression (the bench's "pose / expression Δ") the head's turn moves a little more than before
(mean |Δ yaw| 0.056 against 0.026) and so do the eyes' opening (0.060 against 0.042), the mouth's
less (0.061 against 0.074)."""
SHAPE_ANCHORS = np.arange(0, 48)
"""Landmarks that align the source's shape onto the target's: jaw, brows, nose and eyes."""
SHAPE_FEATURES = np.arange(17, 60)
"""Brows, nose, eyes and outer lips: moved towards the source's layout."""
MERGE_PX = 1.0
"""Warp points closer than this (in the target) are merged before triangulating."""


@dataclass(frozen=True)
class _Box:
    """An integer rectangle [x0, x1) × [y0, y1) in image coordinates; may reach outside the image."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass(frozen=True)
class SwapReport:
    """How one face was swapped.

    ``mask`` is ``"full"`` (jaw and forehead: the source's whole face) or ``"inner"`` (the same less the
    target's beard, found pixel by pixel by :func:`likeness.swap.classical_masks.beard_weight`: the
    source's face down to the beard's upper edge, its upper lip and lips; the target's beard and jaw
    line), chosen ``"inner"`` only when the target has a full, dark chin beard
    (:attr:`FacialHair.full_beard`): stubble, short beards and moustaches are replaced by the source's
    skin (on the bench keeping them cost those pairs dlib distance 0.02–0.12 to the source), and a
    source's beard alone does not switch either.
    ``mouth_kept``: the target's mouth was open and its interior (teeth, tongue) was kept;
    ``mouth_opening`` (target) and ``source_mouth_opening`` are the inner lips' gap as a share of the
    mouth's width; an open source mouth is warped into an open target mouth instead (see
    :func:`likeness.swap.classical_masks.keeps_target_mouth`).
    """

    mask: Literal["full", "inner"]
    source_facial_hair: FacialHair
    target_facial_hair: FacialHair
    mouth_kept: bool
    mouth_opening: float
    source_mouth_opening: float

    @property
    def source_beard(self) -> bool:
        return self.source_facial_hair.any

    @property
    def target_beard(self) -> bool:
        return self.target_facial_hair.any


@dataclass(frozen=True)
class PreparedSource:
    """A source face with what the swap measures on the source alone, measured once.

    Footage swaps the same source onto every frame: :meth:`ClassicalSwapper.prepare` looks for its
    facial hair once per job instead of once per frame (the result is identical). ``hair`` is ``None``
    when the source fails a check (image, landmarks, pose): the swap then raises, as it always did.
    """

    pixels: np.ndarray = field(repr=False)
    face: Face
    hair: FacialHair | None = None


class ClassicalSwapper:
    """Implements :class:`likeness.swap.types.Swapper` with no model file of its own."""

    name = "classical"

    def __init__(self, *, blend: str = "pyramid") -> None:
        if blend not in BLENDS:
            raise UsageError(f"unknown blend {blend!r}", hint=f"choose one of: {', '.join(BLENDS)}")
        self.blend = blend

    def describe(self) -> dict[str, str]:
        return {
            "swapper": self.name,
            "method": "piecewise-affine warp of 68-point landmarks + forehead, partly to the source's "
            f"face shape, CIELAB colour matching, {self.blend} blend",
            "models": "none of its own (uses the analyzer's 68-point landmarks)",
        }

    def model_files(self) -> list[ModelUse]:
        """None of its own: it runs on the analyzer's 68-point landmarks, whose model file (and licence)
        the analyzer's ``model_files()`` lists."""
        return []

    def swap(
        self,
        target: np.ndarray,
        target_face: Face,
        source: np.ndarray,
        source_face: Face,
        *,
        timings: dict[str, float] | None = None,
    ) -> np.ndarray:
        """Return a new array: ``target`` with the face of ``source_face`` put onto ``target_face``.

        Neither input is modified; pixels outside the target face's mask are returned unchanged.
        ``timings``, when given, receives the seconds spent per stage.
        """
        pixels, _ = self.swap_with_report(target, target_face, source, source_face, timings=timings)
        return pixels

    def swap_with_report(
        self,
        target: np.ndarray,
        target_face: Face,
        source: np.ndarray,
        source_face: Face,
        *,
        timings: dict[str, float] | None = None,
    ) -> tuple[np.ndarray, SwapReport]:
        """Like :meth:`swap`, and also say how the face was put in (:class:`SwapReport`)."""
        return self.swap_prepared_with_report(
            target, target_face, PreparedSource(source, source_face), timings=timings
        )

    def prepare(self, source: np.ndarray, source_face: Face) -> PreparedSource:
        """Measure once what depends on the source alone (its facial hair), for many :meth:`swap_prepared`
        calls. Never raises for a bad source: the swap raises then, where it always did."""
        try:
            _check_image(source, "source")
            points = _landmarks68(source_face, "source")
            _check_pose(points, source_face, "source")
        except BadInput:
            return PreparedSource(source, source_face)
        return PreparedSource(source, source_face, facial_hair(source, points))

    def swap_prepared(
        self,
        target: np.ndarray,
        target_face: Face,
        prepared: PreparedSource,
        *,
        timings: dict[str, float] | None = None,
    ) -> np.ndarray:
        """:meth:`swap` with a source from :meth:`prepare`: the same pixels, less the source's own work."""
        pixels, _ = self.swap_prepared_with_report(target, target_face, prepared, timings=timings)
        return pixels

    def swap_prepared_with_report(
        self,
        target: np.ndarray,
        target_face: Face,
        prepared: PreparedSource,
        *,
        timings: dict[str, float] | None = None,
    ) -> tuple[np.ndarray, SwapReport]:
        """:meth:`swap_with_report` with a source from :meth:`prepare` (or a bare :class:`PreparedSource`)."""
        timer = _Timer(timings)
        source, source_face = prepared.pixels, prepared.face
        _check_image(target, "target")
        _check_image(source, "source")
        target_points = _landmarks68(target_face, "target")
        source_points = _landmarks68(source_face, "source")
        _check_pose(target_points, target_face, "target")
        _check_pose(source_points, source_face, "source")

        with timer("regions"):
            source_hair = prepared.hair if prepared.hair is not None else facial_hair(source, source_points)
            target_hair = facial_hair(target, target_points)
            report = SwapReport(
                mask="inner" if target_hair.full_beard else "full",
                source_facial_hair=source_hair,
                target_facial_hair=target_hair,
                mouth_kept=keeps_target_mouth(target_points, source_points),
                mouth_opening=mouth_opening(target_points),
                source_mouth_opening=mouth_opening(source_points),
            )
            source, source_points = _pose_matched(source, source_points, target_points)
            region = _region_around(target_points)
            scale = min(1.0, MAX_WORK_SIDE / max(region.width, region.height))
            target_patch = _crop_mirrored(target, region, scale)
            dst = _to_work(target_points - (region.x0, region.y0), scale)
            src_patch, src, enlarge = _source_patch(source, source_points, dst)
        with timer("warp"):
            shaped = _towards_source_shape(dst, src)
            dst_all, src_all = _with_forehead(shaped), _with_forehead(src)
            if report.mouth_kept:  # warp the lips' inner outline too: the lips go round the open mouth
                dst_all = np.vstack([dst_all, dst[INNER_LIPS]])
                src_all = np.vstack([src_all, src[INNER_LIPS]])
            size = (target_patch.shape[1], target_patch.shape[0])
            loose = len(INNER_LIPS) if report.mouth_kept else 0
            warped = _warp_piecewise_affine(
                src_patch, src_all, dst_all, size, smooth=enlarge > 1.25, loose=loose
            )
        with timer("mask"):
            outline = _outline(_with_forehead(dst))
            alpha, core = _face_mask(outline, target_patch.shape[:2], _face_size(_with_forehead(dst)))
            face = _hull_mask(outline, target_patch.shape[:2]) > 0
            target_lab = to_lab(target_patch)  # the beard mask's and the colour matching's
            if report.mask == "inner":  # the target keeps its beard, pixel by pixel
                beard = beard_weight(target_patch, dst, target_lab)
                alpha *= 1.0 - beard
                core &= beard < 0.5
            keep = mouth_interior(dst, target_patch.shape[:2]) if report.mouth_kept else None
            if keep is not None:
                alpha *= 1.0 - keep
                core &= keep == 0
        if not core.any():
            # Too small to leave anything after erosion (the analyzer skips faces under 40 px).
            return target.copy(), report
        with timer("colour"):
            matched = match_colour(warped, target_patch, core, dst, target_lab)
            matched = match_surroundings(
                matched, target_patch, dst, face, source_hair=source_hair, target_hair=target_hair, keep=keep
            )
        with timer("blend"):
            if self.blend == "poisson":
                blended = _poisson_blend(matched, target_patch, core)
            else:
                blended = _pyramid_blend(matched, target_patch, alpha)
        with timer("compose"):
            local = target_points - (region.x0, region.y0)
            outlines = [_outline(_with_forehead(local))]
            result = _compose(target, blended, alpha, region, outlines)
        return result, report


# -- checks -----------------------------------------------------------------------------------------


def _check_image(pixels: np.ndarray, what: str) -> None:
    if (
        not isinstance(pixels, np.ndarray)
        or pixels.dtype != np.uint8
        or pixels.ndim != 3
        or pixels.shape[2] != 3
    ):
        raise BadInput(
            f"the {what} image must be an H×W×3 uint8 RGB array, got shape {getattr(pixels, 'shape', None)}",
            hint="decode images with likeness.media.image.load_image",
        )


def _landmarks68(face: Face, what: str) -> np.ndarray:
    points = np.asarray(face.landmarks, dtype=np.float64)
    if points.shape != (68, 2) or not np.isfinite(points).all():
        raise BadInput(
            f"the classical swapper needs 68 finite landmarks for the {what} face, got shape {points.shape}",
            hint="analyze the photos with the dlib backend",
        )
    return points


def _yaw(points: np.ndarray) -> float:
    """Head turn from the landmarks, -1..1: 0 frontal, positive when the nose is nearer the right contour."""
    across = points[42:48].mean(axis=0) - points[36:42].mean(axis=0)
    across = across / max(float(np.hypot(*across)), 1e-6)
    near_left = float((points[30] - points[1]) @ across)
    near_right = float((points[15] - points[30]) @ across)
    total = near_left + near_right
    return 0.0 if total <= 1e-6 else (near_left - near_right) / total


def _check_pose(points: np.ndarray, face: Face, what: str) -> None:
    yaw = _yaw(points)
    if abs(yaw) > MAX_YAW:
        alternative = ", or choose another face with --face-index" if what == "target" else ""
        raise BadInput(
            f"the {what} face at box {face.box} is turned too far to the side for the classical swapper "
            f"(turn measure {yaw:+.2f}, limit ±{MAX_YAW})",
            hint=f"use a {what} photo where both eyes and both cheeks are visible{alternative}",
        )


class _Timer:
    def __init__(self, sink: dict[str, float] | None) -> None:
        self.sink = sink

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.sink is not None:
                self.sink[stage] = self.sink.get(stage, 0.0) + time.perf_counter() - start


# -- geometry ---------------------------------------------------------------------------------------


def _face_size(points: np.ndarray) -> float:
    """A pose-robust size: the square root of the area of the points' convex hull."""
    import cv2

    hull = cv2.convexHull(points.astype(np.float32))
    return float(np.sqrt(max(cv2.contourArea(hull), 1.0)))


def _region_around(points: np.ndarray) -> _Box:
    """A square around the landmarks, REGION_SCALE times their larger extent, shifted up for the forehead."""
    (x_min, y_min), (x_max, y_max) = points.min(axis=0), points.max(axis=0)
    half = 0.5 * REGION_SCALE * max(x_max - x_min, y_max - y_min, 8.0)
    cx, cy = 0.5 * (x_min + x_max), 0.5 * (y_min + y_max) - 0.05 * (y_max - y_min)
    return _Box(
        *(int(v) for v in (np.floor(cx - half), np.floor(cy - half), np.ceil(cx + half), np.ceil(cy + half)))
    )


def _to_work(points: np.ndarray, scale: float) -> np.ndarray:
    """Pixel coordinates at full resolution → at ``scale`` (pixel centres kept aligned)."""
    return points if scale == 1.0 else (points + 0.5) * scale - 0.5


def _crop_mirrored(image: np.ndarray, box: _Box, scale: float = 1.0) -> np.ndarray:
    """``image`` over ``box`` (parts outside the image filled by mirroring it), resized by ``scale``."""
    import cv2

    height, width = image.shape[:2]
    x0, y0 = min(max(box.x0, 0), width - 1), min(max(box.y0, 0), height - 1)
    x1, y1 = max(min(box.x1, width), x0 + 1), max(min(box.y1, height), y0 + 1)
    inside = image[y0:y1, x0:x1]
    pads = [y0 - box.y0, box.y1 - y1, x0 - box.x0, box.x1 - x1]
    if scale != 1.0:
        size = (max(2, round(inside.shape[1] * scale)), max(2, round(inside.shape[0] * scale)))
        inside = cv2.resize(inside, size, interpolation=cv2.INTER_AREA)
        full = (max(2, round(box.width * scale)), max(2, round(box.height * scale)))
        top, left = round(pads[0] * scale), round(pads[2] * scale)
        pads = [top, full[1] - size[1] - top, left, full[0] - size[0] - left]
        pads = [max(0, p) for p in pads]
    if not any(pads):
        return np.ascontiguousarray(inside)
    border = cv2.BORDER_REFLECT_101 if min(inside.shape[:2]) >= 2 else cv2.BORDER_REPLICATE
    return cv2.copyMakeBorder(inside, *pads, borderType=border)


def _pose_matched(
    source: np.ndarray, points: np.ndarray, target_points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror the source (image and landmarks) when its head turns the other way from the target's.

    A face turned away shows little of its far side; warping that onto a face turned the other way
    stretches it into smears.
    """
    source_yaw, target_yaw = _yaw(points), _yaw(target_points)
    if abs(-source_yaw - target_yaw) + MIRROR_YAW_GAIN > abs(source_yaw - target_yaw):
        return source, points
    flipped = points.copy()
    flipped[:, 0] = source.shape[1] - 1 - flipped[:, 0]
    return source[:, ::-1], flipped[MIRROR_68]


def _source_patch(
    source: np.ndarray, points: np.ndarray, target_points: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """The source face's square, its landmarks in it, and how much the warp still enlarges it.

    A source face larger than the target face is area-downscaled to the target's size first. Where the
    square reaches outside the photo, the face's other side is mirrored in (:func:`_complete_by_symmetry`).
    """
    import cv2

    factor = _face_size(target_points) / _face_size(points)
    box = _region_around(points)
    scale = factor if factor < 0.8 else 1.0
    patch = _crop_mirrored(source, box, scale)
    local = _to_work(points - (box.x0, box.y0), scale)
    height, width = source.shape[:2]
    if box.x0 < 0 or box.y0 < 0 or box.x1 > width or box.y1 > height:
        inside = np.zeros((box.height, box.width), dtype=np.uint8)
        inside[max(0, -box.y0) : height - box.y0, max(0, -box.x0) : width - box.x0] = 255
        inside = cv2.resize(inside, (patch.shape[1], patch.shape[0]), interpolation=cv2.INTER_NEAREST)
        patch = _complete_by_symmetry(patch, local, inside)
    return patch, local, factor / scale


def _complete_by_symmetry(patch: np.ndarray, points: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Fill the part of ``patch`` outside the photo (``inside`` == 0) with the face's mirror image.

    The mirror is the affine map that best sends each landmark to its left/right partner (a reflection
    about the face's own midline), so a cheek cut off by the photo's edge is replaced by the other cheek,
    not by a copy of the photo's edge with a second eye in it. Where the mirrored spot is outside the
    photo too, the edge reflection stays.
    """
    import cv2

    reflection, _ = cv2.estimateAffine2D(points.astype(np.float32), points[MIRROR_68].astype(np.float32))
    if reflection is None:
        return patch
    size = (patch.shape[1], patch.shape[0])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    mirrored = cv2.warpAffine(patch, reflection, size, flags=flags, borderMode=cv2.BORDER_REFLECT_101)
    mirrored_inside = cv2.warpAffine(inside, reflection, size, flags=flags, borderValue=0)
    use = (inside < 128) & (mirrored_inside >= 128)
    completed = patch.copy()
    completed[use] = mirrored[use]
    return completed


def _towards_source_shape(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """The target's landmarks with its brows, eyes, nose and outer lips moved :data:`SHAPE_SHARE` of the way
    to where the source's are, once the source's landmarks are aligned onto the target's (the best
    similarity transform over the jaw, brows, nose and eyes, robust to a few outliers).

    The jaw stays the target's, so the mask's outline, the head's pose and size do not move; what moves
    is the layout inside the face (eye spacing, nose length and width, mouth width and lips), which
    carries much of a person's identity. The inner lips stay the target's: a kept open mouth (its teeth)
    stays where it is, and the source's lips are warped round it with their own shape. A pixel warp from
    the source's landmarks to these points shows the source's face shape in the target's pose.
    """
    import cv2

    similarity, _ = cv2.estimateAffinePartial2D(
        src[SHAPE_ANCHORS].astype(np.float32), dst[SHAPE_ANCHORS].astype(np.float32), method=cv2.LMEDS
    )
    if similarity is None or SHAPE_SHARE <= 0.0:
        return dst
    aligned = src @ similarity[:, :2].T + similarity[:, 2]
    shaped = dst.copy()
    shaped[SHAPE_FEATURES] += SHAPE_SHARE * (aligned[SHAPE_FEATURES] - dst[SHAPE_FEATURES])
    return shaped


def _with_forehead(points: np.ndarray) -> np.ndarray:
    """The warp's points: landmarks 0–59, then ten forehead points at 60–69 (the brows lifted along the
    face's own chin-to-brow direction)."""
    brows = points[BROWS]
    up = brows.mean(axis=0) - points[8]
    return np.vstack([points[WARP_POINTS], brows + FOREHEAD_LIFT * up])


def _outline(warp_points: np.ndarray) -> np.ndarray:
    """The mask's outline: jaw (0–16) and forehead points (60–69) of a :func:`_with_forehead` array."""
    return np.vstack([warp_points[JAW], warp_points[60:70]])


def _merge_close(dst: np.ndarray, src: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop target points within MERGE_PX of an earlier one, with their source partners; also return the
    indices kept."""
    offsets = dst[:, None, :] - dst[None, :, :]
    close = np.tril(np.hypot(offsets[..., 0], offsets[..., 1]) < MERGE_PX, k=-1)  # to an earlier point
    kept = np.ones(len(dst), dtype=bool)
    for index in np.flatnonzero(close.any(axis=1)).tolist():  # the rest are kept whatever came before
        kept[index] = not (close[index] & kept).any()
    keep = np.flatnonzero(kept)
    return dst[keep], src[keep], keep


def _border_points(width: int, height: int, per_side: int = 4) -> np.ndarray:
    steps = np.linspace(0.0, 1.0, per_side + 1)[:-1]
    w, h = float(width - 1), float(height - 1)
    top = [(s * w, 0.0) for s in steps]
    right = [(w, s * h) for s in steps]
    bottom = [(w - s * w, h) for s in steps]
    left = [(0.0, h - s * h) for s in steps]
    return np.array(top + right + bottom + left, dtype=np.float64)


def _signed_areas(points: np.ndarray, simplices: np.ndarray) -> np.ndarray:
    a, b, c = points[simplices[:, 0]], points[simplices[:, 1]], points[simplices[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def _unfold(
    src: np.ndarray,
    dst: np.ndarray,
    simplices: np.ndarray,
    predicted: np.ndarray,
    fixed: int,
    unchecked: np.ndarray | None = None,
) -> np.ndarray:
    """Source points such that every triangle keeps the target's orientation (no fold-over).

    Vertices of a folded or collapsed triangle fall back to where the global similarity transform puts
    them (``predicted``), repeated until nothing folds. The last ``fixed`` points are never moved.
    Triangles flagged in ``unchecked`` (inside a kept open mouth: never shown) may collapse.
    """
    src = src.copy()
    dst_area = _signed_areas(dst, simplices)
    if unchecked is not None:
        dst_area[unchecked] = 0.0
    movable = np.arange(len(src)) < len(src) - fixed
    for _ in range(8):
        src_area = _signed_areas(src, simplices)
        folded = (np.sign(src_area) != np.sign(dst_area)) | (np.abs(src_area) < 1e-3 * np.abs(dst_area))
        folded &= np.abs(dst_area) > 1e-9
        vertices = np.unique(simplices[folded])
        vertices = vertices[movable[vertices] & np.any(src[vertices] != predicted[vertices], axis=1)]
        if len(vertices) == 0:
            break
        src[vertices] = predicted[vertices]
    return src


def _delaunay(points: np.ndarray) -> np.ndarray:
    """The Delaunay triangles of ``points`` (N×2, pairwise distinct) as an M×3 array of indices.

    ``cv2.Subdiv2D`` rather than ``scipy.spatial.Delaunay``, which cost a still's CLI run the ≈ 0.3–0.4 s
    import of ``scipy.spatial``. The triangulation is unique but for co-circular points, which dlib's
    integer landmarks make common: on 36 testdata faces 7 had one to three quads split by the other
    diagonal than scipy's, and triangles are filled in another order (edge pixels take the other
    neighbour's map). Swaps then differ locally: over 175 testdata pairs at most 524 pixels by more
    than 2 levels, none outside the face's hull (``test_the_triangulation_matches_scipys_swap_closely``).
    """
    import cv2

    low = np.floor(points.min(axis=0)) - 2.0
    high = np.ceil(points.max(axis=0)) + 2.0
    subdiv = cv2.Subdiv2D((int(low[0]), int(low[1]), int(high[0] - low[0]), int(high[1] - low[1])))
    vertices = points.astype(np.float32) + np.float32(0.0)  # -0.0 → 0.0: equal floats, equal bits
    keys = vertices.view(np.int64).ravel()  # one key per (x, y): its two float32s' bits
    if len(np.unique(keys)) != len(points):
        raise BadInput("the face landmarks are degenerate (points coincide); cannot warp")
    subdiv.insert([(x, y) for x, y in vertices.tolist()])
    # Each corner's vertex number; triangles touching Subdiv2D's outer helper vertices are dropped.
    corners = (subdiv.getTriangleList() + np.float32(0.0)).view(np.int64).ravel()
    order = np.argsort(keys)
    number = order[np.searchsorted(keys[order], corners).clip(max=len(keys) - 1)]
    found = (keys[number] == corners).reshape(-1, 3).all(axis=1)
    return number.astype(np.int64).reshape(-1, 3)[found]


@dataclass(frozen=True)
class _Mesh:
    """The warp's triangulation: ``dst`` points (target) and their ``src`` partners, the Delaunay
    ``triangles`` of ``dst`` (M×3 indices) and the ``similarity`` (2×3, target → source) outside them."""

    src: np.ndarray
    dst: np.ndarray
    triangles: np.ndarray
    similarity: np.ndarray


def _warp_piecewise_affine(
    src_image: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    size: tuple[int, int],
    *,
    smooth: bool = False,
    loose: int = 0,
) -> np.ndarray:
    """Warp ``src_image`` so that points ``src`` land on ``dst``; the output is ``size`` = (width, height).

    Beyond the landmarks the warp follows the best similarity transform (border points are mapped through
    it), so every output pixel is covered. ``smooth`` samples bicubically (for an enlarged source).
    Triangles between the last ``loose`` points only (the inner lips round a kept open mouth) may
    collapse in the source: a closed source mouth has nothing to show there.
    """
    import cv2

    map_x, map_y = _warp_maps(_warp_mesh(src, dst, size, loose=loose), size)
    interpolation = cv2.INTER_CUBIC if smooth else cv2.INTER_LINEAR
    return cv2.remap(src_image, map_x, map_y, interpolation, borderMode=cv2.BORDER_REFLECT_101)


def _warp_mesh(src: np.ndarray, dst: np.ndarray, size: tuple[int, int], *, loose: int = 0) -> _Mesh:
    """The triangulated mesh of :func:`_warp_piecewise_affine`: close points merged, border points added
    (mapped by the best similarity transform), folded triangles relaxed."""
    import cv2

    width, height = size
    count = len(dst)
    dst, src, kept = _merge_close(dst, src)
    similarity, _ = cv2.estimateAffinePartial2D(dst.astype(np.float32), src.astype(np.float32))
    if similarity is None:
        raise BadInput("the face landmarks are degenerate (all in one place); cannot warp")
    border = _border_points(width, height)
    dst_all = np.vstack([dst, border])
    predicted = dst_all @ similarity[:, :2].T + similarity[:, 2]
    src_all = np.vstack([src, predicted[len(dst) :]])
    simplices = _delaunay(dst_all)
    is_loose = np.concatenate([kept >= count - loose, np.zeros(len(border), dtype=bool)])
    unchecked = is_loose[simplices].all(axis=1) if loose else None
    src_all = _unfold(src_all, dst_all, simplices, predicted, fixed=len(border), unchecked=unchecked)
    return _Mesh(src_all, dst_all, simplices, similarity)


def _warp_maps(mesh: _Mesh, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap``'s float32 maps (target pixel → source position) of ``mesh`` over ``size``: each pixel
    takes the affine map of the triangle that owns it (filled in order, so a later triangle takes a shared
    edge), pixels outside every triangle take the similarity transform."""
    import cv2

    width, height = size
    affines, valid = _triangle_affines(mesh.src, mesh.dst, mesh.triangles)
    # Each pixel's triangle; M (the similarity transform's row of the table) where none owns it.
    small = len(affines) < 256  # numbers fit a byte: cv2.LUT gathers the coefficients, 2–3× faster
    owner = np.full((height, width), len(affines), dtype=np.uint8 if small else np.int32)
    corners = np.round(mesh.dst * 16).astype(np.int32)[mesh.triangles]
    for number in np.flatnonzero(valid).tolist():
        cv2.fillConvexPoly(owner, corners[number], number, cv2.LINE_8, 4)
    # x' = a·x + b·y + c, y' = d·x + e·y + f: each coefficient gathered from a 6×(M+1) table.
    table = np.vstack([affines, mesh.similarity[None]]).astype(np.float32).reshape(-1, 6).T
    if small:
        lut = np.zeros((6, 256), dtype=np.float32)
        lut[:, : table.shape[1]] = table
        a, b, c, d, e, f = (cv2.LUT(owner, row) for row in lut)
    else:
        a, b, c, d, e, f = np.take(np.ascontiguousarray(table), owner, axis=1)
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    return a * xs + b * ys + c, d * xs + e * ys + f


def _triangle_affines(
    src: np.ndarray, dst: np.ndarray, simplices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each triangle's affine map from ``dst`` to ``src`` corners (M×2×3, float64) and whether it has one
    (M bools): a triangle whose ``dst`` corners are (nearly) collinear has none (zeros).

    All triangles are solved at once (one batched ``np.linalg.solve``, the same LAPACK solve per triangle
    as one call each: identical results)."""
    corners = np.concatenate([dst[simplices], np.ones((len(simplices), 3, 1))], axis=2)
    valid = np.abs(np.linalg.det(corners)) >= 1e-6
    affines = np.zeros((len(simplices), 2, 3), dtype=np.float64)
    if valid.any():
        affines[valid] = np.linalg.solve(corners[valid], src[simplices[valid]]).transpose(0, 2, 1)
    return affines, valid


def _hull_mask(outline: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    mask = np.zeros(shape, dtype=np.uint8)
    hull = cv2.convexHull(np.round(outline * 16).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255, cv2.LINE_8, 4)
    return mask


def _face_mask(outline: np.ndarray, shape: tuple[int, int], size: float) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, core): the feathered mask and its inner part, from the distance to the hull's edge.

    ``core`` is the hull of ``outline`` eroded by :data:`MASK_FEATHER` of the face ``size``; ``alpha``
    rises smoothly from exactly 0 on the hull's edge (and outside it) to 0.5 at the core's edge and 1 at
    twice that depth.
    """
    import cv2

    mask = _hull_mask(outline, shape)
    radius = max(2.0, MASK_FEATHER * size)
    depth = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    ramp = np.clip(depth / (2.0 * radius), 0.0, 1.0)
    alpha = ramp * ramp * (3.0 - 2.0 * ramp)
    alpha[mask == 0] = 0.0
    return alpha.astype(np.float32), depth > radius


# -- blending ---------------------------------------------------------------------------------------


def _poisson_blend(face: np.ndarray, target: np.ndarray, core: np.ndarray) -> np.ndarray:
    """``cv2.seamlessClone`` of ``face`` into ``target`` over ``core`` (same-size arrays, exact alignment)."""
    import cv2

    mask = core.astype(np.uint8) * 255
    mask[[0, -1], :] = 0  # seamlessClone needs the mask clear of the array border
    mask[:, [0, -1]] = 0
    x, y, w, h = cv2.boundingRect(mask)
    if w < 3 or h < 3:
        return target.copy()
    # With same-size arrays this centre puts the source exactly where it is (checked on noise images).
    return cv2.seamlessClone(face, target, mask, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)


def _pyramid_blend(face: np.ndarray, target: np.ndarray, alpha: np.ndarray, levels: int = 5) -> np.ndarray:
    """Laplacian-pyramid blend of ``face`` over ``target`` with weights ``alpha``.

    Each level of the blend is ``w·L(face) + (1 − w)·L(target) = L(target) + w·L(face − target)`` (the
    pyramids are linear), and the target's own levels add up to the target again: so the blend is the
    target plus the weighted pyramid of the difference alone, one pyramid instead of two (the same
    result but for float rounding).
    """
    import cv2

    levels = max(1, min(levels, int(np.log2(max(2, min(alpha.shape)))) - 3))
    base = target.astype(np.float32)
    difference = face.astype(np.float32)
    difference -= base
    gauss, weights = [difference], [alpha.astype(np.float32)]
    for _ in range(levels):
        gauss.append(cv2.pyrDown(gauss[-1]))
        weights.append(cv2.pyrDown(weights[-1]))
    blended = gauss[levels] * weights[levels][..., None]
    for level in range(levels - 1, -1, -1):
        size = (gauss[level].shape[1], gauss[level].shape[0])
        detail = cv2.pyrUp(gauss[level + 1], dstsize=size)
        np.subtract(gauss[level], detail, out=detail)
        detail *= weights[level][..., None]
        blended = cv2.pyrUp(blended, dstsize=size)
        blended += detail
    blended += base
    blended += np.float32(0.5)
    np.clip(blended, np.float32(0.0), np.float32(255.0), out=blended)
    return blended.astype(np.uint8)


def _compose(
    target: np.ndarray, blended: np.ndarray, alpha: np.ndarray, region: _Box, outlines: list[np.ndarray]
) -> np.ndarray:
    """A copy of ``target`` with ``blended`` feathered in by ``alpha`` over the in-image part of ``region``.

    ``blended`` and ``alpha`` may be at a reduced working size; they are brought to the region's size and
    ``alpha`` is cut to the full-resolution hulls of ``outlines`` (region coordinates), so pixels outside
    them stay exactly as they were.
    """
    import cv2

    if blended.shape[:2] != (region.height, region.width):
        size = (region.width, region.height)
        blended = cv2.resize(blended, size, interpolation=cv2.INTER_CUBIC)
        alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_LINEAR)
        for outline in outlines:
            alpha[_hull_mask(outline, alpha.shape) == 0] = 0.0
    height, width = target.shape[:2]
    result = target.copy()
    # Only the part of the region where alpha > 0 and inside the image changes.
    bx, by, bw, bh = cv2.boundingRect((alpha > 0).astype(np.uint8))
    x0, y0 = max(region.x0 + bx, 0), max(region.y0 + by, 0)
    x1, y1 = min(region.x0 + bx + bw, width), min(region.y0 + by + bh, height)
    for top in range(y0, y1, 512):  # strips of rows: bounded float temporaries on very large faces
        bottom = min(y1, top + 512)
        inner = (slice(top - region.y0, bottom - region.y0), slice(x0 - region.x0, x1 - region.x0))
        weight = alpha[inner][..., None]
        picture = result[top:bottom, x0:x1]
        # blended·w + picture·(1 − w), rounded: the same float32 steps, in place.
        mixed = blended[inner].astype(np.float32)
        mixed *= weight
        rest = picture.astype(np.float32)
        rest *= 1.0 - weight
        mixed += rest
        mixed += np.float32(0.5)
        np.clip(mixed, np.float32(0.0), np.float32(255.0), out=mixed)
        np.copyto(picture, mixed.astype(np.uint8), where=weight > 0)
    return result
