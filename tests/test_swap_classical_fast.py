"""The classical swap's faster computations against straightforward references, on real photos.

Each test runs the real swap on testdata pairs, catches the arguments one of its steps was called with,
and compares the step's (faster) result with a plain re-implementation written here. No output is
written anywhere: these photos' subjects did not consent.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from likeness.faces.dlib_backend import DlibAnalyzer
from likeness.faces.types import Face
from likeness.media.image import load_image
from likeness.swap import classical
from likeness.swap.classical import ClassicalSwapper

DEMO = Path(__file__).resolve().parents[1] / "src" / "likeness" / "demo_assets"
PAIRS = (
    ("obama/1.jpg", "biden/2.jpg"),
    ("biden/1.jpg", "kit_harington/2.jpg"),
    ("rose_leslie/2.jpg", "deepface_person_03/4.jpg"),
    ("deepface_person_07/3.jpg", "alex_lacamoire/2.jpg"),
)
"""Source → target: an enlarged source (×1.8, bicubic), reduced ones (×0.55, ×0.66), two kept open
mouths (the warp's loose inner lips) and a kept beard (the inner mask)."""


@pytest.fixture(scope="module")
def photo(faces_dir: Path) -> Callable[[str], tuple[np.ndarray, Face]]:
    analyzer = DlibAnalyzer()
    cache: dict[str, tuple[np.ndarray, Face]] = {}

    def load(name: str) -> tuple[np.ndarray, Face]:
        if name not in cache:
            pixels = load_image(faces_dir / name).pixels
            cache[name] = (pixels, analyzer.analyze(pixels)[0])
        return cache[name]

    return load


def calls_of(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, photo: Callable, pairs=PAIRS
) -> list[tuple[tuple, dict]]:
    """The arguments ``module.name`` was called with while swapping each pair (it still runs)."""
    seen: list[tuple[tuple, dict]] = []
    original = getattr(module, name)

    def spy(*args, **kwargs):
        seen.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    swapper = ClassicalSwapper()
    for source_name, target_name in pairs:
        source, source_face = photo(source_name)
        target, target_face = photo(target_name)
        swapper.swap(target, target_face, source, source_face)
    monkeypatch.setattr(module, name, original)
    assert len(seen) >= len(pairs)
    return seen


# -- the warp ---------------------------------------------------------------------------------------


def reference_maps(mesh: classical._Mesh, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per triangle: solve its affine map, fill its pixels; then build the maps coefficient by coefficient."""
    import cv2

    width, height = size
    owner = np.full((height, width), -1, dtype=np.int32)
    affines = np.zeros((len(mesh.triangles), 2, 3))
    for number, corners in enumerate(mesh.triangles):
        dst_triangle = np.column_stack([mesh.dst[corners], np.ones(3)])
        if abs(np.linalg.det(dst_triangle)) < 1e-6:
            continue
        affines[number] = np.linalg.solve(dst_triangle, mesh.src[corners]).T
        cv2.fillConvexPoly(owner, np.round(mesh.dst[corners] * 16).astype(np.int32), number, cv2.LINE_8, 4)
    affines = np.vstack([affines, mesh.similarity[None]]).astype(np.float32)
    owner[owner < 0] = len(affines) - 1
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    map_x = affines[:, 0, 0][owner] * xs + affines[:, 0, 1][owner] * ys + affines[:, 0, 2][owner]
    map_y = affines[:, 1, 0][owner] * xs + affines[:, 1, 1][owner] * ys + affines[:, 1, 2][owner]
    return map_x, map_y


def test_the_warp_maps_equal_a_per_triangle_reference(photo, monkeypatch) -> None:
    calls = calls_of(monkeypatch, classical, "_warp_piecewise_affine", photo)
    for (_, src, dst, size), kwargs in calls:
        mesh = classical._warp_mesh(src, dst, size, loose=kwargs.get("loose", 0))
        assert len(mesh.triangles) > 100
        map_x, map_y = classical._warp_maps(mesh, size)
        ref_x, ref_y = reference_maps(mesh, size)
        assert map_x.shape == (size[1], size[0]) and map_x.dtype == np.float32
        # Tolerance: 1e-4 px (the same float32 arithmetic; in practice equal to the bit).
        assert np.abs(map_x - ref_x).max() <= 1e-4 and np.abs(map_y - ref_y).max() <= 1e-4
    # The mesh's corners land where they should: each triangle's map sends its target corners to the
    # source corners (the maps are right, not merely equal to a reference with the same mistake).
    (_, src, dst, size), kwargs = calls[0]
    mesh = classical._warp_mesh(src, dst, size, loose=kwargs.get("loose", 0))
    map_x, map_y = classical._warp_maps(mesh, size)
    inner = [i for i, (x, y) in enumerate(mesh.dst) if x == round(x) and y == round(y)][:40]
    assert len(inner) >= 20
    for i in inner:
        x, y = int(mesh.dst[i, 0]), int(mesh.dst[i, 1])
        if 0 < x < size[0] - 1 and 0 < y < size[1] - 1:
            assert abs(map_x[y, x] - mesh.src[i, 0]) < 0.05 and abs(map_y[y, x] - mesh.src[i, 1]) < 0.05


def test_the_warp_maps_of_a_mesh_of_many_triangles_equal_the_reference() -> None:
    # More than 255 triangles: their numbers no longer fit the byte that cv2.LUT looks up.
    rng = np.random.default_rng(5)
    size = (300, 260)
    dst = np.unique(np.round(rng.uniform(5, 250, (200, 2)), 1), axis=0)
    src = dst + rng.uniform(-3, 3, dst.shape)
    mesh = classical._warp_mesh(src, dst, size)
    assert len(mesh.triangles) > 300
    map_x, map_y = classical._warp_maps(mesh, size)
    ref_x, ref_y = reference_maps(mesh, size)
    assert np.abs(map_x - ref_x).max() <= 1e-4 and np.abs(map_y - ref_y).max() <= 1e-4


def reference_delaunay(points: np.ndarray) -> np.ndarray:
    """Subdiv2D's triangles, each corner looked up by its coordinates in a dict, one at a time."""
    import cv2

    low, high = np.floor(points.min(axis=0)) - 2.0, np.ceil(points.max(axis=0)) + 2.0
    subdiv = cv2.Subdiv2D((int(low[0]), int(low[1]), int(high[0] - low[0]), int(high[1] - low[1])))
    index: dict[tuple[float, float], int] = {}
    for number, (x, y) in enumerate(points.astype(np.float32).tolist()):
        subdiv.insert((x, y))
        index[(x, y)] = number
    corners = subdiv.getTriangleList().reshape(-1, 3, 2).tolist()
    triangles = [
        [index[tuple(c)] for c in corner] for corner in corners if all(tuple(c) in index for c in corner)
    ]
    return np.array(triangles, dtype=np.int64).reshape(-1, 3)


def test_the_triangulation_equals_the_per_corner_lookup(photo, monkeypatch) -> None:
    calls = calls_of(monkeypatch, classical, "_warp_piecewise_affine", photo)
    for (_, src, dst, size), _ in calls:
        points = np.vstack([classical._merge_close(dst, src)[0], classical._border_points(*size)])
        assert np.array_equal(classical._delaunay(points), reference_delaunay(points))
    rng = np.random.default_rng(1)
    for _ in range(100):  # integer grids (co-circular points), sub-pixel points, zeros of either sign
        points = np.round(rng.uniform(-50, 300, (70, 2))) * rng.choice([1.0, -1.0])
        points = points + rng.integers(0, 2) * rng.uniform(0, 1, points.shape)
        points = np.unique(points, axis=0)
        rng.shuffle(points)
        assert np.array_equal(classical._delaunay(points), reference_delaunay(points))


def test_merge_close_equals_the_greedy_reference(photo) -> None:
    def greedy(dst: np.ndarray) -> list[int]:
        keep: list[int] = []
        for index in range(len(dst)):
            if all(np.hypot(*(dst[index] - dst[other])) >= classical.MERGE_PX for other in keep):
                keep.append(index)
        return keep

    rng = np.random.default_rng(3)
    for name in ("obama/1.jpg", "biden/2.jpg", "kit_harington/2.jpg"):
        _, face = photo(name)
        points = classical._with_forehead(face.landmarks.astype(np.float64))
        for _ in range(20):  # chains of near points: which one survives depends on the order
            picks = rng.integers(0, len(points), 12)
            crowded = np.vstack([points, points[picks] + rng.uniform(-1.2, 1.2, (12, 2))])
            _, _, kept = classical._merge_close(crowded, crowded)
            assert kept.tolist() == greedy(crowded)


# -- the blend --------------------------------------------------------------------------------------


def reference_pyramid_blend(face: np.ndarray, target: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The textbook Laplacian-pyramid blend: both images' pyramids, mixed level by level, collapsed."""
    import cv2

    levels = max(1, min(5, int(np.log2(max(2, min(alpha.shape)))) - 3))
    gauss_a, gauss_b = [face.astype(np.float32)], [target.astype(np.float32)]
    weights = [alpha.astype(np.float32)]
    for _ in range(levels):
        gauss_a.append(cv2.pyrDown(gauss_a[-1]))
        gauss_b.append(cv2.pyrDown(gauss_b[-1]))
        weights.append(cv2.pyrDown(weights[-1]))
    top = weights[levels][..., None]
    blended = gauss_a[levels] * top + gauss_b[levels] * (1.0 - top)
    for level in range(levels - 1, -1, -1):
        size = (gauss_a[level].shape[1], gauss_a[level].shape[0])
        lap_a = gauss_a[level] - cv2.pyrUp(gauss_a[level + 1], dstsize=size)
        lap_b = gauss_b[level] - cv2.pyrUp(gauss_b[level + 1], dstsize=size)
        weight = weights[level][..., None]
        blended = cv2.pyrUp(blended, dstsize=size) + lap_a * weight + lap_b * (1.0 - weight)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def test_the_pyramid_blend_equals_the_two_pyramid_reference(photo, monkeypatch) -> None:
    calls = calls_of(monkeypatch, classical, "_pyramid_blend", photo)
    for (face, target, alpha), _ in calls:
        blended = classical._pyramid_blend(face, target, alpha)
        change = np.abs(blended.astype(np.int16) - reference_pyramid_blend(face, target, alpha))
        # Tolerance: float rounding, so a value near .5 may round the other way: at most 1 level,
        # on at most 1 in 10,000 values.
        assert change.max() <= 1 and (change > 0).mean() < 1e-4
        assert not np.array_equal(blended, target)  # the face is in it


# -- the beard --------------------------------------------------------------------------------------


def reference_beard_weight(rgb: np.ndarray, points: np.ndarray, lab: np.ndarray | None) -> np.ndarray:
    """The beard's weight computed over the whole image (its computation, without the box)."""
    from likeness.swap.classical_masks import _beard_weight, face_size

    return _beard_weight(rgb, points, face_size(points), lab)


BEARDED = ("demo/lincoln_1.jpg", "kit_harington/1.jpg", "kit_harington/3.jpg", "biden/2.jpg", "obama/2.jpg")


@pytest.mark.parametrize("name", BEARDED)
def test_the_beard_weight_over_its_box_equals_the_whole_image_computation(faces_dir, name) -> None:
    from likeness.swap.classical_masks import beard_weight, to_lab

    path = DEMO / name.removeprefix("demo/") if name.startswith("demo/") else faces_dir / name
    pixels = load_image(path).pixels
    points = DlibAnalyzer().analyze(pixels)[0].landmarks.astype(np.float64)
    # The photo, and the face pushed against each edge of a crop (the box is clipped there).
    x0, y0 = np.floor(points.min(axis=0)).astype(int)
    x1, y1 = np.ceil(points.max(axis=0)).astype(int)
    crops = [(0, 0, pixels.shape[1], pixels.shape[0]), (x0 + 5, y0, pixels.shape[1], pixels.shape[0])]
    crops.append((0, 0, x1 - 8, y1 - 3))
    for left, top, right, bottom in crops:
        rgb = np.ascontiguousarray(pixels[top:bottom, left:right])
        local = points - (left, top)
        for lab in (None, to_lab(rgb)):
            weight = beard_weight(rgb, local, lab)
            reference = reference_beard_weight(rgb, local, lab)
            # Tolerance: none beyond float rounding (in practice equal to the bit).
            assert np.abs(weight - reference).max() <= 1e-6
    if name == "demo/lincoln_1.jpg":
        assert (beard_weight(pixels, points) > 0.5).sum() > 1000  # a real beard, found


def test_a_lower_face_wholly_outside_the_image_has_no_beard() -> None:
    """Landmarks past an image's corner (both axes at once, where both sides of the clipped box are
    negative) give zero weight, as the whole-image computation does, not an error."""
    from likeness.swap.classical_masks import beard_weight

    pixels = load_image(DEMO / "lincoln_1.jpg").pixels
    points = DlibAnalyzer().analyze(pixels)[0].landmarks.astype(np.float64)
    height, width = pixels.shape[:2]
    for shift in ((width + 400, height + 400), (-width - 400, -height - 400), (width + 400, 0)):
        weight = beard_weight(pixels, points + shift)
        assert weight.shape == (height, width) and not weight.any()
