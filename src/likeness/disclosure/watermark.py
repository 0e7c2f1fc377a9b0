"""The invisible watermark: a tiled spread-spectrum pattern in luminance, shaped by a visual mask.

Why not invisible-watermark's dwtDct / dwtDctSvd: they quantise one coefficient per 4×4 block of
the DWT LL band at the image's own scale (dwtDct in the U chroma plane), so any resize, crop or
4:2:0 JPEG moves or erases the blocks (see bench/watermark_robustness.py). This keeps their idea
of a low band at reduced scale and adds what they lack: a fixed working scale, a repeated tile
that a crop cannot remove, a search for the tile grid, error correction and a check code.

Where the mark goes (the visual mask). The mark's frequencies (periods of 3–16 working pixels,
14–67 px on a 1080p frame) sit where the eye is most sensitive, so on a flat backdrop, sky or
skin any pattern of a few grey levels shows as a "dirty window". Its local amplitude is therefore
set by what hides it (``_amplitude``, see bench/watermark_visibility.py for the measurements):

- **texture masking**: ``MASK_GAIN`` × the local texture contrast at the mark's scale, measured
  as the smaller eigenvalue of the structure tensor (a lone edge has one orientation and counts
  as flat, so no halo of mark runs along outlines), eroded by ``MASK_ERODE`` working pixels so
  the mark stops where the texture stops instead of bleeding into the flat area beside it;
- **a floor** of ``MASK_FLOOR`` grey levels RMS where nothing masks it (about 0.6 % contrast at
  mid-grey, at or under the detection threshold of low-frequency noise; after rounding, about
  10 % of the pixels of a flat grey picture change, by one level); lowered further in dark
  areas (``LUM_REF``);
- **headroom**: never more than 1/``MASK_HEADROOM`` of the distance to black or white, so
  near-white backdrops and deep shadows are not clipped into visible specks;
- ``STRENGTH`` caps the RMS over the whole picture (PSNR ≥ 38.6 dB).

Robustness then comes from the decoder and from the embedder knowing the picture, not from more
amplitude on flat areas:

- **host-interference cancellation** (improved spread spectrum): the embedder reads its own
  picture with the decoder, sees how far the picture alone pushes every coded bit, and gives
  each bit the gain (within ``ISS_GAINS``) that leaves all bits the same margin, at the same
  total energy;
- a **matched-filter decoder** that weights every working pixel by the mark amplitude it expects
  there (the same mask, computed from the received picture) over the local image variance;
- **geometry search on the spectrum**: the mark's energy sits on its own frequency lattice,
  which turns with a rotation and shrinks or stretches with a scale, so the tile's period and
  angle after a crop, a screenshot or a rotation are found where the whitened picture's spectrum
  has energy on that lattice (exact to about 0.1 %), not from the autocorrelation, which drowns
  at these amplitudes. The lattice is its own mirror image, so a mirrored picture is found too.

Embedding
  1. Luma is resized to a working image whose shorter side is ``WORK`` (256) pixels, so the mark
     has the same geometry relative to the picture at every size and survives downscaling to 0.25×.
     A small still (shorter side from ``SMALL_MIN_SIDE`` = 480 px up to ``WORK`` × ``SMALL_RATIO``
     = 704 px) gets a coarser mark: a working side of its side / ``SMALL_RATIO`` (at least
     ``SMALL_WORK``) and the textured part of the mask × ``SMALL_BOOST``, so that shown at 40 % in
     a screenshot and recompressed its band is not above what the downscale and JPEG keep; unless
     that mark reads back weakly unattacked, under ``SMALL_MIN_SNR`` and under ``SMALL_SHARE`` ×
     what the fine mark reads, then it gets the fine one. Footage (``frame_mark``) keeps ``WORK``,
     and footage is read without the coarse working image (``decode(coarse_when_small=False)``).
  2. The payload (50 id bits + CRC-24) is convolutionally coded (rate 1/2, K=7) to 160 bits.
     Each coded bit owns its own ~7 (frequency, real/imaginary) slots of the 2-D DFT of a
     ``TILE``×``TILE`` tile, inside the radial band ``BAND`` (cycles per working pixel), with a
     keyed random sign: the bits' patterns are exactly orthogonal and the tile repeats seamlessly.
  3. The tile (with the per-bit gains) is repeated over the working image and multiplied by the
     mask amplitude; the residual is upsampled to the full image, capped at ``strength`` RMS and
     added equally to R, G and B (luma only, so chroma subsampling cannot hurt it).
  ``strength`` (grey levels RMS, default ``STRENGTH``) scales the textured part of the mask by
  ``strength / STRENGTH`` (the floor on flat areas stays) and is the RMS cap.

Decoding
  1. The same working luma, whitened: detail (minus a Gaussian blur) times the expected mark
     amplitude over the local variance.
  2. Tile maps (tile → picture, 2×2): the identity first (every attack but a crop, reframing or
     geometric change keeps it; on a small still, at whichever of the two working sizes, the
     coarse and the ``WORK`` one, the grid stands out more: one hypothesis); then the
     ``MAPS_PER_ZOOM`` best maps of the lattice search: the spectrum resampled on log-polar axes,
     where rotation (±``ANGLE_RANGE``) and scale (``PERIOD_RANGE``) are shifts, cross-correlated
     with the lattice's own log-polar template (every angle and period at once), each peak
     polished on the fine spectrum and then let become any affine map near it (unequal scales
     and shear). The coarse mark of a small still shows there at 1 to 2 × ``TILE``.
  3. For each map the whitened picture is resampled upright at period ``TILE`` and folded (all
     tiles summed). Every frequency bin of the folded tile is divided by its noise amplitude
     to the power ``FOLD_WHITEN``, the noise being the mean power of the single tiles in that
     bin (the mark adds up only in the sum): what covers the picture unevenly across
     frequencies (snow, frost, a blur's smear, JPEG's block grid) counts less where it is
     strong. The cyclic shift of the tile grid (a crop moves it) comes from FFT
     cross-correlation of the folded tile with every bit's pattern at all 4096 shifts at once:
     the shift where the 160 soft bits, each normalised by its own spread, are strongest. The
     folded tile is read as it is and flipped left-right (a mirrored picture).
  4. A picture shown small inside a large screenshot would alias at the working size: steps 2–3
     are repeated on a working image up to ``ZOOM`` × larger (never beyond the picture's size).
  5. A keystone (perspective) spreads the lattice over a range of scales, so no single map fits:
     the picture is straightened by each of ``KEYSTONES`` on each side in turn, and the
     straightening whose spectrum holds the lattice most clearly is searched and read as in 2–3.
     A zoom blur smears the mark in proportion to the distance from the centre: the unmoved grid
     is read once more through the blur's adjoint (the matched filter for the blurred mark: zooms
     in steps of ``ZOOM_BLUR_STEP``, as imagecorruptions' zoom blur takes them), for the amount
     in ``ZOOM_BLUR_AMOUNTS`` (and, on a small still, the working size) where the grid stands out
     most from the other shifts.
  6. At most ``MAX_HYPOTHESES`` grid hypotheses are Viterbi-decoded; an id is reported only if
     its CRC-24 matches and its weight is balanced, so a clean image reports one with
     probability at most ``FALSE_POSITIVE_RATE``.

The tile layout (``KEY``, ``TILE``, ``BAND``, slot assignment) is the one of the first version,
so pictures marked by it still decode; small stills marked before the coarse mark (the ``WORK``
geometry) are read at the ``WORK`` working size, which the decoder still tries.
"""

