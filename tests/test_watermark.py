"""The invisible watermark on real photos: roundtrip, attacks, quality, invisibility on flat areas,
and no false ids."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from likeness.disclosure import watermark
from likeness.disclosure.ecc import CRC24, conv_encode, crc, viterbi_decode
from likeness.disclosure.output_id import format_output_id, is_balanced, new_output_id, output_id_bits
from likeness.media import load_image
from likeness.media.luma import float_luma

ROUNDTRIP_PHOTOS = [
    "John_Salley/1.jpg",
    "_hard/obama_240p_small.jpg",
    "_hard/dark_stage_deepface_img57.jpg",
    "_hard/lowlight_voc_2008_001009.jpg",
    "_multi/couple.jpg",
    "_multi/t1.jpg",
    "_noface/landscape_view.jpg",
    "_noface/hubble_ultra_deep_field.jpg",
    "alex_lacamoire/1.png",
    "biden/1.jpg",
    "deepface_person_03/2.jpg",
    "kit_harington/2.jpg",
]
ATTACK_PHOTOS = ["obama/4.jpg", "deepface_person_05/2.jpg", "rose_leslie/2.jpg", "_multi/two_people.jpg"]
GEOMETRY_PHOTOS = ["obama/4.jpg", "deepface_person_05/2.jpg", "_multi/two_people.jpg"]
PLAIN_BACKDROP_PHOTOS = [
    "alex_lacamoire/3.jpg",  # mid-grey studio wall
    "deepface_person_09/3.jpg",  # light grey wall, white shirt, gold statue
    "rose_leslie/1.jpg",  # bokeh, skin
    "deepface_person_06/2.jpg",  # light wall
    "obama/4.jpg",
]
BLOCK = 32


def _jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, subsampling=2)  # 4:2:0
    return np.asarray(Image.open(buffer).convert("RGB"))


def _resize(pixels: np.ndarray, factor: float) -> np.ndarray:
    h, w = pixels.shape[:2]
    size = (round(w * factor), round(h * factor))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))


def _screenshot(pixels: np.ndarray) -> np.ndarray:
    """Shown at 70 % inside a light UI frame, captured, saved as JPEG q80 (as in the bench)."""
    shown = _resize(pixels, 0.7)
    h, w = shown.shape[:2]
    canvas = np.full((h + 80, w + 60, 3), 240, np.uint8)
    canvas[50 : 50 + h, 30 : 30 + w] = shown
    return _jpeg(canvas, 80)


def _rotate(pixels: np.ndarray, degrees: float) -> np.ndarray:
    import cv2

    h, w = pixels.shape[:2]
    return cv2.warpAffine(pixels, cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0), (w, h))


def _keystone(pixels: np.ndarray, amount: float, side: int) -> np.ndarray:
    """One edge (0 top, 1 right, 2 bottom, 3 left) narrowed by ``amount`` of the picture."""
    import cv2

    h, w = pixels.shape[:2]
    box = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    trapezoid = box.copy()
    axis, inward = (0 if side in (0, 2) else 1), (1.0 if side in (0, 1) else -1.0)
    inset = amount / 2 * (w if side in (0, 2) else h)
    trapezoid[side, axis] += inset * inward
    trapezoid[(side + 1) % 4, axis] -= inset * inward
    return cv2.warpPerspective(pixels, cv2.getPerspectiveTransform(box, trapezoid), (w, h))


def _ui_screenshot(pixels: np.ndarray, scale: float) -> np.ndarray:
    """Shown at ``scale`` inside app chrome: a dark title bar, a sidebar with text lines."""
    shown = _resize(pixels, scale)
    h, w = shown.shape[:2]
    canvas = np.full((h + 140, w + 260, 3), 245, np.uint8)
    canvas[:60] = (40, 44, 52)
    canvas[60:, :200] = (230, 232, 236)
    for row in range(80, canvas.shape[0] - 12, 28):
        canvas[row : row + 10, 20 : 20 + 60 + (row * 37) % 110] = 90
    canvas[100 : 100 + h, 230 : 230 + w] = shown
    return canvas


def _luma(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _block_stats(original: np.ndarray, marked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 32×32 block: the original luma's standard deviation and the RMS of the luma change."""
    a, b = _luma(original), _luma(marked)
    rows, cols = a.shape[0] // BLOCK, a.shape[1] // BLOCK

    def blocks(v: np.ndarray) -> np.ndarray:
        return v[: rows * BLOCK, : cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK)

    return blocks(a).std(axis=(1, 3)), np.sqrt((blocks(b - a) ** 2).mean(axis=(1, 3)))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


