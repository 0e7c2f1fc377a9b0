"""Perceptual-hash distances behind ``likeness verify``'s lookup threshold (phash.MAX_DISTANCE).

    python bench/phash_threshold.py

Every test photo gets a visible label (as outputs do). For each edit, the Hamming distance between
the labelled photo's hash and the edited copy's best hash (:func:`phash_variants`: as it is, and
inside a uniform frame) — the same picture. Then the distance between every pair of different
labelled photos — different pictures. A good threshold sits above the first and below the second.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFilter

from likeness.disclosure.label import apply_label
from likeness.disclosure.output_id import new_output_id
from likeness.disclosure.phash import MAX_DISTANCE, hamming, phash, phash_variants
from likeness.media import load_image

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FACES = SHARED / "testdata" / "faces"


def jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, subsampling=2)
    return np.asarray(Image.open(buffer).convert("RGB"))


def resize(pixels: np.ndarray, factor: float) -> np.ndarray:
    h, w = pixels.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))


def crop(pixels: np.ndarray, area: float) -> np.ndarray:
    h, w = pixels.shape[:2]
    ch, cw = round(h * area**0.5), round(w * area**0.5)
    y, x = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(pixels[y : y + ch, x : x + cw])


def rotate(pixels: np.ndarray, degrees: float) -> np.ndarray:
    h, w = pixels.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(pixels, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)


def framed(pixels: np.ndarray, factor: float) -> np.ndarray:
    """Shown smaller inside a light UI frame, captured, saved as JPEG q80 (a screenshot)."""
    shown = resize(pixels, factor)
    h, w = shown.shape[:2]
    canvas = np.full((h + 80, w + 60, 3), 240, np.uint8)
    canvas[50 : 50 + h, 30 : 30 + w] = shown
    return jpeg(canvas, 80)


EDITS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "JPEG q50": lambda p: jpeg(p, 50),
    "JPEG q30": lambda p: jpeg(p, 30),
    "resize 0.5x": lambda p: resize(p, 0.5),
    "resize 0.25x": lambda p: resize(p, 0.25),
    "thumbnail 0.12x + q40": lambda p: jpeg(resize(p, 0.12), 40),
    "brightness +30": lambda p: np.clip(p.astype(np.int16) + 30, 0, 255).astype(np.uint8),
    "blur 1.5 px": lambda p: np.asarray(Image.fromarray(p).filter(ImageFilter.GaussianBlur(1.5))),
    "rotate 2 deg + q60": lambda p: jpeg(rotate(p, 2), 60),
    "screenshot 0.7x in frame": lambda p: framed(p, 0.7),
    "screenshot 0.3x in frame": lambda p: framed(p, 0.3),
    "centre crop 90% area": lambda p: crop(p, 0.9),
    "centre crop 80% area": lambda p: crop(p, 0.8),
    "mirror": lambda p: np.ascontiguousarray(p[:, ::-1]),
}


def main() -> int:
    paths = sorted(p for p in FACES.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    photos = [apply_label(load_image(p).pixels, new_output_id())[0] for p in paths]
    hashes = [phash(p) for p in photos]
    t = MAX_DISTANCE
    print(f"{len(photos)} labelled test photos; threshold {t} of 64 bits\n")
    print(f"{'same picture after':<28}{'max':>5}{'p95':>6}{'mean':>6}{f'  found (≤ {t})':>14}")
    for name, edit in EDITS.items():
        d = np.array(
            [min(hamming(h, v) for v in phash_variants(edit(p))) for h, p in zip(hashes, photos, strict=True)]
        )
        print(
            f"{name:<28}{d.max():>5}{np.percentile(d, 95):>6.0f}{d.mean():>6.1f}"
            f"{f'{(d <= t).sum()}/{len(d)}':>14}"
        )
    pairs = list(itertools.combinations(range(len(photos)), 2))
    variants = [phash_variants(p) for p in photos]
    inter = np.array([min(hamming(hashes[i], v) for v in variants[j]) for i, j in pairs])
    print(
        f"\ndifferent pictures: {len(pairs)} pairs; min {inter.min()}, 0.1st percentile "
        f"{np.percentile(inter, 0.1):.0f}, 1st percentile {np.percentile(inter, 1):.0f}, "
        f"median {np.median(inter):.0f}; within the threshold: {(inter <= t).sum()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