from __future__ import annotations

from collections.abc import Iterator
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
from likeness.media.luma import float_luma as _luma

WORK = 256
TILE = 64
BAND = (0.0625, 0.3)
STRENGTH = 3.0
"""Grey levels RMS: the cap on the luma change over the whole picture at full size (PSNR ≥
20·log10(255/3.0) ≈ 38.6 dB), and the reference for ``strength``. Most photos stay well below it:
the mask, not the cap, sets the amplitude."""
KEY = 0x4C4B5744  # the public pattern key ("LKWD"); anyone can detect the mark, by design
PAYLOAD_BITS = ID_BITS + CRC24.width
CODED_BITS = 2 * (PAYLOAD_BITS + CONV_TAIL)
MAX_WORK_LONG = 8 * WORK
MIN_SIDE = 16
SMALL_RATIO = 2.75
"""A still whose shorter side is under ``WORK`` × ``SMALL_RATIO`` (704 px) is marked on a working image
of its shorter side / ``SMALL_RATIO`` (at least ``SMALL_WORK``) instead of ``WORK``: a coarser mark.
At ``WORK`` the band's finest period (3.3 working pixels) is 5.4 px on a 418 px picture and 2.2 px
once that picture is shown at 40 % in a screenshot, where the downscale and JPEG q70 erase it: read
on the true grid, the soft bits' SNR along the true codeword was 0.7–1.1 on the bench's three
failing photos (418–682 px). Chosen on the bench's 17 photos under 1024 px (SMALL_RATIO 2.5 / 2.75 /
3 with ``SMALL_BOOST``: lowest SNR after that attack 1.06 / 1.70 / 1.45, median unattacked 7.7 /
6.9 / 6.3, before 8.1). Pictures of 704 px and more, and all footage (``frame_mark`` keeps
``_working_size``), are marked as before."""
SMALL_MIN_SIDE = 480
"""Stills under this shorter side keep the standard mark. The geometric search reads the coarse
mark on the standard working image, where its period is ``TILE`` × 704 px / the picture's shorter
side: a crop that leaves a coarse-marked still under about 320 px (``PERIOD_RANGE``'s 2.2) loses
it, while the standard mark survives crops down to 0.45 of a side. From 480 px a crop to 0.67 of a
side still reads; a 420 px still cropped to 0.75 did not (review probe: biden and rose_leslie at
420 px, obama at 300 px). The bench's 418 px photo therefore keeps the standard mark, and its 40 %
screenshot + q70 is missed, as before."""
SMALL_WORK = 128
"""The smallest working side of a small still (reached at 352 px): the tile still fits twice, and
the mark's period as the ``WORK`` working image sees it stays within 2 × ``TILE``, inside the lattice
search's ``PERIOD_RANGE``."""
SMALL_BOOST = 1.4
"""``MASK_GAIN`` × this on a small still (under ``MASK_CAP``; the flat floor and the RMS cap
``strength`` stay): the coarser working image has fewer samples to fold, which costs about
√(``WORK`` / its side) of soft-bit SNR; this wins most of it back where texture hides the mark."""

SMALL_MIN_SNR, SMALL_SHARE = 4.0, 0.8
"""A small still keeps the coarse mark only where it reads back, unattacked, with a soft-bit SNR
(along the codeword) of at least ``SMALL_MIN_SNR`` or ``SMALL_SHARE`` × the fine mark's; else it
gets the fine mark, as before. On a sharp, busy small picture the RMS cap binds and the coarse band
competes with more of the picture's own energy (obama/1 downscaled to 420 px: 1.9 coarse, 5.8 fine),
so the coarse mark would trade too much of every other attack's margin for the screenshot."""

# The visual mask (amplitudes in grey levels RMS of the local pattern, at ``STRENGTH``).
MASK_GAIN = 1.0
"""Mark amplitude per grey level of local texture contrast (at the mark's scale)."""
MASK_FLOOR = 0.35
"""Amplitude where nothing masks the mark: flat backdrops, sky, smooth skin."""
MASK_CAP = 10.0
MASK_ERODE = 3
"""Working pixels by which the texture map is eroded: keeps the mark off the flat side of an outline."""
TENSOR_PRE, TENSOR_SIGMA = 1.0, 2.0
"""Pre-smoothing and window (working pixels) of the structure tensor that measures texture."""
LUM_REF = 64.0
"""Below this grey level the floor falls with luminance ((v + 14) / (LUM_REF + 14), at least 0.4):
a grey level is a larger relative change of light in the shadows."""
MASK_HEADROOM = 2.5
ISS_GAINS = (0.25, 3.0)
"""Range of the per-bit gains of the host-interference cancellation (mean square gain 1)."""

