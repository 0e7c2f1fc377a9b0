"""The float luma of an RGB picture, as the watermark and the perceptual hash read it."""

from __future__ import annotations

import numpy as np


def float_luma(pixels: np.ndarray) -> np.ndarray:
    """The float32 luma ``0.299 R + 0.587 G + 0.114 B`` (summed in that order) of H×W×3 (or ×4) uint8
    pixels, channel by channel: bit for bit ``rgb.astype(float32)`` weighted and summed, without that
    float copy of the whole picture (at 1080p the copy and its first touch cost more than the sums,
    and an array over 4 MB can stall on the kernel's huge-page allocation)."""
    luma = pixels[..., 0] * np.float32(0.299)
    luma += pixels[..., 1] * np.float32(0.587)
    luma += pixels[..., 2] * np.float32(0.114)
    return luma