@pytest.mark.parametrize("photo", ROUNDTRIP_PHOTOS)
def test_roundtrip_on_real_photos(faces_dir: Path, photo: str) -> None:
    pixels = load_image(faces_dir / photo).pixels
    output_id = new_output_id()
    marked = watermark.embed_id(pixels, output_id)
    assert marked.shape == pixels.shape and marked.dtype == np.uint8
    assert _psnr(pixels, marked) >= 38.0
    reading = watermark.decode(marked)
    assert reading.found and reading.output_id == output_id
    assert reading.confidence > 0.3


@pytest.mark.slow
@pytest.mark.parametrize("photo", ATTACK_PHOTOS)
def test_survives_jpeg50_resize_crop_blur_and_screenshots(faces_dir: Path, photo: str) -> None:
    pixels = load_image(faces_dir / photo).pixels
    output_id = new_output_id()
    marked = watermark.embed_id(pixels, output_id)
    h, w = marked.shape[:2]
    side = 0.8**0.5
    ch, cw = round(h * side), round(w * side)
    cropped = marked[(h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw]
    attacked = {
        "jpeg50": _jpeg(marked, 50),
        "resize0.5": _resize(marked, 0.5),
        "resize0.25": _resize(marked, 0.25),
        "crop80": cropped,
        "brightness-30": np.clip(marked.astype(np.int16) - 30, 0, 255).astype(np.uint8),
        "blur1.5": np.asarray(Image.fromarray(marked).filter(ImageFilter.GaussianBlur(1.5))),
        "screenshot": _screenshot(marked),
    }
    got = {name: watermark.decode(image).output_id for name, image in attacked.items()}
    assert got == dict.fromkeys(attacked, output_id)


@pytest.mark.slow
@pytest.mark.parametrize("photo", GEOMETRY_PHOTOS)
def test_survives_rotation_mirror_keystone_and_ui_screenshots_also_after_jpeg70(
    faces_dir: Path, photo: str
) -> None:
    pixels = load_image(faces_dir / photo).pixels
    output_id = new_output_id()
    marked = watermark.embed_id(pixels, output_id)
    attacked = {
        "rotate+10": _rotate(marked, 10.0),
        "rotate-15": _rotate(marked, -15.0),
        "mirror": np.ascontiguousarray(marked[:, ::-1]),
        "keystone10 top": _keystone(marked, 0.10, 0),
        "keystone10 left": _keystone(marked, 0.10, 3),
        "screenshot50": _ui_screenshot(marked, 0.5),
    }
    attacked.update({f"{name} +q70": _jpeg(image, 70) for name, image in list(attacked.items())})
    got = {name: watermark.decode(np.ascontiguousarray(image)).output_id for name, image in attacked.items()}
    assert got == dict.fromkeys(attacked, output_id)


@pytest.mark.parametrize(
    ("photo", "sigmas"),
    [("obama/4.jpg", (0.08, 0.12, 0.18)), ("deepface_person_05/2.jpg", (0.08, 0.12))],
)
def test_survives_strong_white_noise(faces_dir: Path, photo: str, sigmas: tuple[float, ...]) -> None:
    """imagecorruptions' gaussian_noise: + N(0, sigma) on [0, 1] pixels (severities 1, 2, 3: sigma
    0.08, 0.12, 0.18, that is 20 to 46 grey levels). The decoder must not take the noise for
    texture that carries the mark; its estimate of the noise level must follow the noise."""
    pixels = load_image(faces_dir / photo).pixels
    output_id = new_output_id()
    marked = watermark.embed_id(pixels, output_id)
    rng = np.random.default_rng(11)
    levels = []
    for sigma in sigmas:
        noisy = np.clip(marked / 255.0 + rng.normal(0.0, sigma, marked.shape), 0.0, 1.0)
        noisy = np.rint(noisy * 255.0).astype(np.uint8)
        assert watermark.decode(noisy).output_id == output_id, sigma
        work = watermark._resize(watermark._luma(noisy), *watermark._working_size(*noisy.shape[:2]))
        levels.append(watermark._noise_level(work))
    clean = watermark._resize(watermark._luma(marked), *watermark._working_size(*marked.shape[:2]))
    assert watermark._noise_level(clean) < levels[0] < levels[-1]


def _zoom_blur(pixels: np.ndarray, amount: float = 0.06, steps: int = 8) -> np.ndarray:
    """The average of the picture zoomed about its centre by 1 … 1 + ``amount`` (as in the bench)."""
    import cv2

    h, w = pixels.shape[:2]
    total = np.zeros(pixels.shape, np.float32)
    for k in range(steps):
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, 1.0 + amount * k / (steps - 1))
        total += cv2.warpAffine(pixels, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
    return np.clip(np.rint(total / steps), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("photo", ["deepface_person_05/3.jpg", "deepface_person_05/2.jpg"])
def test_survives_zoom_blur_also_after_jpeg70(faces_dir: Path, photo: str) -> None:
    """The decoder before the zoom-blur hypothesis read 0 of 8 (…/3) and 4 of 8 (…/2) random ids
    through these; the grid is read through the blur's adjoint."""
    pixels = load_image(faces_dir / photo).pixels
    output_id = new_output_id()
    blurred = _zoom_blur(watermark.embed_id(pixels, output_id))
    assert watermark.decode(blurred).output_id == output_id
    assert watermark.decode(_jpeg(blurred, 70)).output_id == output_id


def _fixed_id(seed: int) -> str:
    """A balanced output id from a seeded generator: the same on every run, so the attacks below
    are tested on one known id rather than on a fresh draw."""
    rng = np.random.default_rng(seed)
    while True:
        bits = rng.integers(0, 2, 50).astype(np.uint8)
        if is_balanced(bits):
            return format_output_id(bits)


def _snow(pixels: np.ndarray, seed: int) -> np.ndarray:
    """imagecorruptions' snow at severity 2, re-implemented with a seeded generator: the picture
    greyed and brightened (0.7 · it + 0.3 · max(it, 1.5 · grey + 0.5)), then bright flakes
    (thresholded noise zoomed 2×, motion-blurred along one direction) added twice and clipped."""
    import cv2

    rng = np.random.default_rng(seed)
    x = pixels.astype(np.float32) / 255.0
    h, w = x.shape[:2]
    layer = rng.normal(0.2, 0.3, (h, w)).astype(np.float32)
    ch, cw = -(-h // 2), -(-w // 2)
    top, left = (h - ch) // 2, (w - cw) // 2
    layer = cv2.resize(layer[top : top + ch, left : left + cw], (2 * cw, 2 * ch))[:h, :w]
    layer = np.clip(np.where(layer < 0.5, 0.0, layer), 0.0, 1.0).astype(np.float32)
    angle = np.deg2rad(rng.uniform(-135, -45))
    kernel = np.zeros((25, 25), np.float32)
    for i in range(12):
        kernel[12 + round(i * np.sin(angle)), 12 + round(i * np.cos(angle))] += np.exp(-(i**2) / 32.0)
    layer = (np.round(cv2.filter2D(layer, -1, kernel / kernel.sum()) * 255.0) / 255.0)[..., None]
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None]
    x = 0.7 * x + 0.3 * np.maximum(x, grey * 1.5 + 0.5)
    return (np.clip(x + layer + np.rot90(layer, 2), 0.0, 1.0) * 255.0).astype(np.uint8)


@pytest.mark.parametrize("photo", ["_hard/obama_partial_face.jpg", "_multi/two_people.jpg"])
def test_survives_snow(faces_dir: Path, photo: str) -> None:
    """Flakes and a greyed, brightened picture. The decoder before the folded tile's bins were
    weighted by their noise missed the first id on the first photo (and, with random ids and
    flakes, 4 of 10 on these two photos); it reads all four now."""
    pixels = load_image(faces_dir / photo).pixels
    for seed in (3, 4):
        output_id = _fixed_id(seed)
        snowed = _snow(watermark.embed_id(pixels, output_id), seed)
        assert watermark.decode(snowed).output_id == output_id, seed


def _ic_zoom_blur(pixels: np.ndarray, top: float = 0.15) -> np.ndarray:
    """imagecorruptions' zoom blur at severity 2: the mean of the picture and its zooms about the
    centre by 1, 1.01, … 1 + ``top``."""
    import cv2

    h, w = pixels.shape[:2]
    factors = np.arange(1.0, 1.0 + top + 1e-9, 0.01)
    total = pixels.astype(np.float32)
    for factor in factors:
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, float(factor))
        total += cv2.warpAffine(pixels, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
    return np.clip(np.rint(total / (len(factors) + 1)), 0, 255).astype(np.uint8)


def test_survives_a_strong_zoom_blur(faces_dir: Path) -> None:
    """Zooms up to 1.15: only the centre and the frequencies across the blur keep the mark. The
    decoder before the noise-weighted fold missed the first of these ids (and 3 of 5 random ones
    on this photo); it reads both now."""
    pixels = load_image(faces_dir / "deepface_person_05" / "2.jpg").pixels
    for seed in (5, 6):
        output_id = _fixed_id(seed)
        assert watermark.decode(_ic_zoom_blur(watermark.embed_id(pixels, output_id))).output_id == output_id


def test_the_mirrored_fold_and_the_unmoved_reading_match_their_direct_computation(faces_dir: Path) -> None:
    """The decoder's shortcuts: the mirrored folded tile from the spectrum (no second FFT) and the
    unmoved grid's soft bits as one matrix product, against flipping the tiles and reading every
    shift."""
    pixels = load_image(faces_dir / "obama" / "4.jpg").pixels
    white = watermark._working_white(watermark._luma(pixels), 1.0)
    folded = watermark._folded(white)
    mirrored = folded.mirrored()
    flipped = watermark._tiles(white)[:, :, ::-1]
    assert np.allclose(mirrored.spectrum, np.fft.rfft2(flipped.sum(axis=0)), rtol=0, atol=1e-3)
    assert np.allclose(mirrored.noise, (np.abs(np.fft.rfft2(flipped)) ** 2).mean(axis=0), rtol=1e-4)
    every_shift = watermark._correlations(folded)[0][:, 0, 0]
    assert np.allclose(
        watermark._soft_unmoved(folded), every_shift, rtol=0, atol=1e-5 * np.abs(every_shift).max()
    )


def test_a_rotated_and_mirrored_picture_reports_its_geometry(faces_dir: Path) -> None:
    pixels = load_image(faces_dir / "obama" / "4.jpg").pixels
    output_id = new_output_id()
    marked = watermark.embed_id(pixels, output_id)
    reading = watermark.decode(_jpeg(np.ascontiguousarray(_rotate(marked, 12.0)[:, ::-1]), 70))
    assert reading.output_id == output_id
    assert reading.details["mirrored"] == 1.0
    assert abs(abs(reading.details["degrees"]) - 12.0) < 0.5
    assert abs(reading.period - watermark.TILE) < 0.01 * watermark.TILE


@pytest.mark.parametrize("photo", PLAIN_BACKDROP_PHOTOS)
def test_flat_areas_stay_clean_and_the_mark_lives_in_texture(faces_dir: Path, photo: str) -> None:
    """The mark must not mottle plain backdrops, sky or skin: over the flattest 20 % of 32×32
    blocks its RMS stays under 0.45 grey levels (measured 0.23–0.33; the first, globally
    normalised version put 1.1–1.6 there, with single blocks beside outlines up to 5–6), no flat
    block gets more than 0.6 (95th percentile), and the busiest 20 % carry at least 5× more."""
    pixels = load_image(faces_dir / photo).pixels
    marked = watermark.embed_id(pixels, new_output_id())
    spread, change = _block_stats(pixels, marked)
    flat = spread <= np.quantile(spread, 0.2)
    busy = spread >= np.quantile(spread, 0.8)
    flat_rms = float(np.sqrt(np.mean(change[flat] ** 2)))
    busy_rms = float(np.sqrt(np.mean(change[busy] ** 2)))
    assert flat_rms <= 0.45
    assert float(np.percentile(change[flat], 95)) <= 0.6
    assert busy_rms >= 5.0 * flat_rms
    assert watermark.decode(marked).output_id is not None


@pytest.mark.parametrize("kind", ["flat grey", "gradient", "dark vignette"])
def test_a_flat_synthetic_picture_gets_only_the_invisible_floor_and_still_reads(kind: str) -> None:
    h, w = 480, 640
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    luma = {
        "flat grey": np.full((h, w), 128.0),
        "gradient": 40.0 + 180.0 * x / (w - 1),
        "dark vignette": 70.0 - 45.0 * (((x - w / 2) / (w / 2)) ** 2 + ((y - h / 2) / (h / 2)) ** 2),
    }[kind]
    pixels = np.repeat(np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    output_id = new_output_id()
    marked = watermark.embed_id(pixels, output_id)
    change = _luma(marked) - _luma(pixels)
    assert float(np.sqrt(np.mean(change**2))) <= 0.4  # measured 0.29–0.31
    assert float(np.abs(change).max()) <= 2.0 + 1e-9  # whole grey levels; luma adds float rounding
    assert watermark.decode(marked).output_id == output_id


def test_embed_is_deterministic_and_changes_only_luma(faces_dir: Path) -> None:
    pixels = load_image(faces_dir / "obama" / "1.jpg").pixels
    output_id = new_output_id()
    a = watermark.embed_id(pixels, output_id)
    b = watermark.embed_id(pixels, output_id)
    assert np.array_equal(a, b)
    delta = a.astype(np.int16) - pixels.astype(np.int16)
    unclipped = (pixels > 10).all(axis=2) & (pixels < 245).all(axis=2)
    # The same change on R, G and B (up to rounding): chroma untouched.
    spread = delta[unclipped].max(axis=1) - delta[unclipped].min(axis=1)
    assert np.percentile(spread, 99) <= 1


def test_the_luma_and_the_marked_sum_are_exactly_the_float32_formulas(faces_dir: Path) -> None:
    """The luma (``float_luma``, the watermark's and the perceptual hash's) and ``_add_to_rgb`` (cv2,
    no full-size float copies) give bit for bit what the plain numpy formulas give: a float32 luma
    summed R, G, B in that order, and ``clip(rint(p + change))`` rounded half to even (ties on both
    parities and saturation at both ends included), a strip of rows at a time."""
    pixels = load_image(faces_dir / "obama" / "1.jpg").pixels
    rgb = pixels.astype(np.float32)
    plain = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    luma = float_luma(pixels)
    assert luma.dtype == np.float32 and np.array_equal(luma, plain)

    rng = np.random.default_rng(5)
    height, width = pixels.shape[:2]
    changes = [
        rng.normal(0.0, 3.0, (height, width)).astype(np.float32),
        (rng.integers(-9, 10, (height, width)) + 0.5).astype(np.float32),  # every sum a tie
        rng.normal(0.0, 200.0, (height, width)).astype(np.float32),  # saturates both ways
    ]
    for change in changes:
        expected = np.clip(np.rint(pixels.astype(np.float32) + change[..., None]), 0, 255).astype(np.uint8)
        assert np.array_equal(watermark._add_to_rgb(pixels, change), expected)
    turned = np.rot90(pixels)  # a view in another memory order
    change = rng.normal(0.0, 3.0, turned.shape[:2]).astype(np.float32)
    expected = np.clip(np.rint(turned.astype(np.float32) + change[..., None]), 0, 255).astype(np.uint8)
    assert np.array_equal(watermark._add_to_rgb(turned, change), expected)


def test_embed_rejects_a_wrong_payload_size() -> None:
    with pytest.raises(ValueError):
        watermark.embed(np.zeros((300, 300, 3), np.uint8), np.zeros(10, np.uint8))


@pytest.mark.parametrize("shape", [(1, 1, 3), (12, 12, 3), (1, 800, 3), (40, 3000, 3)])
def test_degenerate_images_read_as_unmarked(shape: tuple[int, int, int]) -> None:
    assert not watermark.decode(np.zeros(shape, np.uint8)).found
    assert not watermark.decode(np.full(shape, 255, np.uint8)).found


def test_analytic_false_positive_rate_is_stated() -> None:
    assert watermark.MAX_HYPOTHESES == 16
    assert watermark.FALSE_POSITIVE_RATE == watermark.MAX_HYPOTHESES * 2.0**-24
    assert watermark.FALSE_POSITIVE_RATE < 1e-6


@pytest.mark.parametrize("size", [(1920, 1080), (641, 418)], ids=["1080p", "small still"])
def test_decode_never_reads_more_hypotheses_than_the_bound_counts(
    faces_dir: Path, size: tuple[int, int]
) -> None:
    """The bound counts Viterbi decodes: an unmarked 1080p picture (both zooms, the keystone
    search) must not get more than ``MAX_HYPOTHESES`` of them; nor a small still, whose unmoved
    grid and zoom-blur reading each look at two working sizes but read one of them."""
    import cv2

    pixels = cv2.resize(load_image(faces_dir / "obama" / "4.jpg").pixels, size, interpolation=cv2.INTER_AREA)
    produced = list(watermark._hypotheses(pixels))
    assert len(produced) == watermark.MAX_HYPOTHESES
    assert not watermark.decode(pixels).found


def _shrink(pixels: np.ndarray, short_side: int) -> np.ndarray:
    import cv2

    h, w = pixels.shape[:2]
    factor = short_side / min(h, w)
    return cv2.resize(pixels, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize(
    ("photo", "side", "seed"), [("rose_leslie/1.jpg", 500, 4), ("rose_leslie/1.jpg", 540, 4)]
)
def test_a_small_still_shown_at_40_percent_in_a_screenshot_and_jpeg70_reads(
    faces_dir: Path, photo: str, side: int, seed: int
) -> None:
    """A 500–540 px still inside app chrome at 40 % (200–216 px), then JPEG q70: the standard mark
    (``coarse_when_small=False``) misses it; the coarse mark reads it."""
    small = _shrink(load_image(faces_dir / photo).pixels, side)
    assert watermark._gets_coarse(*small.shape[:2])
    output_id = _fixed_id(seed)
    marked = watermark.embed_id(small, output_id)
    coarse = watermark._embed(
        small,
        output_id_bits(output_id),
        None,
        watermark._embed_working_size(*small.shape[:2]),
        watermark.SMALL_BOOST,
    )
    assert np.array_equal(marked, coarse)  # the coarse mark was kept: it reads well unattacked
    assert _psnr(small, marked) >= 38.0
    assert watermark.decode(marked).output_id == output_id
    shot = _jpeg(_ui_screenshot(marked, 0.4), 70)
    assert 0.16 * small.size < 0.35 * shot.size  # the picture covers under a third of the screenshot
    assert watermark.decode(shot).output_id == output_id
    standard = watermark.embed_id(small, output_id, coarse_when_small=False)
    assert watermark.decode(_jpeg(_ui_screenshot(standard, 0.4), 70)).output_id is None


@pytest.mark.parametrize(("photo", "seed"), [("rose_leslie/1.jpg", 4), ("obama/4.jpg", 1)])
def test_a_coarse_marked_small_still_survives_a_crop_to_three_quarters(
    faces_dir: Path, photo: str, seed: int
) -> None:
    """The geometric search reads the coarse mark on the standard working image; from
    ``SMALL_MIN_SIDE`` a centre crop to 0.75 of each side (and JPEG q80 after it) still reads."""
    small = _shrink(load_image(faces_dir / photo).pixels, watermark.SMALL_MIN_SIDE + 20)
    output_id = _fixed_id(seed)
    marked = watermark.embed_id(small, output_id)
    assert not np.array_equal(marked, watermark.embed_id(small, output_id, coarse_when_small=False))
    height, width = marked.shape[:2]
    crop = marked[height // 8 : height - height // 8, width // 8 : width - width // 8]
    assert watermark.decode(crop).output_id == output_id
    assert watermark.decode(_jpeg(crop, 80)).output_id == output_id


def test_stills_under_the_smallest_coarse_side_keep_the_standard_mark(faces_dir: Path) -> None:
    """Under ``SMALL_MIN_SIDE`` a crop would take the coarse mark out of the search's range, so those
    stills are marked as before."""
    pixels = load_image(faces_dir / "rose_leslie" / "1.jpg").pixels
    output_id = _fixed_id(9)
    under = _shrink(pixels, watermark.SMALL_MIN_SIDE - 1)
    at = _shrink(pixels, watermark.SMALL_MIN_SIDE)
    assert np.array_equal(
        watermark.embed_id(under, output_id), watermark.embed_id(under, output_id, coarse_when_small=False)
    )
    assert not np.array_equal(
        watermark.embed_id(at, output_id), watermark.embed_id(at, output_id, coarse_when_small=False)
    )


def test_footage_is_read_without_the_coarse_working_image(
    faces_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Footage only carries the standard mark, and a window is read at 512 px: its reading builds no
    coarse working image (noise there could outscore the standard grid near the threshold)."""
    frame = _shrink(load_image(faces_dir / "obama" / "4.jpg").pixels, 512)
    output_id = _fixed_id(10)
    marked = watermark.embed_id(frame, output_id, coarse_when_small=False)
    built: list[tuple[int, int]] = []
    sizes = watermark._embed_working_size
    monkeypatch.setattr(watermark, "_embed_working_size", lambda h, w: built.append((h, w)) or sizes(h, w))
    assert watermark.decode(marked, coarse_when_small=False).output_id == output_id
    assert built == []
    assert watermark.decode(marked).output_id == output_id
    assert built, "a still's reading does build it"


@pytest.mark.parametrize(
    ("photo", "side"),
    [("_noface/hubble_ultra_deep_field.jpg", 259), ("kit_harington/2.jpg", 374), ("_hard/head_up.jpg", 682)],
)
def test_marks_made_before_small_stills_got_the_coarse_mark_still_read(
    faces_dir: Path, photo: str, side: int
) -> None:
    """Outputs sealed before exist: the fine mark (``coarse_when_small=False``: the embedder as it
    was, and what footage gets at every size) on small stills still reads, unattacked, after JPEG
    q80 and after a resize to half."""
    pixels = load_image(faces_dir / photo).pixels
    assert min(pixels.shape[:2]) == side and watermark._is_small(*pixels.shape[:2])
    output_id = _fixed_id(side)
    old = watermark.embed_id(pixels, output_id, coarse_when_small=False)
    fine_size = watermark._working_size(*pixels.shape[:2])
    assert np.array_equal(old, watermark._embed(pixels, output_id_bits(output_id), None, fine_size, 1.0))
    # Stills from SMALL_MIN_SIDE (head_up, 682 px) now get the coarse mark; smaller ones still this one.
    coarse = watermark._gets_coarse(*pixels.shape[:2])
    assert np.array_equal(old, watermark.embed_id(pixels, output_id)) is not coarse
    for name, image in {"as is": old, "jpeg80": _jpeg(old, 80), "half": _resize(old, 0.5)}.items():
        assert watermark.decode(image).output_id == output_id, name


def test_pictures_of_704_px_and_more_are_marked_as_before(faces_dir: Path) -> None:
    """Only stills under ``WORK`` × ``SMALL_RATIO`` (704 px) get the coarse mark."""
    pixels = _shrink(load_image(faces_dir / "obama" / "4.jpg").pixels, 704)
    assert not watermark._is_small(*pixels.shape[:2])
    output_id = _fixed_id(7)
    assert np.array_equal(
        watermark.embed_id(pixels, output_id), watermark.embed_id(pixels, output_id, coarse_when_small=False)
    )
    assert watermark._is_small(703, 1000) and not watermark._is_small(704, 1000)


def test_a_sharp_busy_small_still_keeps_the_fine_mark(faces_dir: Path) -> None:
    """Downscaled to 500 px, this portrait is busy enough that the RMS cap binds: the coarse mark
    reads back unattacked under ``SMALL_MIN_SNR`` and under ``SMALL_SHARE`` × the fine one's, so it
    gets the fine mark, as before."""
    small = _shrink(load_image(faces_dir / "obama" / "1.jpg").pixels, 500)
    assert watermark._gets_coarse(*small.shape[:2])
    output_id = _fixed_id(8)
    bits = output_id_bits(output_id)
    height, width = small.shape[:2]
    coarse_size, fine_size = (
        watermark._embed_working_size(height, width),
        watermark._working_size(height, width),
    )
    coarse = watermark._embed(small, bits, None, coarse_size, watermark.SMALL_BOOST)
    fine = watermark._embed(small, bits, None, fine_size, 1.0)
    assert watermark._own_snr(coarse, bits, coarse_size) < min(
        watermark.SMALL_MIN_SNR, watermark.SMALL_SHARE * watermark._own_snr(fine, bits, fine_size)
    )
    marked = watermark.embed_id(small, output_id)
    assert np.array_equal(marked, fine)
    assert watermark.decode(_jpeg(marked, 70)).output_id == output_id


def test_marking_and_reading_a_small_still_imports_no_scipy(faces_dir: Path) -> None:
    """The coarse mark's choice (its own reading) and the decoder's choice of grid use numpy's FFT,
    as the first hypothesis does: a still swap's self-check on a small output imports no scipy."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from likeness.media import load_image\n"
        "from likeness.disclosure import watermark\n"
        f"pixels = load_image({str(faces_dir / '_hard' / 'profile_right.png')!r}).pixels\n"
        "assert watermark._is_small(*pixels.shape[:2])\n"
        "marked = watermark.embed_id(pixels, sys.argv[1])\n"
        "assert watermark.decode(marked).output_id == sys.argv[1]\n"
        "print('scipy' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, _fixed_id(9)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.slow
def test_ten_thousand_random_soft_readings_never_yield_an_id() -> None:
    """The decoder's last gate (Viterbi → CRC-24 → balanced weight) on what clean images give it:
    unbiased noise, noise biased towards zero bits, all-zero and constant readings."""
    rng = np.random.default_rng(12345)
    n = watermark.CODED_BITS
    found = []
    for i in range(10_000):
        kind = i % 4
        if kind == 0:
            soft = rng.normal(0, 1, n)
        elif kind == 1:
            soft = rng.normal(-0.5, 1, n)  # biased towards 0 bits
        elif kind == 2:
            soft = rng.laplace(0, 1, n) * (rng.random(n) < 0.3)  # sparse
        else:
            soft = np.full(n, rng.choice([-1.0, 0.0, 1.0]))
        output_id, _ = watermark.read_payload(soft)
        if output_id is not None:
            found.append(output_id)
    assert found == []


def test_read_payload_recovers_ids_through_noise() -> None:
    rng = np.random.default_rng(9)
    for _ in range(50):
        output_id = new_output_id()
        bits = output_id_bits(output_id)
        payload = np.concatenate([bits, np.array([(crc(bits, CRC24) >> (23 - k)) & 1 for k in range(24)])])
        coded = conv_encode(payload.astype(np.uint8))
        soft = (coded * 2.0 - 1.0) + rng.normal(0, 0.5, coded.size)
        assert np.array_equal(viterbi_decode(soft, payload.size), payload)
        assert watermark.read_payload(soft)[0] == output_id


@pytest.mark.slow
def test_clean_photos_and_random_crops_yield_nothing(faces_dir: Path) -> None:
    photos = [
        load_image(p).pixels for p in sorted(faces_dir.rglob("*")) if p.suffix.lower() in {".jpg", ".png"}
    ]
    assert len(photos) > 90
    rng = np.random.default_rng(2024)
    images = list(photos)
    for _ in range(150):
        photo = photos[int(rng.integers(len(photos)))]
        H, W = photo.shape[:2]
        h, w = int(rng.integers(min(H, 64), H + 1)), int(rng.integers(min(W, 64), W + 1))
        y, x = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        images.append(np.ascontiguousarray(photo[y : y + h, x : x + w]))
    for _ in range(30):
        h, w = (int(v) for v in rng.integers(64, 700, 2))
        images.append(np.clip(rng.normal(128, rng.uniform(5, 60), (h, w, 3)), 0, 255).astype(np.uint8))
    readings = [watermark.decode(image) for image in images]
    assert [r.output_id for r in readings if r.found] == []
    assert max(r.confidence for r in readings) < 0.3