# The decoder.
DEC_NOISE = 1.0
"""Grey levels: the noise floor of the whitening (JPEG and sensor noise on flat areas)."""
NOISE_PERCENTILE = 10.0
NOISE_TEXTURE = 0.375
"""Texture contrast (``_texture``) that white noise reads per grey level of ``_noise_level``:
0.25 measured on pure Gaussian noise, × 1.5 margin (chosen on imagecorruptions' gaussian and shot
noise, 24 photos: the 10th-percentile soft-bit SNR rose from 1.30 / 1.11 / 1.18 to 1.51 / 1.27 /
1.35 for gaussian s1 / s2 and shot s2, the unattacked minimum stayed ≥ 2.9)."""
FOLD_WHITEN = 0.75
"""Each bin of the folded tile is divided by its noise amplitude to this power before the bits are
read (0: as folded; 1: fully whitened). The noise of a bin is the mean power of the single tiles
there. Chosen on 24 photos (soft-bit SNR along the true codeword, median; exact ids): 0 / 0.5 /
0.75 / 1 gave imagecorruptions zoom blur s2 1.0 / 1.40 / 1.49 / 1.52 (18, 21, 21, 22 of 24
exact), snow s2 1.14 / 1.23 / 1.29 / 1.32, frost s2 1.24 / 1.35 / 1.39 / 1.40, unattacked
7.9 / 8.6 / – / 6.5 (minimum 3.0 / 4.1 / – / 3.5), resize 0.25× minimum 1.18 / 1.23 / – / 1.04."""
PERIOD_RANGE = (0.45, 2.2)
"""Tile periods searched, relative to ``TILE`` (a crop enlarges it, a screenshot shrinks it)."""
ANGLE_RANGE = 17.0
"""Rotations searched, degrees either way."""
LP_ANGLE_STEP, LP_LOG_STEP = 0.5, 0.008
"""The log-polar grid of the rotation and scale search: degrees, and natural log of the radius."""
LP_CANDIDATES = 4
AFFINE_STEPS = (0.01, 0.004)
"""Steps of the affine polish of each candidate map (relative change of one matrix entry)."""
SPECTRUM_CLIP = 12.0
"""Flattened power is clipped here so one strong picture peak cannot outweigh the lattice."""
ZOOM = 2.0
"""A second, larger working image (up to ``ZOOM`` × and never beyond the picture's own size; tried
when that is at least ``MIN_ZOOM`` ×) reads a picture shown small inside a large screenshot,
whose mark would alias at the working size."""
MIN_ZOOM = 1.25
MAPS_PER_ZOOM = 3
KEYSTONES = (0.06, 0.11)
"""Keystones undone on the picture before a last search (one side this much of the picture's
width or height narrower than the opposite one; each side in turn): the one whose spectrum holds
the lattice most clearly is read. Up to about 3 % off, the affine polish of a map absorbs the rest."""
ZOOM_BLUR_AMOUNTS = (0.02, 0.04, 0.06, 0.08, 0.11, 0.15)
"""Zoom blurs (the largest zoom less 1) whose adjoint is tried on the unmoved grid; the one where
the grid stands out most is decoded (one hypothesis)."""
ZOOM_BLUR_STEP = 0.01
MAX_HYPOTHESES = 1 + 2 * MAPS_PER_ZOOM * 2 + 2 + 1
CLEAN_SNR, STRONG_SNR = 1.0, 3.0
FALSE_POSITIVE_RATE = MAX_HYPOTHESES * 2.0**-CRC24.width
"""Upper bound on reporting an id from an unmarked image: each decoded hypothesis passes the
CRC-24 by chance with probability 2**-24 (and must also have a balanced id weight, which only
lowers it). At most ``MAX_HYPOTHESES`` are decoded (16: the unmoved grid; 3 maps × upright and
mirrored at each of 2 zooms; 1 keystone map × upright and mirrored; the unmoved grid through
the adjoint of 1 zoom blur), so the union bound is 16 · 2**-24 ≈ 9.5e-7 per image (the first
version decoded 5: 3.0e-7). On a small still the unmoved grid and the zoom-blur reading each look
at two working sizes (``SMALL_RATIO``) but decode only the one where the grid stands out more from
the other shifts, chosen before any Viterbi decode: still 16."""


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
    bit_patterns: np.ndarray  # (CODED_BITS, TILE * TILE) float32: each bit's pattern in the tile
    lattice: np.ndarray  # (slots, 2): the (fy, fx) frequencies in use, in cycles per tile


def _band_bins() -> tuple[np.ndarray, np.ndarray]:
    """The (row, column) indices of the tile's rfft2 bins inside ``BAND``."""
    fy = np.fft.fftfreq(TILE)[:, None]
    fx = np.fft.rfftfreq(TILE)[None, :]
    radius = np.hypot(fy, fx)
    inside = (radius >= BAND[0]) & (radius <= BAND[1])
    inside[:, 0] = False  # the kx = 0 and Nyquist columns are their own mirror images: skip them
    inside[:, -1] = False
    return np.nonzero(inside)


