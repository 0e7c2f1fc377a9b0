"""The classical swapper on real photos: only the face changes, no holes or flat patches, colour is
matched, and the face really becomes the source person's (judged by the dlib embedding).

No output is written anywhere: these photos' subjects did not consent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from likeness.errors import BadInput, UsageError
from likeness.faces.dlib_backend import DlibAnalyzer
from likeness.faces.types import Face
from likeness.media.image import load_image
from likeness.swap import classical, classical_masks, skin_tone
from likeness.swap.backends import load_swapper
from likeness.swap.classical import ClassicalSwapper
from likeness.swap.types import Swapper

DEMO = Path(__file__).resolve().parents[1] / "src" / "likeness" / "demo_assets"


@pytest.fixture(scope="module")
def analyzer() -> DlibAnalyzer:
    return DlibAnalyzer()


@pytest.fixture(scope="module")
def photo(faces_dir: Path, analyzer: DlibAnalyzer):
    """``photo(name)`` → (pixels, faces left to right); ``demo/…`` names a bundled portrait."""
    cache: dict[str, tuple[np.ndarray, list[Face]]] = {}

    def load(name: str) -> tuple[np.ndarray, list[Face]]:
        if name not in cache:
            path = DEMO / name.removeprefix("demo/") if name.startswith("demo/") else faces_dir / name
            pixels = load_image(path).pixels
            cache[name] = (pixels, analyzer.analyze(pixels))
        return cache[name]

    return load


def hull_mask(face: Face, shape: tuple[int, ...]) -> np.ndarray:
    """The swap's documented mask outline (jaw + forehead points), filled, in image coordinates."""
    outline = classical._outline(classical._with_forehead(face.landmarks.astype(np.float64)))
    return classical._hull_mask(outline, shape[:2]) > 0


