"""The watermark for footage: :func:`likeness.disclosure.watermark.embed`'s mark, with what does not
change from frame to frame built once per output.

Every frame of one output carries the same id at the same frame size, so the coded bits, the
working size, the tile and its repetition over the working image are fixed: a :class:`FrameMarker`
builds them once. Per frame it only does what depends on the picture, at the working scale
(``watermark.WORK`` = 256 px on the shorter side) wherever it can:

1. the luma at the working scale: ``cv2.cvtColor`` to grey (uint8), area halvings (the fast path
   of ``INTER_AREA``) while a factor of at least 2 is left, then an area resize to the working size
   (within about 1 % of ``embed``'s mask; with no halving left the final factor is near 1, where
   ``INTER_AREA``'s uneven cells blur the working image and lower the mask by up to 5 %);
2. the visual mask, ``watermark._amplitude``, as ``embed`` computes it, times the fixed pattern;
3. that residual, in 1/64 grey levels as int16, enlarged to the frame (``watermark._resize``,
   bilinear, as ``embed``); its RMS over the frame caps it at ``strength``, as in ``embed``;
4. added to R, G and B alike with saturating 8-bit arithmetic, ``clip(pixel + rint(residual))``
   as ``embed``'s float path gives (a value within float32 error of halfway between two grey
   levels may round the other way): see :func:`add_to_rgb`.

1080p on one core (bench/frame_mark.py, CPU time of the thread, load average under 1): 9.7 ms
median, 10.6 mean, 9.1 best, where ``embed_id`` takes 61–62 / 62–66 (720p: 6.1–6.3 / 7.0–7.2
against 29–30); the same whether the two take turns on every frame or each marks the whole pan
(``--alone``). Each frame starts with cold caches, as in a footage job; one frame marked over and
over takes about 6 ms. Most of it is passes over the full frame in memory (grey, enlarge, RMS, the
three-channel add), which cold caches and a busy memory bus slow more than ``embed_id``'s
arithmetic.

Host-interference cancellation (``watermark._cancelling_gains``: every coded bit gets the gain
that leaves all bits the same margin against what the picture alone pushes them to) reads the
picture with the decoder twice, which costs more than the rest of the frame. A shot changes slowly
next to a 2 s reading window, so the gains are computed on the first frame and again every
``GAINS_EVERY`` frames, and the gained pattern is kept in between. Measured with
bench/frame_mark.py (6 s pans at 720p and 1080p, 2 s windows after re-encoding at CRF 28, and at
CRF 28 at 480p): every 12 frames the windows' confidence is that of gains on every frame (within
0.03) and of ``embed_id``'s (within 0.04); gains from the first frame only lose 0 to 0.17 (0.1
or more in most cases), every 25 or 50 frames 0.01 to 0.07.

Stills keep :func:`likeness.disclosure.watermark.embed_id` (one frame: nothing to reuse).
"""

from __future__ import annotations

import numpy as np

from likeness.disclosure import watermark
from likeness.disclosure.ecc import conv_encode

GAINS_EVERY = 12
"""Frames between two computations of the host-interference cancellation gains (about 0.5 s at
25 fps): frame 0, 12, 24, ..."""


MAX_CHANGE = 127.0
"""Grey levels: the largest change one pixel can get (the visual mask keeps it far below: at most
``MASK_CAP`` × 1.5 RMS locally)."""
FIXED_ONE = 64
"""The working residual is enlarged as int16 in 1/64 grey levels (faster than float32, and well
under the rounding to whole grey levels)."""
_TOP_BIT = (128, 128, 128, 0)
"""A cv2 scalar: XOR with it flips the top bit of each of three channels."""


