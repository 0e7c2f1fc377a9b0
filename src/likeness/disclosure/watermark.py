"""The invisible watermark: a tiled spread-spectrum pattern in luminance at a fixed working scale.

Why not invisible-watermark's dwtDct / dwtDctSvd: they quantise one coefficient per 4×4 block of
the DWT LL band at the image's own scale (dwtDct in the U chroma plane), so any resize, crop or
4:2:0 JPEG moves or erases the blocks (see bench/watermark_robustness.py). This keeps their idea
of a low band at reduced scale and adds what they lack: a fixed working scale, a repeated tile
that a crop cannot remove, a search for the tile grid, error correction and a check code.

Embedding
  1. Luma is resized to a working image whose shorter side is ``WORK`` (256) pixels, so the mark
     has the same geometry relative to the picture at every size and survives downscaling
     to 0.25×.
  2. The payload (50 id bits + CRC-24) is convolutionally coded (rate 1/2, K=7) to 160 bits.
     Each coded bit owns its own ~5 (frequency, real/imaginary) slots of the 2-D DFT of a
     ``TILE``×``TILE`` tile, inside the radial band ``BAND`` (cycles per working pixel), with a
     keyed random sign: the bits' patterns are exactly orthogonal and the tile repeats seamlessly.
  3. The tile is repeated over the working image and weighted by a texture mask (stronger in
     busy areas, weaker in flat ones); the residual is upsampled to the full image, scaled to a
     fixed RMS (``STRENGTH``, PSNR ≈ 38.6 dB) and added equally to R, G and B (luma only, so
     chroma subsampling cannot hurt it).

Decoding
  1. The same working luma, whitened: detail (minus a Gaussian blur) over its local variance,
     so busy areas, where image noise dominates, count less.
  2. Scale (a crop or a screenshot frame changes the tile period in the working image): the
     period of an unchanged image, plus the autocorrelation's three best peaks each tried at
     −0.4 %, 0 and +0.4 %.
  3. For each period the image is resampled so the period becomes ``TILE`` and folded (all whole
     tiles summed); the cyclic shift of the tile grid (a crop moves it) comes from FFT
     cross-correlation of the folded tile with every bit's pattern at all 4096 shifts at once:
     the shift where the 160 soft bits are strongest.
  4. The ``MAX_HYPOTHESES`` strongest (period, shift) hypotheses are Viterbi-decoded; an id is
     reported only if its CRC-24 matches and its weight is balanced, so a clean image reports
     one with probability at most ``FALSE_POSITIVE_RATE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from likeness.disclosure.ecc import (
    CONV_TAIL,
    CRC24,
    bits_from_int,
    conv_encode,
    crc,
    int_from_bits,
    viterbi_decode,
)
from likeness.disclosure.output_id import ID_BITS, format_output_id, is_balanced, output_id_bits

WORK = 256
TILE = 64
BAND = (0.0625, 0.3)
STRENGTH = 3.0
"""RMS of the luma change in grey levels at full size: PSNR ≈ 20·log10(255/3.0) ≈ 38.6 dB."""
MASK_GAMMA = 0.75
KEY = 0x4C4B5744  # the public pattern key ("LKWD"); anyone can detect the mark, by design
PAYLOAD_BITS = ID_BITS + CRC24.width
CODED_BITS = 2 * (PAYLOAD_BITS + CONV_TAIL)
MAX_HYPOTHESES = 4
MAX_WORK_LONG = 8 * WORK
MIN_SIDE = 16
REFINE_STEPS = (-0.004, 0.0, 0.004)
CLEAN_SNR, STRONG_SNR = 1.0, 3.0
FALSE_POSITIVE_RATE = MAX_HYPOTHESES * 2.0**-CRC24.width
"""Upper bound on reporting an id from an unmarked image: each decoded hypothesis passes the
CRC-24 by chance with probability 2**-24 (and must also have a balanced id weight, which only
lowers it): at most 4 · 2**-24 ≈ 2.4e-7 per image."""


@dataclass(frozen=True)
class WatermarkReading:
    found: bool
    output_id: str | None
    confidence: float
    """Signal margin in [0, 1]: the SNR of the 160 soft coded bits along the decoded codeword,
    mapped so that unmarked images read 0 (their SNR is ≤ 1.0, since Viterbi picks the nearest
    codeword to noise) and strong marks 1 (SNR ≥ 3). Whether an id is reported is decided by the
    CRC-24, not by this number; a found id near 0.2 is right but has little margin left."""
    strength: float = 0.0
    """How far the best grid hypothesis stands out from the other shifts (about 1.2 on unmarked
    images, 1.5 to 3 on marked ones); for diagnostics."""
    period: float = float(TILE)
    shift: tuple[int, int] = (0, 0)
    details: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "found": self.found,
            "output_id": self.output_id,
            "confidence": round(self.confidence, 4),
            "strength": round(self.strength, 3),
            "period": round(self.period, 3),
        }


@dataclass(frozen=True)
class _Pattern:
    """The fixed layout: which tile frequency coefficients carry which coded bit, with which sign.

    Every coded bit owns its own set of (frequency, real/imaginary) slots of the tile's 2-D DFT
    inside ``BAND``; the bits' patterns are therefore exactly orthogonal.
    """

    bit_patterns_fft: np.ndarray  # (CODED_BITS, TILE, TILE//2+1) complex: rfft2 of each bit's pattern
    matched_fft: np.ndarray  # its complex conjugate in single precision: the matched filters


def _make_pattern() -> _Pattern:
    rng = np.random.default_rng(KEY)
    fy = np.fft.fftfreq(TILE)[:, None]
    fx = np.fft.rfftfreq(TILE)[None, :]
    radius = np.hypot(fy, fx) + 0.0 * fx
    inside = (radius >= BAND[0]) & (radius <= BAND[1])
    inside[:, 0] = False  # the kx = 0 and Nyquist columns are their own mirror images: skip them
    inside[:, -1] = False
    ky, kx = np.nonzero(inside)
    slots = np.stack([np.repeat(ky, 2), np.repeat(kx, 2), np.tile([0, 1], ky.size)], axis=1)
    slots = slots[rng.permutation(len(slots))]
    owner = np.arange(len(slots)) % CODED_BITS
    sign = rng.choice(np.array([-1.0, 1.0]), size=len(slots))
    patterns = np.zeros((CODED_BITS, TILE, TILE // 2 + 1), dtype=np.complex128)
    unit = np.where(slots[:, 2] == 0, 1.0 + 0.0j, 1.0j)
    patterns[owner, slots[:, 0], slots[:, 1]] = sign * unit
    return _Pattern(bit_patterns_fft=patterns, matched_fft=np.conj(patterns).astype(np.complex64))


_PATTERN = _make_pattern()  # derived from constants only; never mutated


def payload_bits(output_id: str) -> np.ndarray:
    """The 74 payload bits: the id's 50 bits and their CRC-24."""
    bits = output_id_bits(output_id)
    return np.concatenate([bits, bits_from_int(crc(bits, CRC24), CRC24.width)])


