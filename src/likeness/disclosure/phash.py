"""A 64-bit perceptual hash (pHash) of an image, to find an output again after its metadata and
watermark were stripped.

Grey → 32×32 (area average) → 2-D DCT-II → the 8×8 lowest frequencies → one bit per coefficient:
above the median of those 64 (the DC term excluded from the median). Written as 16 hex digits.
Near-duplicates (recompressed, resized, slightly recoloured) differ in a few bits; compare with
:func:`hamming`.
"""

from __future__ import annotations

import numpy as np


def phash(pixels: np.ndarray) -> str:
    import cv2
    from scipy.fft import dctn

    rgb = pixels[..., :3].astype(np.float32)
    grey = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float64)
    low = dctn(small, type=2, norm="ortho")[:8, :8].reshape(-1)
    bits = low > np.median(low[1:])
    value = 0
    for bit in bits.tolist():
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two hashes from :func:`phash`."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
