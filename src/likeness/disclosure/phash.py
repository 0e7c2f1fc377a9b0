"""A 64-bit perceptual hash (pHash) of an image, to find an output again after its metadata and
watermark were stripped.

Grey → 32×32 (area average) → 2-D DCT-II → the 8×8 lowest frequencies → one bit per coefficient:
above the median of those 64 (the DC term excluded from the median). Written as 16 hex digits.
Near-duplicates (recompressed, resized, slightly recoloured) differ in a few bits; compare with
:func:`hamming`.

Lookup threshold ``MAX_DISTANCE`` = 8 of 64 bits, measured with ``bench/phash_threshold.py`` on
the 104 test photos, each with a visible label as outputs have (three runs): the same picture
after JPEG q50/q30, resize to 0.5×/0.25×, blur 1.5 px or brightness +30 differs by at most 6 bits,
after a 0.12× thumbnail at q40 by at most 6, after a 2° rotation + q60 by at most 10–12 (≥ 98 %
within 8); different photos differ by at least 10–12 bits in every run (5,356 pairs; 0.1st
percentile 14–15, 1st percentile 20, median 32). A centre crop of 10 % of the area moves ~20 %
of photos past the threshold, 20 % most of them; a mirror image is never matched (the watermark
survives crops; neither survives a mirror). A screenshot inside a uniform frame is matched
through :func:`phash_variants`, which also hashes the picture with such a frame trimmed (0.7×
in a frame: 103/104 found).
"""

from __future__ import annotations

import numpy as np

from likeness.media.luma import float_luma

MAX_DISTANCE = 8
"""Largest Hamming distance at which a file is taken to be a copy of a recorded output."""
TRIM_TOLERANCE = 12
"""Grey levels a frame pixel may differ from the corners' colour and still count as frame."""
TRIM_MIN_AREA = 0.05
RINGING_PX = 8
"""A trimmed picture smaller than this share of the whole is not taken for the content."""


def phash(pixels: np.ndarray) -> str:
    import cv2

    grey = float_luma(pixels)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float64)
    # cv2.dct is the orthonormal 2-D DCT-II, scipy's dctn(type=2, norm="ortho") without importing
    # scipy (0.4-0.5 s of a CLI swap); on 101 test images they differ by at most 1.8e-12.
    low = cv2.dct(small)[:8, :8].reshape(-1)
    bits = low > np.median(low[1:])
    value = 0
    for bit in bits.tolist():
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two hashes from :func:`phash`."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def trim_uniform_border(pixels: np.ndarray, tolerance: int = TRIM_TOLERANCE) -> np.ndarray:
    """``pixels`` without a uniform frame around it (as a screenshot adds), else unchanged.

    The frame colour is the median of the four corners; rows and columns at the edges that hold
    only that colour (within ``tolerance``) are removed, if what remains is at least
    ``TRIM_MIN_AREA`` of the image.
    """
    rgb = pixels[..., :3].astype(np.int16)
    height, width = rgb.shape[:2]
    corners = np.array([rgb[0, 0], rgb[0, -1], rgb[-1, 0], rgb[-1, -1]])
    if np.abs(corners - np.median(corners, axis=0)).max() > tolerance:
        return pixels
    content = np.abs(rgb - np.median(corners, axis=0)).max(axis=2) > tolerance
    rows, cols = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    if rows.size == 0:
        return pixels
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    # JPEG ringing spills a few pixels of the picture's edges into the frame: peel off edge lines
    # (at most one 8×8 block deep) where fewer than half the pixels clearly differ from the frame.
    clear = np.abs(rgb - np.median(corners, axis=0)).max(axis=2) > 2 * tolerance
    for _ in range(RINGING_PX):
        if bottom - top > 2 and clear[top, left:right].mean() < 0.5:
            top += 1
        if bottom - top > 2 and clear[bottom - 1, left:right].mean() < 0.5:
            bottom -= 1
        if right - left > 2 and clear[top:bottom, left].mean() < 0.5:
            left += 1
        if right - left > 2 and clear[top:bottom, right - 1].mean() < 0.5:
            right -= 1
    if (bottom - top) * (right - left) < 0.25 * height * width or (bottom - top, right - left) == (
        height,
        width,
    ):
        return pixels
    return pixels[top:bottom, left:right]


def phash_variants(pixels: np.ndarray) -> tuple[str, ...]:
    """The hash of ``pixels`` and, if it has a uniform frame, of the picture inside it."""
    hashes = [phash(pixels)]
    inner = trim_uniform_border(pixels)
    if inner is not pixels:
        trimmed = phash(np.ascontiguousarray(inner))
        if trimmed not in hashes:
            hashes.append(trimmed)
    return tuple(hashes)