def _make_pattern() -> _Pattern:
    rng = np.random.default_rng(KEY)
    ky, kx = _band_bins()
    slots = np.stack([np.repeat(ky, 2), np.repeat(kx, 2), np.tile([0, 1], ky.size)], axis=1)
    slots = slots[rng.permutation(len(slots))]
    owner = np.arange(len(slots)) % CODED_BITS
    sign = rng.choice(np.array([-1.0, 1.0]), size=len(slots))
    patterns = np.zeros((CODED_BITS, TILE, TILE // 2 + 1), dtype=np.complex128)
    unit = np.where(slots[:, 2] == 0, 1.0 + 0.0j, 1.0j)
    patterns[owner, slots[:, 0], slots[:, 1]] = sign * unit
    spatial = np.fft.irfft2(patterns, s=(TILE, TILE)).reshape(CODED_BITS, -1).astype(np.float32)
    lattice = np.stack([np.fft.fftfreq(TILE)[ky] * TILE, np.fft.rfftfreq(TILE)[kx] * TILE], axis=1)
    return _Pattern(
        bit_patterns_fft=patterns,
        matched_fft=np.conj(patterns).astype(np.complex64),
        bit_patterns=spatial,
        lattice=lattice,
    )


_PATTERN = _make_pattern()  # derived from constants only; never mutated


def payload_bits(output_id: str) -> np.ndarray:
    """The 74 payload bits: the id's 50 bits and their CRC-24."""
    return _payload(output_id_bits(output_id))


def _payload(bits: np.ndarray) -> np.ndarray:
    """50 id bits followed by their CRC-24."""
    return np.concatenate([bits, bits_from_int(crc(bits, CRC24), CRC24.width)])


def coded_signs(payload: np.ndarray) -> np.ndarray:
    """The 160 convolutionally coded payload bits as ±1 (float64): what the tile carries."""
    return conv_encode(payload).astype(np.float64) * 2.0 - 1.0


def _tile(weights: np.ndarray) -> np.ndarray:
    """The tile for signed per-bit weights (±1 for a plain codeword; not normalised)."""
    spectrum = np.tensordot(weights, _PATTERN.bit_patterns_fft, axes=1)
    return np.fft.irfft2(spectrum, s=(TILE, TILE))


def _add_to_rgb(pixels: np.ndarray, change: np.ndarray) -> np.ndarray:
    """``clip(rint(pixels + change), 0, 255)`` as uint8, ``change`` (H×W float32) added to R, G and B
    alike: exactly numpy's float32 sum rounded half to even, by cv2 (it adds in float32 and
    saturates), a strip of rows at a time. numpy's way made four full-size float temporaries
    (≈ 100 MB at 1080p, ≈ 50 ms of a still's sealing in a new process); the strips stay under the
    4 MB from which numpy asks the kernel for huge pages (whose allocation stalled a 1080p still's
    marking by 100–150 ms in 2 of 16 runs). Not :func:`likeness.disclosure.frame_mark.add_to_rgb`,
    footage's: it rounds the change before adding it, which differs on ties (3 + 0.5 gives 3 there,
    4 here), so a still's marked pixels would change."""
    import cv2

    out = np.empty(pixels.shape, np.uint8)  # C order whatever the input's (cv2 writes into its rows)
    for top in range(0, pixels.shape[0], _ADD_ROWS):
        rows = slice(top, top + _ADD_ROWS)
        strip = change[rows]
        cv2.add(pixels[rows], cv2.merge([strip, strip, strip]), dst=out[rows], dtype=cv2.CV_8U)
    return out


_ADD_ROWS = 64


def _working_size(height: int, width: int) -> tuple[int, int]:
    """Shorter side ``WORK``; a very long image (over 8:1) is fitted by its longer side instead."""
    scale = min(WORK / min(height, width), MAX_WORK_LONG / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _embed_working_size(height: int, width: int) -> tuple[int, int]:
    """A still's working size: ``_working_size``, or for a small still (shorter side under ``WORK``
    × ``SMALL_RATIO``) a shorter side of side / ``SMALL_RATIO``, at least ``SMALL_WORK``."""
    short = min(height, width)
    if not _is_small(height, width):
        return _working_size(height, width)
    work = max(float(SMALL_WORK), short / SMALL_RATIO)
    scale = min(work / short, MAX_WORK_LONG / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _is_small(height: int, width: int) -> bool:
    """Whether a picture of this size is read at the coarse working size too (``_embed_working_size``)."""
    return min(height, width) < WORK * SMALL_RATIO


def _gets_coarse(height: int, width: int) -> bool:
    """Whether a still of this size may get the coarse mark: small, and not under
    ``SMALL_MIN_SIDE``."""
    return SMALL_MIN_SIDE <= min(height, width) < WORK * SMALL_RATIO


def _resize(image: np.ndarray, height: int, width: int, *, enlarge: str = "linear") -> np.ndarray:
    """Area-average when shrinking; ``enlarge`` "linear" or "cubic" when enlarging."""
    import cv2

    if height * width < image.shape[0] * image.shape[1]:
        interpolation = cv2.INTER_AREA
    else:
        interpolation = cv2.INTER_CUBIC if enlarge == "cubic" else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def _texture(work: np.ndarray) -> np.ndarray:
    """Local texture contrast at the mark's scale, in grey levels, per working pixel.

    The smaller eigenvalue of the structure tensor: high where gradients point in several
    directions (hair, fabric, foliage, film grain), near zero on flat areas and along a lone
    edge, whose one orientation masks a mottled pattern beside it poorly. Scaled so that an
    isotropic texture reads about its RMS contrast at that scale; then eroded, so the mark ends
    where the texture ends.
    """
    import cv2

    smooth = _blur(work, TENSOR_PRE)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    jxx, jyy, jxy = (_blur(g, TENSOR_SIGMA) for g in (gx * gx, gy * gy, gx * gy))
    half = 0.5 * (jxx - jyy)
    minor = np.maximum(0.5 * (jxx + jyy) - np.sqrt(half * half + jxy * jxy), 0.0)
    texture = np.sqrt(minor) * np.float32(0.25)  # Sobel gain 8, isotropic texture RMS ≈ 2·√λ₂
    size = 2 * MASK_ERODE + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    texture = cv2.erode(texture, kernel, borderType=cv2.BORDER_REFLECT)
    return _blur(texture, 1.0)


def _amplitude(
    work: np.ndarray, boost: float = 1.0, *, noise_texture: float = 0.0, texture_gain: float = 1.0
) -> np.ndarray:
    """The visual mask: the mark's local amplitude (grey levels RMS) per working pixel.

    ``boost`` (``strength / STRENGTH``) scales the textured part only; the floor on flat areas
    stays where it is invisible. ``noise_texture`` (the decoder's): the texture contrast that noise
    added after embedding reads, taken off in quadrature (noise is not texture the mark was given).
    ``texture_gain`` multiplies ``MASK_GAIN`` (under ``MASK_CAP``): ``SMALL_BOOST`` on a small still.
    """
    base = _blur(work, 2.0)
    luminance = np.clip((base + 14.0) / (LUM_REF + 14.0), 0.4, 1.0)
    texture = _texture(work)
    if noise_texture > 0.0:
        texture = np.sqrt(np.maximum(texture * texture - np.float32(noise_texture**2), 0.0))
    masked = np.minimum(np.float32(MASK_GAIN * texture_gain) * texture, MASK_CAP) * np.float32(boost)
    amplitude = np.maximum(MASK_FLOOR * luminance, masked)
    headroom = np.maximum(np.minimum(base, 255.0 - base), 0.0) / MASK_HEADROOM
    return np.minimum(amplitude, headroom).astype(np.float32)


def _soft_at_origin(work: np.ndarray) -> np.ndarray:
    """The soft coded bits of a working image whose tile grid is unmoved, read from the plain fold
    (not the decoder's noise-weighted one): what the embedder's host-interference cancellation
    balances (weighting the gains by the decoder's reading lowered its SNR on 8 test photos)."""
    folded = _fold(_whiten(work))
    return _PATTERN.bit_patterns @ folded.reshape(-1)


def _cancelling_gains(host: np.ndarray, unit: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """Per-bit gains, mean square 1, that leave every coded bit the same margin.

    ``host``: the soft bits the picture alone gives; ``unit``: each bit's own contribution at gain
    1. A bit the picture already pushes its way needs less energy, one it pushes the other way
    more: the smallest common margin is found by bisection.
    """
    own = np.maximum(signs * unit, 1e-6 * max(float(np.max(np.abs(unit))), 1e-12))
    lean = signs * host
    low, high = float(np.min(lean)), float(np.max(lean + 4.0 * own))
    gains = np.ones_like(own)
    for _ in range(40):
        margin = 0.5 * (low + high)
        gains = np.clip((margin - lean) / own, *ISS_GAINS)
        if np.mean(gains * gains) > 1.0:
            high = margin
        else:
            low = margin
    return gains


def embed(
    pixels: np.ndarray, bits: np.ndarray, *, strength: float | None = None, coarse_when_small: bool = True
) -> np.ndarray:
    """Return a copy of ``pixels`` (H×W×3 uint8 RGB) carrying the 50 id ``bits``.

    ``strength`` (grey levels RMS, default ``STRENGTH``) scales the textured part of the mask and
    caps the RMS of the change: PSNR ≥ 20·log10(255 / strength).
    ``coarse_when_small``: a still under ``WORK`` × ``SMALL_RATIO`` px gets the coarser, boosted
    mark (``SMALL_RATIO``, ``SMALL_BOOST``); False gives every size the geometry of larger pictures,
    which is what footage gets (``frame_mark.FrameMarker`` reproduces this mark, built per output)
    and what every still got before.
    """
    bits = np.asarray(bits, dtype=np.uint8)
    height, width = pixels.shape[:2]
    fine_size = _working_size(height, width)
    if not (coarse_when_small and _gets_coarse(height, width)):
        return _embed(pixels, bits, strength, fine_size, 1.0)
    coarse_size = _embed_working_size(height, width)
    coarse = _embed(pixels, bits, strength, coarse_size, SMALL_BOOST)
    own = _own_snr(coarse, bits, coarse_size)
    if own >= SMALL_MIN_SNR:
        return coarse
    fine = _embed(pixels, bits, strength, fine_size, 1.0)
    return coarse if own >= SMALL_SHARE * _own_snr(fine, bits, fine_size) else fine


def _own_snr(marked: np.ndarray, bits: np.ndarray, size: tuple[int, int]) -> float:
    """The soft-bit SNR (mean over spread along the codeword) of a freshly marked picture, read as the
    decoder reads the unmoved grid on a working image of ``size``."""
    signs = coded_signs(_payload(bits))
    white = _whiten(_resize(_luma(marked), *size))
    along = _soft_unmoved(_folded(white, light=True)) * signs
    return float(np.mean(along) / (np.std(along) + 1e-12))


def _embed(
    pixels: np.ndarray, bits: np.ndarray, strength: float | None, size: tuple[int, int], boost: float
) -> np.ndarray:
    """``embed`` on a working image of ``size`` (height, width), ``MASK_GAIN`` × ``boost``."""
    bits = np.asarray(bits, dtype=np.uint8)
    if bits.shape != (ID_BITS,):
        raise ValueError(f"the watermark carries {ID_BITS} id bits, got {bits.shape}")
    signs = coded_signs(_payload(bits))
    target = STRENGTH if strength is None else float(strength)

    height, width = pixels.shape[:2]
    work_h, work_w = size
    work = _resize(_luma(pixels), work_h, work_w)
    amplitude = _amplitude(work, target / STRENGTH, texture_gain=boost)
    reps = (-(-work_h // TILE), -(-work_w // TILE))
    unit_rms = float(np.sqrt(np.mean(_tile(signs) ** 2)))

    def residual_for(gains: np.ndarray) -> np.ndarray:
        tile = (_tile(signs * gains) / unit_rms).astype(np.float32)
        return np.tile(tile, reps)[:work_h, :work_w] * amplitude

    gains = np.ones_like(signs)
    residual = residual_for(gains)
    full = _resize(residual, height, width)
    scale = np.float32(min(1.0, target / (float(np.sqrt(np.mean(full * full, dtype=np.float64))) + 1e-12)))
    if min(work_h, work_w) >= TILE:
        host = _soft_at_origin(work)
        unit = _soft_at_origin(work + residual * scale) - host
        gains = _cancelling_gains(host, unit, signs)
        residual = residual_for(gains)
    full = _resize(residual * scale, height, width)
    rms = float(np.sqrt(np.mean(full * full, dtype=np.float64)))
    if rms > target:
        full *= np.float32(target / rms)
    return _add_to_rgb(pixels, full)


def embed_id(
    pixels: np.ndarray, output_id: str, *, strength: float | None = None, coarse_when_small: bool = True
) -> np.ndarray:
    """``embed`` for an output id."""
    return embed(pixels, output_id_bits(output_id), strength=strength, coarse_when_small=coarse_when_small)


def _noise_level(work: np.ndarray) -> float:
    """Grey levels RMS of the white noise on the working image: the finest detail's local power
    where the picture is flattest (its ``NOISE_PERCENTILE``-th percentile), so texture does not
    count. About 0.73 × the true level for white noise; near 0 for a clean photo's flat areas."""
    fine = work - _blur(work, 0.8)
    power = _blur(fine * fine, 4.0)
    return float(np.sqrt(max(float(np.percentile(power, NOISE_PERCENTILE)), 0.0)))


def _whiten(work: np.ndarray) -> np.ndarray:
    """A matched filter: image detail times the mark amplitude expected there, over the local
    variance of everything else (image detail, compression and sensor noise).

    Strong white noise (sensor noise, a noise filter) reads as texture everywhere, so the expected
    amplitude would be as high on a flat backdrop as in hair: the noise's own texture reading
    (``NOISE_TEXTURE`` × its estimated level) is taken off, and its power is added to the
    variance."""
    noise = _noise_level(work)
    detail = work - _blur(work, 3.0)
    variance = _blur(detail * detail, 1.5)
    amplitude = _amplitude(work, noise_texture=NOISE_TEXTURE * noise)
    return (detail * amplitude / (variance + DEC_NOISE**2 + noise * noise)).astype(np.float32)


@dataclass(frozen=True)
class _Spectrum:
    """The whitened picture's power spectrum, flattened (over its local average, which removes the
    picture's own 1/f shape) and clipped: the rfft half-plane of a zero-padded ``rows``×``cols`` DFT."""

    flat: np.ndarray
    rows: int
    cols: int


def _spectrum(white: np.ndarray) -> _Spectrum:
    """Zero-padded to twice the size: the lattice's peaks are sampled finely enough for the polish
    (without it, a weak mark's keystone corrections cannot be told apart)."""
    import cv2

    height, width = white.shape
    rows, cols = cv2.getOptimalDFTSize(2 * height), cv2.getOptimalDFTSize(2 * width)
    padded = np.zeros((rows, cols), np.float32)
    padded[:height, :width] = white
    half = cv2.dft(padded, flags=cv2.DFT_COMPLEX_OUTPUT)[:, : cols // 2 + 1]  # OpenCV's is ~1.7× numpy's
    power = half[..., 0] ** 2 + half[..., 1] ** 2
    flat = power / (cv2.GaussianBlur(power, (0, 0), 2.0, borderType=cv2.BORDER_REFLECT) + 1e-30)
    return _Spectrum(np.minimum(flat, np.float32(SPECTRUM_CLIP)), rows, cols)


_LATTICE_XY = (_PATTERN.lattice[:, ::-1] / TILE).T.copy()
"""The mark's frequencies (fx, fy) in cycles per tile pixel, as columns."""


def _lattice_scores(spectrum: _Spectrum, maps: np.ndarray) -> np.ndarray:
    """Mean flattened power on the mark's lattice for each tile→picture linear map (n, 2, 2).

    A map A (x, y order: picture offset = A · tile offset) moves the mark's frequency k to
    A⁻ᵀ k; the power there is read by bilinear interpolation (negative fx by point symmetry)."""
    freqs = np.linalg.inv(maps).transpose(0, 2, 1) @ _LATTICE_XY  # (n, 2, points)
    fx, fy = freqs[:, 0], freqs[:, 1]
    flip = fx < 0
    fx, fy = np.where(flip, -fx, fx), np.where(flip, -fy, fy)
    flat = spectrum.flat.reshape(-1)
    width = spectrum.flat.shape[1]
    cols, rows = fx * spectrum.cols, fy * spectrum.rows  # negative rows wrap around
    r0, c0 = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    ar, ac = (rows - r0).astype(np.float32), (cols - c0).astype(np.float32)
    top, bottom = (r0 % spectrum.rows) * width, ((r0 + 1) % spectrum.rows) * width
    left, right = np.minimum(c0, width - 1), np.minimum(c0 + 1, width - 1)
    upper = flat.take(top + left) * (1 - ac) + flat.take(top + right) * ac
    lower = flat.take(bottom + left) * (1 - ac) + flat.take(bottom + right) * ac
    return (upper * (1 - ar) + lower * ar).mean(axis=1)


def _similarity(period: float, degrees: float) -> np.ndarray:
    """The tile→picture map of a tile shown at ``period`` pixels, rotated by ``degrees``."""
    angle = np.deg2rad(degrees)
    c, s = np.cos(angle), np.sin(angle)
    return (period / TILE) * np.array([[c, -s], [s, c]])


def _log_polar_template_fft() -> np.ndarray:
    """The conjugate spectrum of the lattice's own log-polar template (the frequencies splatted
    bilinearly at their angle and log radius), for ``_log_polar_candidates``."""
    lo_r = np.log(BAND[0] / PERIOD_RANGE[1])
    n_rho = int(np.ceil((np.log(BAND[1] / PERIOD_RANGE[0]) - lo_r) / LP_LOG_STEP)) + 1
    n_phi = round(180.0 / LP_ANGLE_STEP)
    template = np.zeros((n_phi, n_rho), np.float32)
    kx, ky = _LATTICE_XY
    a = (np.rad2deg(np.arctan2(ky, kx)) + 90.0) / LP_ANGLE_STEP
    r = (np.log(np.hypot(kx, ky)) - lo_r) / LP_LOG_STEP
    a0, r0 = np.floor(a).astype(np.int64), np.floor(r).astype(np.int64)
    wa, wr = a - a0, r - r0
    for da, dr, weight in (
        (0, 0, (1 - wa) * (1 - wr)),
        (1, 0, wa * (1 - wr)),
        (0, 1, (1 - wa) * wr),
        (1, 1, wa * wr),
    ):
        np.add.at(template, ((a0 + da) % n_phi, np.minimum(r0 + dr, n_rho - 1)), weight)
    return np.conj(np.fft.rfft2(template, s=(n_phi, 2 * n_rho)))


_LP_TEMPLATE_FFT = _log_polar_template_fft()  # derived from constants only; never mutated


def _log_polar_candidates(spectrum: _Spectrum) -> list[tuple[float, float, float]]:
    """(peak, period, degrees) where the spectrum holds the mark's lattice, rotated and scaled.

    A rotation turns the lattice and a scale shrinks or stretches its radii, so on log-polar axes
    both are shifts: one cross-correlation of the log-polar spectrum with the lattice's own
    log-polar template (by FFT) scores every rotation in ±``ANGLE_RANGE`` and every period in
    ``PERIOD_RANGE`` at once. The best local maxima are returned, strongest first."""
    import cv2
    import scipy.fft

    lo_r = np.log(BAND[0] / PERIOD_RANGE[1])
    n_rho = int(np.ceil((np.log(BAND[1] / PERIOD_RANGE[0]) - lo_r) / LP_LOG_STEP)) + 1
    n_phi = round(180.0 / LP_ANGLE_STEP)
    phi = np.deg2rad(-90.0 + LP_ANGLE_STEP * np.arange(n_phi))
    radius = np.exp(lo_r + LP_LOG_STEP * np.arange(n_rho))
    shifted = np.fft.fftshift(_blur(spectrum.flat, 1.0), axes=0)
    map_x = (np.cos(phi)[:, None] * radius[None, :] * spectrum.cols).astype(np.float32)
    map_y = (np.sin(phi)[:, None] * radius[None, :] * spectrum.rows + spectrum.rows // 2).astype(np.float32)
    polar = cv2.remap(
        shifted, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=1.0
    )
    polar -= np.float32(polar.mean())

    size = (n_phi, 2 * n_rho)
    corr = scipy.fft.irfft2(_LP_TEMPLATE_FFT * scipy.fft.rfft2(polar, s=size, workers=1), s=size, workers=1)
    max_a = int(ANGLE_RANGE / LP_ANGLE_STEP)
    lags_r = np.arange(
        -int(np.log(PERIOD_RANGE[1]) / LP_LOG_STEP), int(-np.log(PERIOD_RANGE[0]) / LP_LOG_STEP)
    )
    lags_a = np.arange(-max_a, max_a + 1)
    window = corr[np.ix_(lags_a % n_phi, lags_r % size[1])]
    peaks = window == cv2.dilate(window.astype(np.float32), np.ones((5, 5), np.uint8)).astype(window.dtype)
    order = np.argsort(-window[peaks])[:LP_CANDIDATES]
    ia, ir = np.nonzero(peaks)
    return [
        (
            float(window[ia[k], ir[k]]),
            float(TILE * np.exp(-lags_r[ir[k]] * LP_LOG_STEP)),
            float(lags_a[ia[k]] * LP_ANGLE_STEP),
        )
        for k in order
    ]


def _refine(spectrum: _Spectrum, start: np.ndarray) -> tuple[float, np.ndarray]:
    """Polish a candidate map on the fine spectrum: scale and rotation on a fine grid, then any
    affine map near it (a keystone shows locally as unequal scales and a shear); the best map."""
    steps = np.arange(-4, 5)
    grid = [
        start @ _similarity(TILE * np.exp(i * LP_LOG_STEP / 4), j * LP_ANGLE_STEP / 4)
        for i in steps
        for j in steps
    ]
    scores = _lattice_scores(spectrum, np.stack(grid))
    best, best_map = float(scores.max()), grid[int(np.argmax(scores))]
    for step in AFFINE_STEPS:
        for _ in range(2):
            for entry in ((0, 0), (0, 1), (1, 0), (1, 1)):
                tries = []
                for k in (-2, -1, 1, 2):
                    bump = np.zeros((2, 2))
                    bump[entry] = k * step
                    tries.append(best_map @ (np.eye(2) + bump))
                scores = _lattice_scores(spectrum, np.stack(tries))
                if scores.max() > best:
                    best, best_map = float(scores.max()), tries[int(np.argmax(scores))]
    return best, best_map


def _unwarp(white: np.ndarray, tile_map: np.ndarray) -> np.ndarray:
    """Resample the picture into tile coordinates: the mark comes back to period ``TILE``, upright."""
    import cv2

    height, width = white.shape
    inverse = np.linalg.inv(tile_map)
    corners = inverse @ np.array([[0, width, 0, width], [0, 0, height, height]], dtype=np.float64)
    low, high = corners.min(axis=1), corners.max(axis=1)
    size = np.ceil(high - low).astype(int)
    if size.min() < TILE // 2 or size.prod() > 16 * white.size:
        return np.zeros((0, 0), np.float32)
    matrix = np.hstack([tile_map, (tile_map @ low)[:, None]])
    return cv2.warpAffine(
        white, matrix, (int(size[0]), int(size[1])), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )


def _fold(canvas: np.ndarray) -> np.ndarray:
    """Sum all ``TILE``×``TILE`` tiles (a partial tile at the right or bottom counts with the
    pixels it has)."""
    height, width = canvas.shape
    rows, cols = -(-height // TILE), -(-width // TILE)
    padded = np.zeros((rows * TILE, cols * TILE), np.float32)
    padded[:height, :width] = canvas
    return padded.reshape(rows, TILE, cols, TILE).sum(axis=(0, 2))


def _tiles(canvas: np.ndarray) -> np.ndarray:
    """The ``TILE``×``TILE`` tiles of ``canvas`` (zero-padded at the right and bottom), stacked."""
    height, width = canvas.shape
    rows, cols = -(-height // TILE), -(-width // TILE)
    padded = np.zeros((rows * TILE, cols * TILE), np.float32)
    padded[:height, :width] = canvas
    return padded.reshape(rows, TILE, cols, TILE).transpose(0, 2, 1, 3).reshape(-1, TILE, TILE)


@dataclass(frozen=True)
class _Folded:
    """The folded tile's spectrum (rfft2) and the noise power of every bin: the mean power of the
    single tiles (Welch's estimate; the mark adds up only in the sum, so the single tiles' power
    is the rest of the picture's, at the same frequency)."""

    spectrum: np.ndarray
    noise: np.ndarray

    def mirrored(self) -> _Folded:
        """The same for the folded tile flipped left-right: t'(y, x) = t(y, -1 - x), so bin
        (ky, kx) of the flipped tile is e^(2πi·kx/TILE) times the conjugate of bin (-ky, kx)."""
        rows = (-np.arange(TILE)) % TILE
        phase = np.exp(2j * np.pi * np.arange(TILE // 2 + 1) / TILE).astype(np.complex64)
        return _Folded(np.conj(self.spectrum[rows]) * phase[None, :], self.noise[rows])


def _folded(canvas: np.ndarray, *, light: bool = False) -> _Folded:
    """The tiles' spectra summed, and their mean power per bin (the noise of the fold).

    ``light``: numpy's FFT instead of scipy's, which is faster on a stack of small tiles (about 7×)
    but costs about 135 ms to import. The first hypothesis (the unmoved grid) uses it: that is all
    reading a freshly sealed picture takes (``likeness swap``'s self-check), so a one-shot command
    never imports scipy; a search past it does."""
    tiles = _tiles(canvas)
    if light:
        spectra = np.fft.rfft2(tiles).astype(np.complex64)
    else:
        import scipy.fft

        spectra = scipy.fft.rfft2(tiles, workers=1)
    power = spectra.real**2 + spectra.imag**2
    return _Folded(spectra.sum(axis=0), power.mean(axis=0))


def _weighted(folded: _Folded) -> np.ndarray:
    """The folded tile's spectrum with every bin divided by the ``FOLD_WHITEN`` power of its noise
    amplitude: bins where the rest of the picture (snow, frost, the blur's smear, JPEG's block
    grid) is strong count less."""
    noise = folded.noise + np.float32(1e-3) * float(np.median(folded.noise)) + np.float32(1e-30)
    return folded.spectrum / noise ** np.float32(FOLD_WHITEN / 2)


def _correlations(folded: _Folded, *, light: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Every bit's correlation at every cyclic shift of the tile grid (bits, dy, dx), and the
    shift score: the bits' absolute correlations, each over its own RMS, summed (over median).
    ``light``: numpy's FFT, not scipy's (see ``_folded``)."""
    product = _weighted(folded)[None] * _PATTERN.matched_fft
    if light:
        corr = np.fft.irfft2(product, s=(TILE, TILE)).astype(np.float32)
    else:
        import scipy.fft

        corr = scipy.fft.irfft2(product, s=(TILE, TILE), workers=1)
    spread = np.sqrt(np.mean(corr * corr, axis=(1, 2), keepdims=True)) + 1e-20
    score = (np.abs(corr) / spread).sum(axis=0)
    return corr, score / (float(np.median(score)) + 1e-20)


_MATCHED_AT_ORIGIN = np.concatenate([_PATTERN.matched_fft.real, -_PATTERN.matched_fft.imag], axis=2).reshape(
    CODED_BITS, -1
) * np.float32(2.0 / (TILE * TILE))
"""Every bit's correlation at the unmoved grid from the weighted folded spectrum, as one matrix
product (no bit uses the kx = 0 or Nyquist columns, so each bin counts twice)."""


def _soft_unmoved(folded: _Folded) -> np.ndarray:
    """``_correlations(folded)[0][:, 0, 0]`` without the other 4095 shifts."""
    weighted = _weighted(folded)
    return _MATCHED_AT_ORIGIN @ np.concatenate([weighted.real, weighted.imag], axis=1).reshape(-1)


@dataclass(frozen=True)
class _Hypothesis:
    peak: float
    period: float
    degrees: float
    mirrored: bool
    shift: tuple[int, int]
    soft: np.ndarray


def _best_shift(folded: _Folded, period: float, degrees: float, mirrored: bool) -> _Hypothesis:
    corr, score = _correlations(folded)
    dy, dx = np.unravel_index(int(np.argmax(score)), score.shape)
    return _Hypothesis(float(score[dy, dx]), period, degrees, mirrored, (int(dy), int(dx)), corr[:, dy, dx])


def _working_white(luma: np.ndarray, zoom: float, size: tuple[int, int] | None = None) -> np.ndarray:
    """The whitened working image at ``zoom`` × ``size`` (default: ``_working_size``)."""
    height, width = luma.shape
    work_h, work_w = _working_size(height, width) if size is None else size
    size = max(1, round(work_h * zoom)), max(1, round(work_w * zoom))
    return _whiten(_resize(luma, *size, enlarge="cubic"))


def _keystone(white: np.ndarray, side: int, amount: float) -> np.ndarray:
    """The picture with a keystone of ``amount`` undone: the edge ``side`` (0 top, 1 right,
    2 bottom, 3 left) is taken as that much narrower than the opposite one and stretched back."""
    import cv2

    height, width = white.shape
    box = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    trapezoid = box.copy()
    inset = amount / 2 * (width if side in (0, 2) else height)
    axis, inward = (0 if side in (0, 2) else 1), (1.0 if side in (0, 1) else -1.0)
    trapezoid[side, axis] += inset * inward  # the edge's corners, in the order of ``box``
    trapezoid[(side + 1) % 4, axis] -= inset * inward
    matrix = cv2.getPerspectiveTransform(trapezoid, box)
    return cv2.warpPerspective(white, matrix, (width, height), flags=cv2.INTER_LINEAR)


def _zoom_blur_adjoints(white: np.ndarray) -> Iterator[tuple[float, np.ndarray]]:
    """The adjoint of a zoom blur about the centre for each amount of ``ZOOM_BLUR_AMOUNTS``: the
    sum of the picture shrunk about its centre by 1 / f, for f from 1 to 1 + amount in steps of
    ``ZOOM_BLUR_STEP`` (one running sum serves every amount). Reading the mark through it is the
    matched filter for the blurred mark, which weights every place and frequency by how much of
    the mark the blur left there (the centre, and the frequencies across the blur's direction)."""
    import cv2

    height, width = white.shape
    total = np.zeros_like(white)
    amounts = iter(ZOOM_BLUR_AMOUNTS)
    amount = next(amounts)
    for step in range(round(ZOOM_BLUR_AMOUNTS[-1] / ZOOM_BLUR_STEP) + 1):
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, 1.0 / (1.0 + step * ZOOM_BLUR_STEP))
        total += cv2.warpAffine(white, matrix, (width, height), flags=cv2.INTER_LINEAR)
        if step == round(amount / ZOOM_BLUR_STEP):
            yield amount, total
            amount = next(amounts, -1.0)


def _unmoved_hypothesis(white: np.ndarray, coarse: np.ndarray | None) -> _Hypothesis:
    """The unmoved grid. A small still has two (``coarse``: its working image of
    ``_embed_working_size``, which marks made since small stills got a coarser mark use; ``white``:
    the ``WORK`` one of marks made before, and of every larger picture): the one that stands out
    most from the other shifts is read, so it is still one hypothesis. numpy's FFT only (``_folded``)."""
    if coarse is None:
        return _Hypothesis(0.0, float(TILE), 0.0, False, (0, 0), _soft_unmoved(_folded(white, light=True)))
    best = _Hypothesis(-1.0, float(TILE), 0.0, False, (0, 0), np.zeros(CODED_BITS))
    for image in (coarse, white):
        corr, score = _correlations(_folded(image, light=True), light=True)
        if score[0, 0] > best.peak:
            period = TILE * white.shape[0] / image.shape[0]
            best = _Hypothesis(float(score[0, 0]), period, 0.0, False, (0, 0), corr[:, 0, 0])
    return best


def _zoom_blur_hypothesis(white: np.ndarray, coarse: np.ndarray | None = None) -> _Hypothesis:
    """The unmoved grid read through the adjoint of a zoom blur, at the amount of
    ``ZOOM_BLUR_AMOUNTS`` (and, on a small still, on the working image: ``coarse`` or ``white``)
    where the grid stands out most from the other shifts."""
    best = _Hypothesis(-1.0, float(TILE), 0.0, False, (0, 0), np.zeros(CODED_BITS))
    for image in (white,) if coarse is None else (coarse, white):
        period = TILE * white.shape[0] / image.shape[0]
        for _, adjoint in _zoom_blur_adjoints(image):
            corr, score = _correlations(_folded(adjoint))
            if score[0, 0] > best.peak:
                best = _Hypothesis(float(score[0, 0]), period, 0.0, False, (0, 0), corr[:, 0, 0])
    return best


def _maps(white: np.ndarray, count: int) -> list[np.ndarray]:
    """The ``count`` best tile→picture maps found in ``white``'s spectrum, best first."""
    spectrum = _spectrum(white)
    candidates = _log_polar_candidates(spectrum)
    refined = [_refine(spectrum, _similarity(period, degrees)) for _, period, degrees in candidates]
    refined.sort(key=lambda item: -item[0])
    return [tile_map for _, tile_map in refined[:count]]


def _folds(white: np.ndarray, tile_map: np.ndarray, zoom: float) -> list[_Hypothesis]:
    """The picture resampled upright by ``tile_map`` and folded; read upright and mirrored."""
    canvas = _unwarp(white, tile_map)
    if not canvas.size:
        return []
    period = float(np.sqrt(abs(np.linalg.det(tile_map)))) * TILE / zoom
    degrees = float(np.rad2deg(np.arctan2(tile_map[1, 0] - tile_map[0, 1], tile_map[0, 0] + tile_map[1, 1])))
    folded = _folded(canvas)
    upright = _best_shift(folded, period, degrees, False)
    flipped = _best_shift(folded.mirrored(), period, degrees, True)
    return sorted((upright, flipped), key=lambda h: -h.peak)


def _hypotheses(pixels: np.ndarray, coarse_when_small: bool = True) -> Iterator[_Hypothesis]:
    """Grid hypotheses, most likely first: the unmoved grid (period ``TILE``, shift 0); then for
    each zoom of the working image, the affine maps where the spectrum holds the mark's lattice,
    each folded upright and mirrored, at the cyclic shift that fits best; after the first zoom,
    the one keystone correction (of four) whose spectrum holds the lattice most clearly, and the
    unmoved grid read through the adjoint of a zoom blur. ``coarse_when_small``: also read a small
    picture's coarse working image (see :func:`decode`)."""
    height, width = pixels.shape[:2]
    if min(height, width) < MIN_SIDE:
        return
    work_h, work_w = _working_size(height, width)
    larger = min(ZOOM, height / work_h, width / work_w)
    luma = _luma(pixels)
    coarse = None
    for zoom in (1.0, larger) if larger >= MIN_ZOOM else (1.0,):
        white = _working_white(luma, zoom)
        if zoom == 1.0:
            if coarse_when_small and _is_small(height, width):
                coarse_size = _embed_working_size(height, width)
                if coarse_size != (work_h, work_w):  # near 704 px it rounds to the standard one
                    coarse = _working_white(luma, 1.0, coarse_size)
            yield _unmoved_hypothesis(white, coarse)
        for tile_map in _maps(white, MAPS_PER_ZOOM):
            yield from _folds(white, tile_map, zoom)
        if zoom == 1.0 and min(white.shape) >= 2 * TILE:
            best: tuple[float, np.ndarray, _Spectrum, float, float] | None = None
            for amount in KEYSTONES:
                for side in range(4):
                    straightened = _keystone(white, side, amount)
                    spectrum = _spectrum(straightened)
                    candidates = _log_polar_candidates(spectrum)
                    if candidates and (best is None or candidates[0][0] > best[0]):
                        best = (candidates[0][0], straightened, spectrum, *candidates[0][1:])
            if best is not None:
                _, straightened, spectrum, period, degrees = best
                tile_map = _refine(spectrum, _similarity(period, degrees))[1]
                yield from _folds(straightened, tile_map, zoom)
            yield _zoom_blur_hypothesis(white, coarse)


def decode(pixels: np.ndarray, *, coarse_when_small: bool = True) -> WatermarkReading:
    """Look for the watermark in ``pixels`` (H×W×3 uint8 RGB).

    ``coarse_when_small=False``: ``pixels`` can only carry the standard mark (footage, whose frames
    ``frame_mark`` marks at every size), so a small picture's coarse working image is not read:
    near the reading threshold, noise on it can outscore the standard grid and lose a reading."""
    best = WatermarkReading(found=False, output_id=None, confidence=0.0)
    for count, hypothesis in enumerate(_hypotheses(pixels, coarse_when_small)):
        if count == MAX_HYPOTHESES:
            break
        output_id, confidence = read_payload(hypothesis.soft)
        details = {"degrees": round(hypothesis.degrees, 2), "mirrored": float(hypothesis.mirrored)}
        reading = WatermarkReading(
            found=output_id is not None,
            output_id=output_id,
            confidence=confidence,
            strength=hypothesis.peak,
            period=hypothesis.period,
            shift=hypothesis.shift,
            details=details,
        )
        if output_id is not None:
            return reading
        if confidence >= best.confidence:
            best = reading
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