def _tile(coded: np.ndarray) -> np.ndarray:
    """The tile for coded bits (0/1), unit RMS."""
    signs = coded.astype(np.float64) * 2.0 - 1.0
    spectrum = np.tensordot(signs, _PATTERN.bit_patterns_fft, axes=1)
    tile = np.fft.irfft2(spectrum, s=(TILE, TILE))
    return tile / np.sqrt(np.mean(tile**2))


def _luma(pixels: np.ndarray) -> np.ndarray:
    rgb = pixels.astype(np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _working_size(height: int, width: int) -> tuple[int, int]:
    """Shorter side ``WORK``; a very long image (over 8:1) is fitted by its longer side instead."""
    scale = min(WORK / min(height, width), MAX_WORK_LONG / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def _texture_mask(work: np.ndarray) -> np.ndarray:
    """Relative embedding strength per working pixel: more where the image is busy."""
    detail = work - _blur(work, 2.0)
    activity = np.sqrt(_blur(detail * detail, 4.0))
    reference = float(np.median(activity)) + 1.0
    return np.clip((activity / reference) ** MASK_GAMMA, 0.35, 2.5)


def embed(pixels: np.ndarray, bits: np.ndarray, *, strength: float | None = None) -> np.ndarray:
    """Return a copy of ``pixels`` (H×W×3 uint8 RGB) carrying the 50 id ``bits``."""
    bits = np.asarray(bits, dtype=np.uint8)
    if bits.shape != (ID_BITS,):
        raise ValueError(f"the watermark carries {ID_BITS} id bits, got {bits.shape}")
    payload = np.concatenate([bits, bits_from_int(crc(bits, CRC24), CRC24.width)])
    tile = _tile(conv_encode(payload)).astype(np.float32)

    height, width = pixels.shape[:2]
    work_h, work_w = _working_size(height, width)
    work = _resize(_luma(pixels), work_h, work_w)
    mask = _texture_mask(work)
    reps = (-(-work_h // TILE), -(-work_w // TILE))
    residual = np.tile(tile, reps)[:work_h, :work_w] * mask
    residual = _resize(residual.astype(np.float32), height, width)
    target = STRENGTH if strength is None else strength
    residual *= np.float32(target / (np.sqrt(np.mean(residual * residual, dtype=np.float64)) + 1e-12))
    marked = pixels.astype(np.float32) + residual[..., None]
    return np.clip(np.rint(marked), 0, 255).astype(np.uint8)


def embed_id(pixels: np.ndarray, output_id: str, *, strength: float | None = None) -> np.ndarray:
    return embed(pixels, output_id_bits(output_id), strength=strength)


def _whiten(work: np.ndarray) -> np.ndarray:
    """Image detail weighted by its inverse local variance (busy areas carry more image noise)."""
    detail = work - _blur(work, 3.0)
    activity = np.sqrt(_blur(detail * detail, 1.5))
    return detail / (activity + 2.0) ** 2


def _period_candidates(white: np.ndarray) -> list[float]:
    """Tile periods suggested by the autocorrelation of the whitened working image."""
    height, width = white.shape
    spectrum = np.fft.rfft2(white, s=(2 * height, 2 * width))
    auto = np.fft.irfft2(np.abs(spectrum) ** 2, s=(2 * height, 2 * width))
    lo, hi = int(TILE * 0.7), min(int(TILE * 1.6), height // 2, width // 2)
    if hi <= lo:
        return []
    lags = np.arange(lo, hi + 2)
    profile = auto[0, lags] + auto[lags, 0]
    found: list[tuple[float, float]] = []
    for i in range(1, lags.size - 1):
        if profile[i] > profile[i - 1] and profile[i] >= profile[i + 1]:
            a, b, c = profile[i - 1], profile[i], profile[i + 1]
            offset = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
            found.append((float(b), float(lags[i] + offset)))
    found.sort(reverse=True)
    return [period for _, period in found[:3]]


def _fold(white: np.ndarray, period: float) -> tuple[np.ndarray, int]:
    """Resample so that the tile period becomes ``TILE`` and sum all whole tiles."""
    scale = TILE / period
    height = int(white.shape[0] * scale)
    width = int(white.shape[1] * scale)
    if abs(scale - 1.0) > 1e-6:
        white = _resize(white, height, width)
    rows, cols = height // TILE, width // TILE
    if rows == 0 or cols == 0:
        return np.zeros((TILE, TILE), np.float32), 0
    folded = white[: rows * TILE, : cols * TILE].reshape(rows, TILE, cols, TILE).sum(axis=(0, 2))
    return folded, rows * cols


def _soft_bits(folded: np.ndarray) -> tuple[np.ndarray, tuple[int, int], float]:
    """Soft coded bits at the best cyclic shift of the tile grid."""
    spectrum = np.fft.rfft2(folded)
    corr = np.fft.irfft2(
        spectrum[None] * np.conj(_PATTERN.bit_patterns_fft), s=(TILE, TILE)
    )  # (bits, dy, dx)
    score = np.abs(corr).sum(axis=0)
    dy, dx = np.unravel_index(int(np.argmax(score)), score.shape)
    soft = corr[:, dy, dx]
    noise = float(np.median(score)) / CODED_BITS
    return soft, (int(dy), int(dx)), float(score[dy, dx]) / CODED_BITS / (noise + 1e-12)


def decode(pixels: np.ndarray) -> WatermarkReading:
    """Look for the watermark in ``pixels`` (H×W×3 uint8 RGB)."""
    height, width = pixels.shape[:2]
    if min(height, width) < MIN_SIDE:
        return WatermarkReading(found=False, output_id=None, confidence=0.0)
    work_h, work_w = _working_size(height, width)
    white = _whiten(_resize(_luma(pixels), work_h, work_w)).astype(np.float32)

    periods = [float(TILE)]
    for candidate in _period_candidates(white):
        for step in REFINE_STEPS:
            period = candidate * (1.0 + step)
            if all(abs(period - known) > 0.001 * known for known in periods):
                periods.append(period)
    hypotheses = []
    for period in periods:
        folded, count = _fold(white, period)
        if count:
            soft, shift, peak = _soft_bits(folded)
            hypotheses.append((peak, period, shift, soft))
    hypotheses.sort(key=lambda h: -h[0])

    best = WatermarkReading(found=False, output_id=None, confidence=0.0)
    for peak, period, shift, soft in hypotheses[:MAX_HYPOTHESES]:
        output_id, confidence = read_payload(soft)
        if output_id is not None:
            return WatermarkReading(
                found=True,
                output_id=output_id,
                confidence=confidence,
                strength=peak,
                period=period,
                shift=shift,
            )
        if confidence >= best.confidence:
            best = WatermarkReading(
                found=False, output_id=None, confidence=confidence, strength=peak, period=period, shift=shift
            )
    return best


def read_payload(soft: np.ndarray) -> tuple[str | None, float]:
    """Viterbi-decode 160 soft coded bits; the id if its CRC-24 matches and its weight is balanced."""
    payload = viterbi_decode(soft, PAYLOAD_BITS)
    id_bits, check = payload[:ID_BITS], payload[ID_BITS:]
    confidence = _agreement(soft, conv_encode(payload))
    if crc(id_bits, CRC24) == int_from_bits(check) and is_balanced(id_bits):
        return format_output_id(id_bits), confidence
    return None, confidence


def _agreement(soft: np.ndarray, codeword: np.ndarray) -> float:
    """Signal margin in [0, 1] from the soft bits' SNR along ``codeword`` (see ``confidence``)."""
    y = soft * (codeword.astype(np.float64) * 2.0 - 1.0)
    spread = float(np.std(y))
    if spread <= 0.0:
        return 0.0
    snr = float(np.mean(y)) / spread
    return float(np.clip((snr - CLEAN_SNR) / (STRONG_SNR - CLEAN_SNR), 0.0, 1.0))