class FrameMarker:
    """Marks frames of ``height``×``width`` with ``output_id`` at ``strength`` (grey levels RMS,
    default ``watermark.STRENGTH``), as :func:`watermark.embed_id` would, reusing its fixed parts."""

    def __init__(
        self,
        height: int,
        width: int,
        output_id: str,
        *,
        strength: float | None = None,
        gains_every: int = GAINS_EVERY,
    ) -> None:
        if min(height, width) < watermark.MIN_SIDE:
            raise ValueError(
                f"a {width}×{height} frame is too small to watermark "
                f"(at least {watermark.MIN_SIDE} px a side)"
            )
        if gains_every < 1:
            raise ValueError(f"gains_every must be at least 1, not {gains_every}")
        self.height, self.width = height, width
        self.output_id = output_id
        self.target = watermark.STRENGTH if strength is None else float(strength)
        self.gains_every = gains_every
        self._signs = conv_encode(watermark.payload_bits(output_id)).astype(np.float64) * 2.0 - 1.0
        self._work_h, self._work_w = watermark._working_size(height, width)
        shrink = min(height / self._work_h, width / self._work_w)
        self._halvings = max(0, int(np.floor(np.log2(shrink))) - 1)
        """Area halvings of the grey frame (the fast path of INTER_AREA) before the last area resize,
        which is left a factor of 2 to 4: nearer 1 its uneven cells blur the working image."""
        self._root_size = float(np.sqrt(height * width))
        self._reps = (-(-self._work_h // watermark.TILE), -(-self._work_w // watermark.TILE))
        self._unit_rms = float(np.sqrt(np.mean(watermark._tile(self._signs) ** 2)))
        self._plain = self._pattern(np.ones_like(self._signs))
        self._gained = self._plain
        """The pattern with the latest cancellation gains (the plain one until they are computed)."""
        self._cancel = min(self._work_h, self._work_w) >= watermark.TILE
        self.frames = 0
        """Frames marked so far."""

    def _pattern(self, gains: np.ndarray) -> np.ndarray:
        """The tile for these per-bit gains, normalised to unit RMS at gain 1, over the working image."""
        tile = (watermark._tile(self._signs * gains) / self._unit_rms).astype(np.float32)
        return np.ascontiguousarray(np.tile(tile, self._reps)[: self._work_h, : self._work_w])

    def _work(self, pixels: np.ndarray) -> np.ndarray:
        """The frame's luma at the working size (float32)."""
        import cv2

        grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
        for _ in range(self._halvings):
            rows, cols = grey.shape[0] // 2, grey.shape[1] // 2
            grey = cv2.resize(grey[: 2 * rows, : 2 * cols], (cols, rows), interpolation=cv2.INTER_AREA)
        return watermark._resize(grey.astype(np.float32), self._work_h, self._work_w)

    def _residual(self, pixels: np.ndarray) -> np.ndarray:
        """The mark for this frame at the working size (the RMS cap is applied at full size)."""
        work = self._work(pixels)
        amplitude = watermark._amplitude(work, self.target / watermark.STRENGTH)
        if self._cancel and self.frames % self.gains_every == 0:
            residual = self._plain * amplitude
            scale = np.float32(min(1.0, self.target / (self._rms(self._enlarge(residual)) + 1e-12)))
            host = watermark._soft_at_origin(work)
            unit = watermark._soft_at_origin(work + residual * scale) - host
            self._gained = self._pattern(watermark._cancelling_gains(host, unit, self._signs))
        return self._gained * amplitude

    def mark(self, pixels: np.ndarray) -> np.ndarray:
        """A marked copy of ``pixels`` (``height``×``width``×3 uint8 RGB)."""
        import cv2

        if pixels.shape != (self.height, self.width, 3) or pixels.dtype != np.uint8:
            raise ValueError(
                f"this marker marks {self.width}×{self.height}×3 uint8 frames, got shape {pixels.shape} "
                f"{pixels.dtype}"
            )
        residual = self._residual(pixels)
        self.frames += 1
        fixed = np.rint(np.clip(residual, -MAX_CHANGE, MAX_CHANGE) * FIXED_ONE).astype(np.int16)
        full = self._enlarge(fixed)
        rms = float(cv2.norm(full)) / (FIXED_ONE * self._root_size)
        return add_to_rgb(pixels, full, scale=min(1.0, self.target / (rms + 1e-12)) / FIXED_ONE)

    def _enlarge(self, residual: np.ndarray) -> np.ndarray:
        return watermark._resize(residual, self.height, self.width)

    def _rms(self, full: np.ndarray) -> float:
        flat = full.reshape(-1)
        return float(np.sqrt(np.dot(flat, flat))) / self._root_size


def add_to_rgb(pixels: np.ndarray, change: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
    """``clip(pixels + rint(scale · change), 0, 255)``: ``change`` (H×W, int16 or float32, with
    ``|scale · change| <= MAX_CHANGE``) added to R, G and B alike.

    Saturating 8-bit arithmetic in cv2 passes: the rounded change offset by 128 as uint8
    (``convertScaleAbs``, exact while the offset value is not negative), both it and the pixels
    moved to the signed range by flipping their top bit (``v ^ 0x80`` read as int8 is ``v - 128``),
    the change spread to three channels, a saturating int8 add, and the flip back.
    """
    import cv2

    offset = cv2.convertScaleAbs(change, alpha=scale, beta=128.0)  # rounds half to even
    delta = cv2.bitwise_xor(offset, 128, dst=offset).view(np.int8)
    spread = cv2.cvtColor(delta.view(np.uint8), cv2.COLOR_GRAY2RGB).view(np.int8)
    out = cv2.bitwise_xor(pixels, _TOP_BIT)
    signed = out.view(np.int8)
    cv2.add(signed, spread, dst=signed)
    return cv2.bitwise_xor(out, _TOP_BIT, dst=out)