def inner_face(face: Face, shape: tuple[int, ...]) -> np.ndarray:
    from scipy.ndimage import binary_erosion

    return binary_erosion(hull_mask(face, shape), iterations=max(2, face.size // 10))


def flat_fraction(pixels: np.ndarray, face: Face) -> float:
    """Share of the inner face whose 9×9 neighbourhood is practically uniform (std < 1 grey level),
    measured with large faces scaled down to 250 px so that enlarged sources compare alike."""
    import cv2

    inner = inner_face(face, pixels.shape)
    x, y, w, h = cv2.boundingRect(inner.astype(np.uint8))
    scale = min(1.0, 250.0 / face.size)
    crop = cv2.resize(pixels[y : y + h, x : x + w], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    size = (crop.shape[1], crop.shape[0])
    region = (
        cv2.resize(inner[y : y + h, x : x + w].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    )
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mean = cv2.blur(grey, (9, 9))
    spread = np.sqrt(np.maximum(cv2.blur(grey * grey, (9, 9)) - mean * mean, 0.0))
    return float((spread[region] < 1.0).mean())


def chroma(pixels: np.ndarray, region: np.ndarray) -> float:
    import cv2

    lab = cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB).astype(np.float32)
    return float(np.hypot(lab[..., 1] - 128, lab[..., 2] - 128)[region].mean())


def redness_correlation(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """Correlation of the CIELAB a* (green–red) channels of ``a`` and ``b`` over ``region``."""
    import cv2

    red_a = cv2.cvtColor(a, cv2.COLOR_RGB2LAB)[..., 1][region].astype(np.float64)
    red_b = cv2.cvtColor(b, cv2.COLOR_RGB2LAB)[..., 1][region].astype(np.float64)
    return float(np.corrcoef(red_a, red_b)[0, 1])


def swapped_face(analyzer: DlibAnalyzer, pixels: np.ndarray, where: Face) -> Face:
    """The face found in ``pixels`` at the place of ``where``."""
    faces = [f for f in analyzer.analyze(pixels) if abs(f.center_x - where.center_x) < where.size / 2]
    assert len(faces) == 1, "the swapped face is no longer found as one face"
    return faces[0]


def check_swap(
    analyzer: DlibAnalyzer,
    swapper: ClassicalSwapper,
    target: np.ndarray,
    target_face: Face,
    source: np.ndarray,
    source_face: Face,
    *,
    max_flat: float = 0.01,
) -> np.ndarray:
    """Swap and check what must hold for every swap; return the output."""
    target_before, source_before = target.copy(), source.copy()
    out = swapper.swap(target, target_face, source, source_face)
    assert np.array_equal(target, target_before) and np.array_equal(source, source_before)
    assert out.shape == target.shape and out.dtype == np.uint8 and out is not target

    hull = hull_mask(target_face, target.shape)
    changed = np.any(out != target, axis=2)
    assert not (changed & ~hull).any(), "pixels outside the face mask changed"
    inner = inner_face(target_face, target.shape)
    assert np.abs(out.astype(np.int16) - target)[inner].mean() > 10, "the face region hardly changed"
    # Old, soft photos have smooth skin of their own: the swap may keep that, but not add flat patches.
    allowed = max(max_flat, 2 * flat_fraction(target, target_face), 2 * flat_fraction(source, source_face))
    assert flat_fraction(out, target_face) <= allowed, "flat patches in the face"
    return out


def check_identity_moved(
    analyzer: DlibAnalyzer, out: np.ndarray, target_face: Face, source_face: Face, *, by: float
) -> None:
    """The swapped face is nearer the source person than the target's own face was, by ``by``."""
    new = swapped_face(analyzer, out, target_face)
    before = analyzer.distance(target_face.embedding, source_face.embedding)
    after = analyzer.distance(new.embedding, source_face.embedding)
    assert after < before - by, f"distance to the source went {before:.3f} → {after:.3f}"
    assert after < analyzer.distance(new.embedding, target_face.embedding)


def test_loader_and_protocol() -> None:
    swapper = load_swapper("dlib")
    assert isinstance(swapper, ClassicalSwapper) and isinstance(swapper, Swapper)
    assert swapper.name == "classical"
    assert all(isinstance(value, str) for value in swapper.describe().values())
    assert isinstance(load_swapper("classical"), ClassicalSwapper)
    with pytest.raises(UsageError, match="not available"):
        load_swapper("insightface")
    with pytest.raises(UsageError, match="unknown"):
        load_swapper("deepfacelab")
    with pytest.raises(UsageError, match="unknown blend"):
        ClassicalSwapper(blend="alpha")


@pytest.mark.parametrize(
    ("source_name", "target_name", "blend", "by"),
    [
        ("obama/1.jpg", "biden/2.jpg", "pyramid", 0.3),
        ("obama/1.jpg", "biden/2.jpg", "poisson", 0.3),
        ("biden/1.jpg", "obama/4.jpg", "pyramid", 0.2),
        ("demo/lincoln_1.jpg", "demo/darwin_1.jpg", "pyramid", 0.1),
        ("kit_harington/2.jpg", "obama/4.jpg", "pyramid", 0.2),  # turned the other way: mirrored
    ],
)
def test_swap_changes_only_the_face_into_the_source_person(
    analyzer: DlibAnalyzer, photo, source_name: str, target_name: str, blend: str, by: float
) -> None:
    source, (source_face,) = photo(source_name)
    target, (target_face,) = photo(target_name)
    out = check_swap(analyzer, ClassicalSwapper(blend=blend), target, target_face, source, source_face)
    check_identity_moved(analyzer, out, target_face, source_face, by=by)


def test_greyscale_source_takes_the_target_skin_colour(analyzer: DlibAnalyzer, photo) -> None:
    source, (source_face,) = photo("demo/lincoln_1.jpg")
    target, (target_face,) = photo("biden/2.jpg")
    out = check_swap(analyzer, ClassicalSwapper(), target, target_face, source, source_face)
    inner = inner_face(target_face, target.shape)
    assert chroma(source, hull_mask(source_face, source.shape)) < 1.0  # really greyscale
    assert chroma(out, inner) == pytest.approx(chroma(target, inner), rel=0.25)
    # Not one flat skin tone: redder lips and cheeks where the target has them.
    assert redness_correlation(out, target, inner) > 0.5
    check_identity_moved(analyzer, out, target_face, source_face, by=0.1)


def test_colour_source_on_a_greyscale_target_stays_greyscale(analyzer: DlibAnalyzer, photo) -> None:
    source, (source_face,) = photo("obama/1.jpg")
    target, (target_face,) = photo("demo/darwin_1.jpg")
    out = check_swap(analyzer, ClassicalSwapper(), target, target_face, source, source_face)
    inner = inner_face(target_face, target.shape)
    assert chroma(source, hull_mask(source_face, source.shape)) > 15
    assert chroma(out, inner) < chroma(target, inner) + 2.0


def test_source_face_cut_by_the_photo_edge(analyzer: DlibAnalyzer, photo) -> None:
    full, (face,) = photo("obama/1.jpg")
    cut = np.ascontiguousarray(
        full[:, face.box[0] + (face.box[2] - face.box[0]) // 5 :]
    )  # 20 % of the face gone
    (source_face,) = analyzer.analyze(cut)
    assert source_face.landmarks[:, 0].min() < 0  # the jaw is predicted outside the photo
    target, (target_face,) = photo("biden/2.jpg")
    # Filling the missing part with a flat colour instead measured 4–5 % flat pixels here.
    out = check_swap(analyzer, ClassicalSwapper(), target, target_face, cut, source_face, max_flat=0.01)
    check_identity_moved(analyzer, out, target_face, source_face, by=0.2)


def test_target_face_cut_by_the_image_border(analyzer: DlibAnalyzer, photo) -> None:
    source, (source_face,) = photo("biden/2.jpg")
    target, (target_face,) = photo("_hard/obama_partial_face.jpg")
    assert target_face.landmarks[:, 0].min() < 5 or target_face.box[0] == 0
    out = check_swap(analyzer, ClassicalSwapper(), target, target_face, source, source_face)
    check_identity_moved(analyzer, out, target_face, source_face, by=0.2)


def test_source_much_larger_than_target(analyzer: DlibAnalyzer, photo) -> None:
    source, (source_face,) = photo("deepface_person_01/2.jpg")  # 771 px face
    target, (target_face,) = photo("kit_harington/1.jpg")  # 126 px face
    assert source_face.size > 5 * target_face.size
    out = check_swap(analyzer, ClassicalSwapper(), target, target_face, source, source_face)
    check_identity_moved(analyzer, out, target_face, source_face, by=0.1)


def test_source_much_smaller_than_target(analyzer: DlibAnalyzer, photo) -> None:
    source, (source_face,) = photo("_hard/obama_240p_small.jpg")  # 62 px face
    target, (target_face,) = photo("deepface_person_01/2.jpg")  # 771 px face
    assert target_face.size > 10 * source_face.size
    # Enlarged 12×, the face is smooth by nature: allow more low-texture area, but no holes.
    out = check_swap(analyzer, ClassicalSwapper(), target, target_face, source, source_face, max_flat=0.1)
    check_identity_moved(analyzer, out, target_face, source_face, by=0.1)


def test_one_face_of_a_group_then_both(analyzer: DlibAnalyzer, photo) -> None:
    source, (source_face,) = photo("rose_leslie/2.jpg")
    target, faces = photo("_multi/two_people.jpg")
    left, right = faces
    swapper = ClassicalSwapper()
    only_left = check_swap(analyzer, swapper, target, left, source, source_face)
    assert np.array_equal(only_left[hull_mask(right, target.shape)], target[hull_mask(right, target.shape)])

    both = swapper.swap(only_left, right, source, source_face)  # as the pipeline does for every face
    assert np.array_equal(both[hull_mask(left, target.shape)], only_left[hull_mask(left, target.shape)])
    check_identity_moved(analyzer, both, left, source_face, by=0.15)
    check_identity_moved(analyzer, both, right, source_face, by=0.15)


@pytest.mark.slow
def test_large_target_is_processed_at_bounded_size(analyzer: DlibAnalyzer, photo) -> None:
    import cv2

    source, (source_face,) = photo("obama/1.jpg")
    small, _ = photo("biden/2.jpg")
    target = cv2.resize(small, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR)  # 3600×3600
    (target_face,) = analyzer.analyze(target)
    region = classical._region_around(target_face.landmarks.astype(np.float64))
    assert max(region.width, region.height) > classical.MAX_WORK_SIDE  # the downscaled path
    out = check_swap(analyzer, ClassicalSwapper(), target, target_face, source, source_face)
    check_identity_moved(analyzer, out, target_face, source_face, by=0.3)


def test_faces_turned_too_far_are_refused_with_a_reason(photo) -> None:
    profile, (profile_face,) = photo("_hard/profile_left.jpg")
    frontal, (frontal_face,) = photo("obama/1.jpg")
    swapper = ClassicalSwapper()
    with pytest.raises(BadInput, match=r"target face .* turned too far") as refused:
        swapper.swap(profile, profile_face, frontal, frontal_face)
    assert "--face-index" in (refused.value.hint or "")
    with pytest.raises(BadInput, match=r"source face .* turned too far"):
        swapper.swap(frontal, frontal_face, profile, profile_face)


def test_faces_without_68_landmarks_are_refused(photo) -> None:
    target, (face,) = photo("obama/1.jpg")
    bare = Face(
        box=face.box,
        landmarks=np.empty((0, 2), dtype=np.float32),
        landmarks5=face.landmarks5,
        embedding=face.embedding,
        score=face.score,
        embedding_space=face.embedding_space,
    )
    with pytest.raises(BadInput, match="68 finite landmarks"):
        ClassicalSwapper().swap(target, bare, target, face)
    with pytest.raises(BadInput, match="H×W×3 uint8"):
        ClassicalSwapper().swap(target.astype(np.float32), face, target, face)


def test_stage_timings_are_reported(photo) -> None:
    source, (source_face,) = photo("obama/1.jpg")
    target, (target_face,) = photo("biden/2.jpg")
    timings: dict[str, float] = {}
    ClassicalSwapper().swap(target, target_face, source, source_face, timings=timings)
    assert list(timings) == ["regions", "warp", "mask", "colour", "blend", "compose"]
    assert all(seconds >= 0 for seconds in timings.values())


# -- mouth, facial hair, skin tone, seams ------------------------------------------------------------


def inner_lips_interior(face: Face, shape: tuple[int, ...], shrink: int = 2) -> np.ndarray:
    """The open mouth inside the target's inner-lip landmarks, a few pixels in from them."""
    from scipy.ndimage import binary_erosion

    inside = classical_masks.polygon_mask(face.landmarks[classical_masks.INNER_LIPS], shape[:2])
    return binary_erosion(inside, iterations=shrink)


def test_an_open_mouth_keeps_its_teeth(analyzer: DlibAnalyzer, photo) -> None:
    # obama/1.jpg smiles showing his upper teeth; deepface_person_09/1.jpg's mouth is closed.
    source, (source_face,) = photo("deepface_person_09/1.jpg")
    target, (target_face,) = photo("obama/1.jpg")
    assert classical_masks.mouth_opening(target_face.landmarks) > 0.15
    out, report = ClassicalSwapper().swap_with_report(target, target_face, source, source_face)
    assert report.mouth_kept and report.mouth_opening > classical_masks.MOUTH_OPEN_RATIO
    assert report.source_mouth_opening < classical_masks.MOUTH_OPEN_RATIO
    interior = inner_lips_interior(target_face, target.shape)
    assert interior.sum() > 500  # a real mouth, not a slit
    grey = lambda pixels: pixels.astype(np.float32).mean(axis=2)  # noqa: E731
    assert np.abs(grey(out) - grey(target))[interior].mean() <= 2.0
    # The lips around it are the source's (changed), and the swap is still a swap.
    lips = classical_masks.polygon_mask(target_face.landmarks[48:60], target.shape[:2]) & ~(
        classical_masks.polygon_mask(target_face.landmarks[60:68], target.shape[:2])
    )
    assert np.abs(out.astype(np.int16) - target)[lips].mean() > 5
    check_identity_moved(analyzer, out, target_face, source_face, by=0.2)


def test_a_closed_target_mouth_is_swapped_whole(photo) -> None:
    source, (source_face,) = photo("obama/1.jpg")
    target, (target_face,) = photo("deepface_person_04/1.jpg")
    _, report = ClassicalSwapper().swap_with_report(target, target_face, source, source_face)
    assert not report.mouth_kept


@pytest.mark.parametrize(
    ("source_name", "target_name"),
    [
        ("John_Salley/3.jpg", "obama/1.jpg"),
        # 70 % as open as the target: its own teeth still go in (keeping the target's cost 0.21 dlib
        # distance to the source on the bench).
        ("John_Salley/1.jpg", "deepface_person_05/3.jpg"),
    ],
)
def test_an_open_source_mouth_fills_an_open_target_mouth(photo, source_name: str, target_name: str) -> None:
    # Both smile showing teeth: the source's own teeth (its identity) go in, the target's are not kept.
    source, (source_face,) = photo(source_name)
    target, (target_face,) = photo(target_name)
    _, report = ClassicalSwapper().swap_with_report(target, target_face, source, source_face)
    assert report.mouth_opening > classical_masks.MOUTH_OPEN_RATIO
    assert report.source_mouth_opening >= classical_masks.SOURCE_MOUTH_SHARE * report.mouth_opening
    assert not report.mouth_kept


def test_stubble_takes_the_full_mask(photo) -> None:
    # Kit Harington's short beard is detected but is no full beard: the source's chin replaces it.
    source, (source_face,) = photo("deepface_person_01/2.jpg")
    target, (target_face,) = photo("kit_harington/1.jpg")
    _, report = ClassicalSwapper().swap_with_report(target, target_face, source, source_face)
    assert report.target_facial_hair.chin and not report.target_facial_hair.full_beard
    assert report.mask == "full"


def test_a_bearded_target_keeps_its_jaw_and_beard(analyzer: DlibAnalyzer, photo) -> None:
    source, (source_face,) = photo("demo/darwin_1.jpg")
    target, (target_face,) = photo("demo/lincoln_1.jpg")
    out, report = ClassicalSwapper().swap_with_report(target, target_face, source, source_face)
    assert report.mask == "inner" and report.target_beard and report.target_facial_hair.full_beard
    # Darwin's white beard is as light as his skin in a soft photo: found by its disorder, not darkness.
    assert report.source_facial_hair.chin and not report.source_facial_hair.full_beard
    assert report.source_facial_hair.chin_coherence < classical_masks.HAIR_COHERENCE
    assert abs(report.source_facial_hair.chin_contrast) < classical_masks.HAIR_DARKER
    shape = target.shape[:2]
    points = target_face.landmarks.astype(np.float64)
    beard = classical_masks.beard_weight(target, points)
    chin = classical_masks.polygon_mask(points[classical_masks.CHIN], shape)
    lips = classical_masks.polygon_mask(points[classical_masks.OUTER_LIPS], shape)
    assert (beard[chin & ~lips] > 0.4).mean() > 0.9  # the beard found covers the chin
    change = np.abs(out.astype(np.int16) - target).max(axis=2)
    assert change[beard > 0.99].mean() < 1.0, "the target's beard changed"
    # The source's face reaches down to the beard: its cheeks, upper lip and lips, not only the inner face.
    for part in (points[classical_masks.CHEEKS], points[classical_masks.UPPER_LIP], points[48:60]):
        region = classical_masks.polygon_mask(part, shape) & (beard < 0.01)
        assert change[region].mean() > 10
    check_identity_moved(analyzer, out, target_face, source_face, by=0.05)


def test_clean_shaven_faces_get_the_full_mask(photo) -> None:
    source, (source_face,) = photo("obama/1.jpg")
    target, (target_face,) = photo("biden/2.jpg")
    _, report = ClassicalSwapper().swap_with_report(target, target_face, source, source_face)
    assert report.mask == "full" and not report.source_beard and not report.target_beard


def test_swap_returns_what_swap_with_report_returns(photo) -> None:
    source, (source_face,) = photo("obama/1.jpg")
    target, (target_face,) = photo("biden/2.jpg")
    swapper = ClassicalSwapper()
    out, _ = swapper.swap_with_report(target, target_face, source, source_face)
    assert np.array_equal(out, swapper.swap(target, target_face, source, source_face))


def seam_score(out: np.ndarray, target: np.ndarray, face: Face) -> float:
    """Gradient of the (blurred) change along the edge of the changed region over its mean inside
    (the definition bench/swap_quality.py uses)."""
    import cv2

    changed = np.any(out != target, axis=2).astype(np.uint8)
    width = max(3.0, 0.05 * face.size)
    inside = cv2.distanceTransform(changed, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - changed, cv2.DIST_L2, 5)
    band = ((changed > 0) & (inside < width)) | ((changed == 0) & (outside < width))
    core = (changed > 0) & (inside >= width)

    def lightness(pixels: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(pixels.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[..., 0]

    change = cv2.GaussianBlur(lightness(out) - lightness(target), (0, 0), max(1.0, 0.015 * face.size))
    magnitude = np.hypot(cv2.Sobel(change, cv2.CV_32F, 1, 0), cv2.Sobel(change, cv2.CV_32F, 0, 1))
    return float(magnitude[band].mean() / magnitude[core].mean())


def naive_paste(target: np.ndarray, target_face: Face, source: np.ndarray, source_face: Face) -> np.ndarray:
    """The same warped, globally colour-matched source face, pasted with a hard edge over the full mask."""
    region = classical._region_around(target_face.landmarks.astype(np.float64))
    assert region.x0 >= 0 and region.y0 >= 0 and region.x1 <= target.shape[1] and region.y1 <= target.shape[0]
    patch = target[region.y0 : region.y1, region.x0 : region.x1]
    dst = target_face.landmarks.astype(np.float64) - (region.x0, region.y0)
    src_patch, src, _ = classical._source_patch(source, source_face.landmarks.astype(np.float64), dst)
    size = (patch.shape[1], patch.shape[0])
    warped = classical._warp_piecewise_affine(
        src_patch, classical._with_forehead(src), classical._with_forehead(dst), size
    )
    hull = classical._hull_mask(classical._outline(classical._with_forehead(dst)), patch.shape[:2]) > 0
    matched = skin_tone.match_colour(warped, patch, hull, dst)
    out = target.copy()
    out[region.y0 : region.y1, region.x0 : region.x1][hull] = matched[hull]
    return out


@pytest.mark.parametrize(
    ("source_name", "target_name"),
    [("deepface_person_01/1.jpg", "obama/2.jpg"), ("obama/1.jpg", "biden/2.jpg")],
)
def test_the_seam_is_softer_than_a_naive_paste(photo, source_name: str, target_name: str) -> None:
    source, (source_face,) = photo(source_name)
    target, (target_face,) = photo(target_name)
    out = ClassicalSwapper().swap(target, target_face, source, source_face)
    naive = naive_paste(target, target_face, source, source_face)
    assert seam_score(out, target, target_face) < 0.6 * seam_score(naive, target, target_face)


def test_light_skin_onto_dark_skin_takes_the_tone_around_the_face(photo) -> None:
    """The face's edge (where it meets ears, neck, temples) is near the target's own tone there."""
    import cv2

    source, (source_face,) = photo("deepface_person_01/1.jpg")
    target, (target_face,) = photo("obama/2.jpg")
    out = ClassicalSwapper().swap(target, target_face, source, source_face)
    naive = naive_paste(target, target_face, source, source_face)
    hull = hull_mask(target_face, target.shape).astype(np.uint8)
    depth = cv2.distanceTransform(hull, cv2.DIST_L2, 5)
    rim = (depth > 0.06 * target_face.size) & (depth < 0.14 * target_face.size)

    def rim_lightness_error(pixels: np.ndarray) -> float:
        lab = cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB).astype(np.float32)[..., 0] * (100 / 255)
        lab_t = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)[..., 0] * (100 / 255)
        blur = lambda x: cv2.GaussianBlur(x, (0, 0), 0.05 * target_face.size)  # noqa: E731
        return float(np.abs(blur(lab) - blur(lab_t))[rim].mean())

    assert rim_lightness_error(out) < 0.7 * rim_lightness_error(naive)


# -- computed once per source; no scipy on the swap's path ---------------------------------------------


@pytest.mark.parametrize(
    ("source_name", "target_name"),
    [
        ("demo/darwin_1.jpg", "demo/lincoln_1.jpg"),  # a source beard found by its disorder; target beard
        ("obama/1.jpg", "biden/2.jpg"),
        ("deepface_person_01/2.jpg", "kit_harington/1.jpg"),
    ],
)
def test_a_prepared_source_gives_the_same_pixels(photo, source_name: str, target_name: str) -> None:
    source, (source_face,) = photo(source_name)
    target, (target_face,) = photo(target_name)
    swapper = ClassicalSwapper()
    prepared = swapper.prepare(source, source_face)
    assert prepared.hair == classical_masks.facial_hair(source, source_face.landmarks.astype(np.float64))
    out, report = swapper.swap_with_report(target, target_face, source, source_face)
    out_prepared, report_prepared = swapper.swap_prepared_with_report(target, target_face, prepared)
    assert np.array_equal(out, out_prepared) and report == report_prepared
    assert not np.array_equal(out, target)
    # Reused: a second target with the same prepared source matches its own unprepared swap too.
    again = swapper.swap_prepared(out, target_face, prepared)
    assert np.array_equal(again, swapper.swap(out, target_face, source, source_face))


def test_a_prepared_bad_source_is_refused_at_the_swap(photo) -> None:
    import dataclasses

    target, (target_face,) = photo("obama/1.jpg")
    profile, (profile_face,) = photo("_hard/profile_left.jpg")
    bare = dataclasses.replace(target_face, landmarks=np.empty((0, 2), dtype=np.float32))
    swapper = ClassicalSwapper()
    for source, face, reason in ((profile, profile_face, "turned too far"), (target, bare, "68 finite")):
        prepared = swapper.prepare(source, face)
        assert prepared.hair is None
        with pytest.raises(BadInput, match=reason):
            swapper.swap_prepared(target, target_face, prepared)


def test_swap_transform_prepares_the_source_once(photo) -> None:
    from likeness.jobs.selection import SwapTransform

    source, (source_face,) = photo("demo/darwin_1.jpg")
    target, (target_face,) = photo("demo/lincoln_1.jpg")
    swapper = ClassicalSwapper()
    transform = SwapTransform(swapper=swapper, source_pixels=source, source_face=source_face)
    assert transform.prepared is not None and transform.prepared.hair is not None
    assert np.array_equal(
        transform(target, target_face), swapper.swap(target, target_face, source, source_face)
    )


def _warp_points(face: Face) -> np.ndarray:
    """The target's warp points as the swap triangulates them: landmarks, forehead, merged, border."""
    points = face.landmarks.astype(np.float64)
    region = classical._region_around(points)
    local = classical._with_forehead(points - (region.x0, region.y0))
    local, _, _ = classical._merge_close(local, local)
    return np.vstack([local, classical._border_points(region.width, region.height)])


def test_the_triangulation_is_delaunay_on_real_landmarks(photo) -> None:
    from scipy.spatial import Delaunay

    names = ["obama/1.jpg", "biden/2.jpg", "kit_harington/1.jpg", "demo/lincoln_1.jpg", "demo/darwin_1.jpg"]
    for name in names:
        _, faces = photo(name)
        points = _warp_points(faces[0])
        triangles = classical._delaunay(points)
        reference = Delaunay(points).simplices
        assert len(triangles) == len(reference)
        areas = np.abs(classical._signed_areas(points, triangles))
        assert areas.min() > 0 and np.isclose(
            areas.sum(), np.abs(classical._signed_areas(points, reference)).sum()
        )
        # Empty circumcircles: no point strictly inside any triangle's circle (dlib's integer landmarks
        # make co-circular points common; there either diagonal is Delaunay, scipy and cv2 may differ).
        a, b, c = (points[triangles[:, k]] for k in range(3))
        d = 2 * (
            a[:, 0] * (b[:, 1] - c[:, 1]) + b[:, 0] * (c[:, 1] - a[:, 1]) + c[:, 0] * (a[:, 1] - b[:, 1])
        )
        sq = [(p**2).sum(axis=1) for p in (a, b, c)]
        ux = (sq[0] * (b[:, 1] - c[:, 1]) + sq[1] * (c[:, 1] - a[:, 1]) + sq[2] * (a[:, 1] - b[:, 1])) / d
        uy = (sq[0] * (c[:, 0] - b[:, 0]) + sq[1] * (a[:, 0] - c[:, 0]) + sq[2] * (b[:, 0] - a[:, 0])) / d
        radius = np.hypot(a[:, 0] - ux, a[:, 1] - uy)
        distance = np.hypot(points[None, :, 0] - ux[:, None], points[None, :, 1] - uy[:, None])
        assert (distance >= radius[:, None] * (1 - 1e-6) - 1e-6).all(), name


def test_the_triangulation_matches_scipys_swap_closely(photo, monkeypatch) -> None:
    # The triangulation before cv2.Subdiv2D was scipy's; the pixels may differ only where co-circular
    # points are split by the other diagonal and on shared triangle edges.
    from scipy.spatial import Delaunay

    source, (source_face,) = photo("obama/1.jpg")
    target, (target_face,) = photo("biden/2.jpg")
    swapper = ClassicalSwapper()
    out = swapper.swap(target, target_face, source, source_face)
    monkeypatch.setattr(classical, "_delaunay", lambda points: Delaunay(points).simplices)
    reference = swapper.swap(target, target_face, source, source_face)
    change = np.abs(out.astype(np.int16) - reference).max(axis=2)
    face = hull_mask(target_face, target.shape)
    assert (change[face] > 2).mean() < 0.01 and change[face].mean() < 0.5
    assert (change[~face] == 0).all()


def test_fill_holes_is_scipys_binary_fill_holes(photo) -> None:
    from scipy.ndimage import binary_fill_holes

    rng = np.random.default_rng(7)
    for _ in range(100):
        height, width = rng.integers(1, 50, 2)
        mask = rng.random((height, width)) < rng.uniform(0.2, 0.8)
        assert np.array_equal(classical_masks.fill_holes(mask), binary_fill_holes(mask))
    target, (target_face,) = photo("demo/lincoln_1.jpg")
    beard = classical_masks.beard_weight(target, target_face.landmarks.astype(np.float64)) > 0.5
    assert beard.any() and np.array_equal(classical_masks.fill_holes(beard), binary_fill_holes(beard))


def test_a_still_swap_imports_no_scipy(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from likeness.faces.dlib_backend import DlibAnalyzer\n"
        "from likeness.media.image import load_image\n"
        "from likeness.swap.classical import ClassicalSwapper\n"
        f"demo = {str(DEMO)!r}\n"
        "analyzer = DlibAnalyzer()\n"
        "source, target = (load_image(demo + '/' + n).pixels for n in ('darwin_1.jpg', 'lincoln_1.jpg'))\n"
        "faces = [analyzer.analyze(pixels)[0] for pixels in (target, source)]\n"
        "out = ClassicalSwapper().swap(target, faces[0], source, faces[1])\n"
        "assert not np.array_equal(out, target)\n"
        "print(sorted(m for m in sys.modules if m.startswith('scipy')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_merge_close_keeps_the_first_of_points_closer_than_a_pixel(photo) -> None:
    _, (face,) = photo("obama/1.jpg")
    points = classical._with_forehead(face.landmarks.astype(np.float64))
    # dlib's integer landmarks: add exact and sub-pixel near-duplicates of some of them.
    crowded = np.vstack([points, points[[8, 30, 48]], points[[36, 45]] + (0.6, -0.5), points[[0]] + 1.5])
    kept_dst, kept_src, kept = classical._merge_close(crowded, crowded * 2)
    assert np.array_equal(kept_dst, crowded[kept]) and np.array_equal(kept_src, crowded[kept] * 2)
    gaps = np.hypot(*(kept_dst[:, None] - kept_dst[None]).transpose(2, 0, 1))
    assert (gaps[~np.eye(len(kept), dtype=bool)] >= classical.MERGE_PX).all()
    for index in sorted(set(range(len(crowded))) - set(kept.tolist())):
        earlier = kept[kept < index]
        assert np.hypot(*(crowded[earlier] - crowded[index]).T).min() < classical.MERGE_PX
    # The 5 near copies go, the copy 2.1 px away stays.
    assert len(kept) == len(classical._merge_close(points, points)[2]) + 1


# -- the source's face shape -----------------------------------------------------------------------


def test_the_shape_transfer_moves_the_features_part_way_and_keeps_the_jaw(photo) -> None:
    _, (target_face,) = photo("biden/2.jpg")
    _, (source_face,) = photo("obama/1.jpg")
    dst, src = (face.landmarks.astype(np.float64) for face in (target_face, source_face))
    shaped = classical._towards_source_shape(dst, src)
    assert np.array_equal(shaped[classical.JAW], dst[classical.JAW])
    # The inner lips stay: a kept open mouth's teeth stay inside the target's own lip line.
    assert np.array_equal(shaped[classical_masks.INNER_LIPS], dst[classical_masks.INNER_LIPS])
    moved = shaped - dst
    features = classical.SHAPE_FEATURES
    assert set(features) == set(range(17, 60))  # brows, nose, eyes, outer lips
    assert np.hypot(*moved[features].T).max() > 1.0  # two people: the layout differs
    # Each moved point goes SHAPE_SHARE of the way to the aligned source's: along one line, so the
    # rest of the way is (1 − share) / share times what it moved.
    similarity = _similarity(src[classical.SHAPE_ANCHORS], dst[classical.SHAPE_ANCHORS])
    aligned = src @ similarity[:, :2].T + similarity[:, 2]
    share = classical.SHAPE_SHARE
    rest = aligned[features] - shaped[features]
    assert np.allclose(rest, moved[features] * (1 - share) / share, atol=1e-6)


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    import cv2

    matrix, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32), method=cv2.LMEDS)
    return matrix


def test_a_source_that_differs_only_in_pose_and_size_moves_nothing(photo) -> None:
    # The same face turned in the picture plane, scaled and shifted: the same shape, nothing to transfer.
    _, (face,) = photo("obama/1.jpg")
    dst = face.landmarks.astype(np.float64)
    angle = np.radians(12.0)
    rotation = 1.7 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = dst @ rotation.T + (40.0, -25.0)
    shaped = classical._towards_source_shape(dst, src)
    assert np.abs(shaped - dst).max() < 0.05


def test_the_output_has_the_sources_layout_in_the_targets_pose_and_expression(
    analyzer: DlibAnalyzer, photo, monkeypatch
) -> None:
    # John Salley's eyes, nose and mouth sit otherwise in his face than Biden's: the swapped face's
    # landmarks (found again by dlib) lie nearer his layout than those of the same swap without the
    # shape transfer (measured: 2.5 against 4.0 % of the inter-ocular distance), while the head's turn
    # stays Biden's.
    source, (source_face,) = photo("John_Salley/1.jpg")
    target, (target_face,) = photo("biden/2.jpg")
    dst, src = (face.landmarks.astype(np.float64) for face in (target_face, source_face))
    similarity = _similarity(src[classical.SHAPE_ANCHORS], dst[classical.SHAPE_ANCHORS])
    aligned = (src @ similarity[:, :2].T + similarity[:, 2])[classical.SHAPE_FEATURES]

    def found(share: float) -> np.ndarray:
        monkeypatch.setattr(classical, "SHAPE_SHARE", share)
        out = ClassicalSwapper().swap(target, target_face, source, source_face)
        return swapped_face(analyzer, out, target_face).landmarks.astype(np.float64)

    def to_source(points: np.ndarray) -> float:
        return float(np.hypot(*(points[classical.SHAPE_FEATURES] - aligned).T).mean())

    shaped, unshaped = found(classical.SHAPE_SHARE), found(0.0)
    assert to_source(shaped) < 0.75 * to_source(unshaped)
    # The head's turn stays near the target's (any swap moves dlib's reading of it a little: here 0.04
    # without the transfer, 0.05 with it, on a −1..1 scale) and the transfer hardly changes it.
    assert abs(classical._yaw(shaped) - classical._yaw(dst)) < 0.08
    assert abs(classical._yaw(shaped) - classical._yaw(unshaped)) < 0.02
