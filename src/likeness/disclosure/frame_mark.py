"""The watermark for footage: :func:`likeness.disclosure.watermark.embed`'s mark, with what does not
change from frame to frame built once per output.

Every frame of one output carries the same id at the same frame size, so the coded bits, the
working size, the tile and its repetition over the working image are fixed: a :class:`FrameMarker`
builds them once. Per frame it only does what depends on the picture, at the working scale
(``watermark.WORK`` = 256 px on the shorter side) wherever it can, and passes over the whole frame
as few times as it can (they are most of the cost: the frame comes from memory, not the cache):

1. the luma at the working scale (:class:`WorkingShrink`): grey of every other row at 1080p and
   up, exact halvings, one last resize; its mask is within a few per cent of ``embed``'s;
2. the visual mask, ``watermark._amplitude``, in fewer cv2 passes (:class:`MaskParts`, equal
   within float32 rounding), times the fixed pattern;
3. that residual, in 1/64 grey levels as int16, enlarged to the frame (bilinear, as ``embed``); its
   RMS over the frame caps it at ``strength``, as in ``embed``; the full-size RMS is only
   computed when a bound from the working RMS (``_enlarged_rms_bound``) does not already show
   the cap is not reached;
4. added to R, G and B alike with saturating 8-bit arithmetic, ``clip(pixel + rint(residual))``
   as ``embed``'s float path gives (a value within float32 error of halfway between two grey
   levels may round the other way), ``STRIP_ROWS`` rows at a time so the passes stay in the
   cache: see :func:`add_to_rgb`;
5. into the frame itself (``mark(..., in_place=True)``): the sealing path marks the labelled frame,
   a copy the label step made for it, so no new frame is allocated and each strip is written where
   it was just read (a new 6 MB frame at 1080p cost about 1 ms more in the bench, below).

1080p on one core (bench/frame_mark.py ``--alone``, CPU time of the thread, gains included; "old": this
module before step 5, timed in the same run with ``--compare``; 4 runs, load average 0.7–2.3 on the
2-core machine): 6.2–7.0 ms mean, 5.9–6.7 median, 5.6–6.2 best, where the old one took 7.0–9.6 / 6.7–8.0
/ 5.9–7.3 in the same runs and ``embed_id`` 60–61 ms mean in the last two (720p: 3.9–5.2 mean against
4.2–5.3); taking turns with ``embed_id`` (the copy-marking old one then reads warm frames), 7.3 against
7.6. Each frame starts with cold caches, as in the bench. Before steps 1–4 (session 4) the same bench
gave 10.6 mean at 1080p. Visibility (the last two runs; PSNR, flat-area RMS): 1080p 37.9–38.0 dB, 0.88,
as ``embed_id`` (37.8–37.9, 0.88); 720p 37.8–37.9, 0.87–0.88 against 37.8–37.9, 0.84–0.85 for
``embed_id``.

Host-interference cancellation (``watermark._cancelling_gains``: every coded bit gets the gain
that leaves all bits the same margin against what the picture alone pushes them to) reads the
picture with the decoder twice, which costs more than the rest of the frame. A shot changes slowly
next to a 2 s reading window, so the gains are computed on the first frame and again every
``GAINS_EVERY`` frames, and the gained pattern is kept in between. Measured with
bench/frame_mark.py (6 s pans at 720p and 1080p, 2 s windows after re-encoding at CRF 28, and at
CRF 28 at 480p): every 12 frames the windows' confidence is that of gains on every frame (within
0.03) and of ``embed_id``'s (within 0.04); gains from the first frame only lose 0 to 0.17 (0.1
or more in most cases), every 25 or 50 frames 0.01 to 0.07 (an earlier measurement, which chose
12). Both readings use the decoder's whitening in cv2 passes (:func:`soft_at_origin`, equal to
``watermark._soft_at_origin`` within float32 rounding), the first with the frame's own
:class:`MaskParts`; a frame that computes the gains takes about 9.5 ms more at 1080p, 0.8 ms a
frame on average every 12 frames, 0.4 every 24. Every 24 against every 12 (this module, one run
each, a new id per run, so about ±0.03 is noise; the demo portrait and a landscape photo): every
window read the id with no wrong id at CRF 18, CRF 28 and 480p CRF 28, at 1080p and 720p; the
mean window confidence at 480p CRF 28 was 0.88 against 0.91 (portrait, 1080p), 0.85 against 0.87
(portrait, 720p), 0.99–1.00 against 1.00 (landscape), and the same (0.97–1.00) elsewhere.

Stills keep :func:`likeness.disclosure.watermark.embed_id` (one frame: nothing to reuse), which
gives a still under ``watermark.SMALL_RATIO`` × 256 px a coarser mark; footage of any size keeps the
standard one, as ``embed_id(..., coarse_when_small=False)`` draws it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from likeness.disclosure import watermark

GAINS_EVERY = 24
"""Frames between two computations of the host-interference cancellation gains (about once a
second at 24–25 fps): frame 0, 24, 48, ..."""


MAX_CHANGE = 127.0
"""Grey levels: the largest change one pixel can get (the visual mask keeps it far below: at most
``MASK_CAP`` × 1.5 RMS locally)."""
FIXED_ONE = 64
"""The working residual is enlarged as int16 in 1/64 grey levels (faster than float32, and well
under the rounding to whole grey levels)."""
STRIP_ROWS = 64
"""Rows of the frame added at a time (:func:`add_to_rgb`): a strip's change, its three-channel
copy and its output stay in the core's cache between the passes (1080p: 2.0 ms a frame instead of
3.1 in one piece; 32 rows 2.2, 128 rows 2.1, 16 rows 2.4)."""
_TOP_BIT = (128, 128, 128, 0)
"""A cv2 scalar: XOR with it flips the top bit of each of three channels."""
_ROUNDING = 0.5 / FIXED_ONE
"""Grey levels: the most the int16 enlargement's rounding adds to a pixel's change."""


class FrameMarker:
    """Marks frames of ``height``×``width`` with ``output_id`` at ``strength`` (grey levels RMS,
    default ``watermark.STRENGTH``), as :func:`watermark.embed_id` with ``coarse_when_small=False``
    would, reusing its fixed parts."""

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
        self._signs = watermark.coded_signs(watermark.payload_bits(output_id))
        self._work_h, self._work_w = watermark._working_size(height, width)
        self._shrink = WorkingShrink.plan(height, width, self._work_h, self._work_w)
        self._root_size = float(np.sqrt(height * width))
        self._rms_bound = _enlarged_rms_bound(self._work_h, self._work_w, height, width)
        self._reps = (-(-self._work_h // watermark.TILE), -(-self._work_w // watermark.TILE))
        self._unit_rms = float(np.sqrt(np.mean(watermark._tile(self._signs) ** 2)))
        self._plain = self._pattern(np.ones_like(self._signs))
        self._gained = self._plain
        """The pattern with the latest cancellation gains (the plain one until they are computed)."""
        self._cancel = min(self._work_h, self._work_w) >= watermark.TILE
        self._strips = _StripBuffers(min(STRIP_ROWS, height), width)
        self.frames = 0
        """Frames marked so far."""

    def _pattern(self, gains: np.ndarray) -> np.ndarray:
        """The tile for these per-bit gains, normalised to unit RMS at gain 1, over the working image."""
        tile = (watermark._tile(self._signs * gains) / self._unit_rms).astype(np.float32)
        return np.ascontiguousarray(np.tile(tile, self._reps)[: self._work_h, : self._work_w])

    def _residual(self, pixels: np.ndarray) -> np.ndarray:
        """The mark for this frame at the working size (the RMS cap is applied at full size)."""
        work = self._shrink.luma(pixels)
        parts = MaskParts.of(work)
        amplitude = parts.amplitude(self.target / watermark.STRENGTH)
        if self._cancel and self.frames % self.gains_every == 0:
            residual = self._plain * amplitude
            scale = np.float32(min(1.0, self.target / (self._full_rms(residual, 1.0) + 1e-12)))
            host = soft_at_origin(work, parts)
            unit = soft_at_origin(work + residual * scale) - host
            self._gained = self._pattern(watermark._cancelling_gains(host, unit, self._signs))
        return self._gained * amplitude

    def mark(self, pixels: np.ndarray, *, in_place: bool = False) -> np.ndarray:
        """A marked copy of ``pixels`` (``height``×``width``×3 uint8 RGB, C-contiguous rows); with
        ``in_place``, ``pixels`` itself, marked (the sealing path marks the labelled frame, a copy of
        its own: writing into the strips it has just read saves reading and writing a new 6 MB frame
        at 1080p)."""
        import cv2

        if pixels.shape != (self.height, self.width, 3) or pixels.dtype != np.uint8:
            raise ValueError(
                f"this marker marks {self.width}×{self.height}×3 uint8 frames, got shape {pixels.shape} "
                f"{pixels.dtype}"
            )
        if in_place and not (pixels.flags.writeable and pixels.strides[1:] == (3, 1)):
            raise ValueError("a frame marked in place must be writable, its pixels' bytes packed in rows")
        residual = self._residual(pixels)
        self.frames += 1
        fixed = np.clip(residual, -MAX_CHANGE, MAX_CHANGE, out=residual)
        fixed = cv2.multiply(fixed, float(FIXED_ONE), dtype=cv2.CV_16S)  # rounds half to even, as np.rint
        full = self._enlarge(fixed)
        rms = self._full_rms(fixed, 1.0 / FIXED_ONE, full)
        scale = min(1.0, self.target / (rms + 1e-12)) / FIXED_ONE
        return add_to_rgb(pixels, full, scale=scale, strips=self._strips, out=pixels if in_place else None)

    def _enlarge(self, residual: np.ndarray) -> np.ndarray:
        return watermark._resize(residual, self.height, self.width)

    def _full_rms(self, residual: np.ndarray, unit: float, full: np.ndarray | None = None) -> float:
        """The RMS over the frame (grey levels) of ``residual`` (working size, in ``unit`` grey
        levels) enlarged, or a value at or under ``target`` that bounds it: the enlarged RMS is
        only computed where the bound from the working RMS (``_enlarged_rms_bound``) leaves the
        cap in doubt (``full``: the enlargement, if already made). Either way the cap's scale,
        ``min(1, target / rms)``, is what the exact RMS gives."""
        import cv2

        bound = self._rms_bound * float(cv2.norm(residual)) * unit / np.sqrt(residual.size) + _ROUNDING
        if bound <= self.target:
            return bound
        if full is None:
            full = self._enlarge(residual)
        return float(cv2.norm(full)) * unit / self._root_size


class WorkingShrink:
    """The frame's luma at the working size, read from as little of the frame as keeps the visual
    mask within a few per cent of ``embed``'s (area average of the float luma) on natural pictures.
    Rows alternating in content (interlaced combing, 1-px line patterns) alias in the skipped rows:
    a review probe darkened every other row of a 1080p photo to 30 % and got a mask 0.45× embed's,
    so such footage is marked more weakly (never with a wrong id).

    1. ``cv2.cvtColor`` to grey (uint8) of every ``rows``-th row: every other one where the frame is
       at least 4× the working height (each working row still averages at least two of them; the
       grey pass reads half the frame);
    2. halvings (of both axes, or of the one still at least twice the working size) while one is
       left: ``INTER_LINEAR`` at exactly half is the mean of each 2×2 (or 1×2) cell, and its fast
       path (1080p: 0.13 ms for 540×1920 → 270×480, where ``INTER_AREA`` by 2×4 takes 0.42);
    3. the last resize to the working size, by a factor ``left`` in [1, 2): ``INTER_AREA`` from 1.5
       (its cells of 1.5 px or more average evenly), ``INTER_LINEAR`` from 1.25 (and for a frame
       smaller than the working size, as ``embed`` enlarges it); below, the mean of
       ``INTER_LINEAR`` and ``INTER_CUBIC``. Two resizes after one another blur more than the one
       area average of ``embed``: nearer 1, linear (and area's uneven cells) lowered the mask by
       1–5 %, cubic's sharpening raised it by 1–6 %; their mean is within 2.5 %.

    The visual mask of the result against ``embed``'s (relative RMS difference; mean ratio), on 4
    of the shared test photos and bench/frame_mark.py's demo portrait: 1080p 2.2–6.2 %
    (0.993–1.025); 2160p 1.8–4.0 % (0.985–0.999); 1080×1920 1.8–4.4 % (0.991–1.005); on the 4
    photos, 720p 1.8–3.9 % (1.000–1.005), 853×479 0.5–1.1 % (1.000–1.001). The old path (grey of
    the whole frame, area halvings, an area resize by 2 to 4) was within 0.3–2.1 % at 2.1 ms a
    1080p frame (warm caches); this one takes about 1 ms.
    """

    def __init__(
        self, rows: int, halvings: tuple[tuple[int, int], ...], size: tuple[int, int], last: tuple[int, ...]
    ) -> None:
        self.rows = rows
        self.halvings = halvings
        """Each halving's (rows, columns) after it."""
        self.size = size
        """(height, width): the working size."""
        self.last = last
        """The interpolation(s) of the last resize (two: their mean)."""

    @classmethod
    def plan(cls, height: int, width: int, work_h: int, work_w: int) -> WorkingShrink:
        import cv2

        rows = 2 if height >= 4 * work_h else 1
        h, w = -(-height // rows), width
        halvings = []
        while h >= 2 * work_h or w >= 2 * work_w:
            h, w = (h // 2 if h >= 2 * work_h else h), (w // 2 if w >= 2 * work_w else w)
            halvings.append((h, w))
        left = min(h / work_h, w / work_w)
        if left >= 1.5:
            last: tuple[int, ...] = (cv2.INTER_AREA,)
        elif left >= 1.25 or left <= 1.0:  # below 1, a frame under the working size: as embed enlarges
            last = (cv2.INTER_LINEAR,)
        else:
            last = (cv2.INTER_LINEAR, cv2.INTER_CUBIC)
        return cls(rows, tuple(halvings), (work_h, work_w), last)

    def luma(self, pixels: np.ndarray) -> np.ndarray:
        """The working luma (float32) of an H×W×3 uint8 RGB frame."""
        import cv2

        grey = cv2.cvtColor(pixels[:: self.rows], cv2.COLOR_RGB2GRAY)
        for rows, cols in self.halvings:
            fy, fx = (2 if rows < grey.shape[0] else 1), (2 if cols < grey.shape[1] else 1)
            grey = cv2.resize(grey[: rows * fy, : cols * fx], (cols, rows), interpolation=cv2.INTER_LINEAR)
        work_h, work_w = self.size
        if grey.shape == (work_h, work_w):
            return grey.astype(np.float32)
        resized = [cv2.resize(grey, (work_w, work_h), interpolation=kind) for kind in self.last]
        if len(resized) == 1:
            return resized[0].astype(np.float32)
        return cv2.addWeighted(resized[0], 0.5, resized[1], 0.5, 0.0, dtype=cv2.CV_32F)


@dataclass(frozen=True)
class MaskParts:
    """What the visual mask (``watermark._amplitude``) takes from a working image, before its
    strength and noise settings: the local mean grey (``base``, Gaussian σ 2) and the texture
    contrast (``watermark._texture``). Its filters are nearly all the mask's time, so a frame's
    parts serve both the embedding mask and the host reading of the cancellation gains."""

    base: np.ndarray
    texture: np.ndarray

    @classmethod
    def of(cls, work: np.ndarray) -> MaskParts:
        """``watermark._texture`` in cv2 passes: the same filters, the factor 0.25 on the Sobel
        filters (the square root of the tensor's eigenvalue scales with the gradients)."""
        import cv2

        smooth = watermark._blur(work, watermark.TENSOR_PRE)
        gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3, scale=0.25, borderType=cv2.BORDER_REFLECT)
        gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3, scale=0.25, borderType=cv2.BORDER_REFLECT)
        jxx = watermark._blur(cv2.multiply(gx, gx), watermark.TENSOR_SIGMA)
        jyy = watermark._blur(cv2.multiply(gy, gy), watermark.TENSOR_SIGMA)
        jxy = watermark._blur(cv2.multiply(gx, gy), watermark.TENSOR_SIGMA)
        half = cv2.addWeighted(jxx, 0.5, jyy, -0.5, 0.0)
        mean = cv2.addWeighted(jxx, 0.5, jyy, 0.5, 0.0)
        minor = cv2.max(cv2.subtract(mean, cv2.magnitude(half, jxy)), 0.0)
        size = 2 * watermark.MASK_ERODE + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        texture = watermark._blur(cv2.erode(cv2.sqrt(minor), kernel, borderType=cv2.BORDER_REFLECT), 1.0)
        return cls(base=watermark._blur(work, 2.0), texture=texture)

    def amplitude(self, boost: float = 1.0, *, noise_texture: float = 0.0) -> np.ndarray:
        """``watermark._amplitude(work, boost, noise_texture=...)`` from these parts."""
        import cv2

        texture, base = self.texture, self.base
        if noise_texture > 0.0:
            texture = cv2.sqrt(cv2.max(cv2.subtract(cv2.multiply(texture, texture), noise_texture**2), 0.0))
        masked = cv2.min(cv2.multiply(texture, watermark.MASK_GAIN * boost), watermark.MASK_CAP * boost)
        # MASK_FLOOR · clip((base + 14) / (LUM_REF + 14), 0.4, 1)
        per_level = watermark.MASK_FLOOR / (watermark.LUM_REF + 14.0)
        floor = cv2.addWeighted(base, per_level, base, 0.0, 14.0 * per_level)
        floor = cv2.max(cv2.min(floor, watermark.MASK_FLOOR), 0.4 * watermark.MASK_FLOOR)
        # max(min(base, 255 - base), 0) / MASK_HEADROOM, as max(127.5 - |base - 127.5|, 0) / …
        headroom = cv2.max(cv2.subtract(127.5, cv2.absdiff(base, 127.5)), 0.0)
        headroom = cv2.multiply(headroom, 1.0 / watermark.MASK_HEADROOM)
        return cv2.min(cv2.max(floor, masked), headroom)


def soft_at_origin(work: np.ndarray, parts: MaskParts | None = None) -> np.ndarray:
    """``watermark._soft_at_origin(work)`` (the soft coded bits the host-interference cancellation
    balances), with the decoder's whitening (``watermark._whiten``) in cv2 passes, its mask from
    ``parts`` (``work``'s, if already made) and its noise percentile by ``np.partition``: equal
    within float32 rounding."""
    import cv2

    fine = cv2.subtract(work, watermark._blur(work, 0.8))
    power = watermark._blur(cv2.multiply(fine, fine), 4.0).reshape(-1)
    noise = float(np.sqrt(max(_percentile(power, watermark.NOISE_PERCENTILE), 0.0)))
    detail = cv2.subtract(work, watermark._blur(work, 3.0))
    variance = watermark._blur(cv2.multiply(detail, detail), 1.5)
    parts = MaskParts.of(work) if parts is None else parts
    amplitude = parts.amplitude(noise_texture=watermark.NOISE_TEXTURE * noise)
    floor = watermark.DEC_NOISE**2 + noise * noise
    white = cv2.divide(cv2.multiply(detail, amplitude), cv2.add(variance, floor))
    return watermark._PATTERN.bit_patterns @ watermark._fold(white).reshape(-1)


def _percentile(values: np.ndarray, percent: float) -> float:
    """``np.percentile(values, percent)`` (linear interpolation) of a flat array, by partition."""
    position = percent / 100.0 * (values.size - 1)
    low = int(np.floor(position))
    high = min(low + 1, values.size - 1)
    part = np.partition(values, (low, high))
    return float(part[low]) + (position - low) * (float(part[high]) - float(part[low]))


def _enlarged_rms_bound(work_h: int, work_w: int, height: int, width: int) -> float:
    """A factor c with RMS(enlarged) ≤ c · RMS(working) for ``watermark._resize``'s bilinear
    enlargement from the working size to the frame: every enlarged pixel is a convex combination
    of working pixels, so its square is at most the same combination of their squares (Jensen),
    and summed over the frame each working pixel's square counts its total weight, at most the
    largest row weight times the largest column weight. Those come from enlarging identities."""
    import cv2

    def most_weight(small: int, large: int) -> float:
        weights = cv2.resize(np.eye(small, dtype=np.float32), (small, large), interpolation=cv2.INTER_LINEAR)
        return float(weights.sum(axis=0, dtype=np.float64).max())

    if work_h * work_w >= height * width:
        return float("inf")  # not an enlargement: always measure
    worst = most_weight(work_h, height) * most_weight(work_w, width)
    return float(np.sqrt(worst * work_h * work_w / (height * width))) * (1.0 + 1e-4)


class _StripBuffers:
    """Scratch for one strip of :func:`add_to_rgb`, reused from frame to frame (so it stays cached)."""

    def __init__(self, rows: int, width: int) -> None:
        self.offset = np.empty((rows, width), np.uint8)
        self.spread = np.empty((rows, width, 3), np.uint8)


def add_to_rgb(
    pixels: np.ndarray,
    change: np.ndarray,
    *,
    scale: float = 1.0,
    strips: _StripBuffers | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``clip(pixels + rint(scale · change), 0, 255)``: ``change`` (H×W, int16 or float32, with
    ``|scale · change| <= MAX_CHANGE``) added to R, G and B alike.

    Saturating 8-bit arithmetic in cv2 passes: the rounded change offset by 128 as uint8
    (``convertScaleAbs``, exact while the offset value is not negative), both it and the pixels
    moved to the signed range by flipping their top bit (``v ^ 0x80`` read as int8 is ``v - 128``),
    the change spread to three channels, a saturating int8 add, and the flip back. Done
    ``STRIP_ROWS`` rows at a time in ``strips`` (made for the width) when given. ``out``: where to
    write the result (``pixels`` itself may be given); a new array by default.
    """
    import cv2

    out = np.empty_like(pixels) if out is None else out
    if strips is None:
        strips = _StripBuffers(pixels.shape[0], pixels.shape[1])
    rows = strips.offset.shape[0]
    for top in range(0, pixels.shape[0], rows):
        bottom = min(top + rows, pixels.shape[0])
        offset, spread = strips.offset[: bottom - top], strips.spread[: bottom - top]
        cv2.convertScaleAbs(change[top:bottom], dst=offset, alpha=scale, beta=128.0)  # half to even
        cv2.bitwise_xor(offset, 128, dst=offset)
        cv2.cvtColor(offset, cv2.COLOR_GRAY2RGB, dst=spread)
        part = out[top:bottom]
        cv2.bitwise_xor(pixels[top:bottom], _TOP_BIT, dst=part)
        cv2.add(part.view(np.int8), spread.view(np.int8), dst=part.view(np.int8))
        cv2.bitwise_xor(part, _TOP_BIT, dst=part)
    return out
