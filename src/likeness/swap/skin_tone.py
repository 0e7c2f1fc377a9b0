"""Skin tone for the classical swap: the warped source face takes the target's colour and light.

Two steps, both in CIELAB:

1. **Global** (:func:`match_colour`): a monotone lightness curve and a chroma gain measured on the
   cheeks of both faces, so the source's contrast and colouring are brought to the target's.
2. **Local** (:func:`match_surroundings`): the low frequencies (about a tenth of the face) of the
   source's skin are replaced by those of the target's skin, measured over the face *and* the skin
   around it (neck, ears, forehead edge) with normalised convolution. The face then has the target's
   tone where it meets the target's skin, and half the target's shading across it (see
   :data:`CENTRE_SHARE`); eyes, brows, lips, nostrils, the open mouth and facial hair are left out of
   both measurements.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from likeness.swap.classical_masks import (
    CHEEKS,
    CHIN,
    FacialHair,
    face_size,
    moustache_outline,
    polygon_mask,
    to_lab,
)

GREY_CHROMA_STD = 3.0
"""Below this standard deviation of a*/b* inside the face, the source counts as greyscale or sepia."""


def from_lab(lab: np.ndarray) -> np.ndarray:
    import cv2

    rgb = cv2.cvtColor(np.asarray(lab, dtype=np.float32), cv2.COLOR_LAB2RGB)  # no copy of float32 input
    rgb *= np.float32(255.0)  # in place: the same float32 steps as np.clip(rgb * 255 + 0.5, 0, 255)
    rgb += np.float32(0.5)
    np.clip(rgb, np.float32(0.0), np.float32(255.0), out=rgb)
    return rgb.astype(np.uint8)


def _skin_mask(points: np.ndarray, core: np.ndarray) -> np.ndarray:
    import cv2

    mask = np.zeros(core.shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points[CHEEKS] * 16).astype(np.int32)], 255, cv2.LINE_8, 4)
    skin = (mask > 0) & core
    return skin if skin.sum() >= 50 else core


def match_colour(
    warped: np.ndarray,
    target: np.ndarray,
    core: np.ndarray,
    points: np.ndarray,
    target_lab: np.ndarray | None = None,
) -> np.ndarray:
    """The warped source with its CIELAB colour moved to the target's, measured on the skin of both.

    Lightness: a tone curve (:func:`_lightness_curve`). Chroma: scaled to the target skin's mean; a
    greyscale source takes the target's own smoothed chroma; a greyscale target makes the face greyscale.
    ``target_lab``: :func:`to_lab` of ``target`` when the caller already has it.
    """
    import cv2

    src_lab = to_lab(warped)
    dst_lab = to_lab(target) if target_lab is None else target_lab
    skin = _skin_mask(points, core)
    # L* and the chroma's spread channel by channel: one channel's pixels gathered at a time is much
    # faster than the pixels' L*a*b* triples (the same values; the spreads but for float rounding).
    out = np.empty_like(src_lab)
    out[..., 0] = _lightness_curve(src_lab[..., 0][skin], dst_lab[..., 0][skin])(src_lab[..., 0])
    if max(float(src_lab[..., channel][core].std()) for channel in (1, 2)) < GREY_CHROMA_STD:
        # No colour to transfer: use the target's own chroma, smoothed so its texture does not show.
        sigma = max(1.0, 0.03 * face_size(points))
        out[..., 1] = cv2.GaussianBlur(dst_lab[..., 1], (0, 0), sigma)
        out[..., 2] = cv2.GaussianBlur(dst_lab[..., 2], (0, 0), sigma)
    else:
        src_mean, dst_mean = src_lab[skin].mean(axis=0), dst_lab[skin].mean(axis=0)
        for channel in (1, 2):
            if src_mean[channel] > 3.0 and dst_mean[channel] >= 0.0:
                # Scale, do not shift: neutral whites (teeth, eyes) stay neutral instead of turning cyan.
                gain = np.clip(dst_mean[channel] / src_mean[channel], 0.0, 2.5)
                np.multiply(src_lab[..., channel], gain, out=out[..., channel])
            else:
                out[..., channel] = src_lab[..., channel] - src_mean[channel] + dst_mean[channel]
    return from_lab(out)


def _lightness_curve(source: np.ndarray, target: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A monotone tone curve taking the source skin's 5th/50th/95th L* percentiles to the target's.

    Two linear pieces (shadows, highlights), each slope kept within 0.5–2, extended beyond the
    percentiles and rolled off softly at both ends. A photo exposed much darker than the other is mapped
    as a whole (its highlights compress) instead of shifted until its highlights burn out to flat white.
    """
    src_q = np.percentile(source, [5, 50, 95])
    dst_q = np.percentile(target, [5, 50, 95])
    low_slope = np.clip((dst_q[1] - dst_q[0]) / max(src_q[1] - src_q[0], 1e-3), 0.5, 2.0)
    high_slope = np.clip((dst_q[2] - dst_q[1]) / max(src_q[2] - src_q[1], 1e-3), 0.5, 2.0)

    def curve(lightness: np.ndarray) -> np.ndarray:
        offset = lightness - src_q[1]
        offset *= np.where(offset < 0, low_slope, high_slope)
        offset += dst_q[1]
        return _soft_limit(offset.astype(np.float32))

    return curve


def _soft_limit(lightness: np.ndarray, low: float = 10.0, high: float = 90.0) -> np.ndarray:
    """Squeeze L* values beyond ``low``/``high`` smoothly into 0..100 instead of clipping them."""
    out = np.array(lightness, order="C")  # a contiguous copy (masks index a channel of L*a*b* slowly)
    above, below = out > high, out < low
    out[above] = high + (100.0 - high) * np.tanh((out[above] - high) / (100.0 - high))
    out[below] = low - low * np.tanh((low - out[below]) / low)  # apart from the values changed above
    return out


# -- local: the target's skin around the face -------------------------------------------------------

LOCAL_SIGMA = 0.18
"""Scale of the local tone correction, in face sizes: coarse enough to carry light and tone, not
features."""
LOWPASS_FACE_PX = 48.0
"""The low frequencies are computed on a copy scaled so that the face is about this many pixels."""
SURROUNDING = 0.18
"""How far outside the face's outline the target's skin is looked for (neck, ears, forehead edge)."""
SKIN_LIGHTNESS = (40.0, 30.0)
"""A pixel counts as skin when its L* is this close to the cheeks' median (inside the face outline,
outside it: shading varies a lot, so loose) …"""
SKIN_HUE_DEGREES = 25.0
SKIN_CHROMA_RATIO = (0.35, 1.8)
"""… and its hue is this close to the cheeks' and its chroma within these factors of theirs (skin in
shadow keeps its hue; hair, collars and backgrounds mostly do not). In a greyscale photo only the
lightness counts."""
_ANY_HAIR = FacialHair(True, True, 0.0, 0.0, 1.0, 1.0)
"""Chin and moustache regions taken as hair: left out of the source's skin measurement."""
CENTRE_SHARE = 0.5
RIM_DEPTH = 0.25
"""The local correction applies in full where the face meets the target's skin and falls to
CENTRE_SHARE of it at RIM_DEPTH face sizes inside: across the face the target's shading then only
half replaces the source's, which carries the shape of its features (the full correction cost dlib
distance to the source of 0.01–0.03 on pairs with neither a kept mouth nor an inner mask, three of
them past the bench's 0.02 margin; half: none, cheeks–neck ΔE 7.4 → 7.3)."""
GREY_CHROMA = 5.0
"""Cheeks with less chroma than this are taken as a greyscale photo."""


def feature_mask(points: np.ndarray, shape: tuple[int, int], hair: FacialHair | None) -> np.ndarray:
    """Eyes, brows, lips, nostrils (grown by 3 % of the face size) and detected facial hair: not skin."""
    import cv2

    mask = np.zeros(shape, dtype=np.uint8)
    for part in (points[36:42], points[42:48], points[48:60], points[[31, 32, 33, 34, 35, 30]]):
        mask |= polygon_mask(part, shape).astype(np.uint8)
    for brow in (points[17:22], points[22:27]):
        thickness = max(2, round(0.05 * face_size(points)))
        cv2.polylines(mask, [np.round(brow).astype(np.int32)], False, 1, thickness)
    if hair is not None and hair.chin:
        mask |= polygon_mask(points[CHIN], shape).astype(np.uint8)
    if hair is not None and hair.moustache:
        mask |= polygon_mask(moustache_outline(points), shape).astype(np.uint8)
    grow = max(1, round(0.03 * face_size(points)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    return cv2.dilate(mask, kernel) > 0


def skin_weights(lab: np.ndarray, points: np.ndarray, region: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Float weights, 1 on pixels of ``region`` that look like the cheeks' skin (see
    :data:`SKIN_LIGHTNESS`), with the looser lightness tolerance on ``inside``."""
    cheeks = polygon_mask(points[CHEEKS], lab.shape[:2]) & region
    if cheeks.sum() < 20:
        return region.astype(np.float32)
    median = np.median(lab[cheeks], axis=0)
    tolerance = np.where(inside, SKIN_LIGHTNESS[0], SKIN_LIGHTNESS[1])
    skin = region & (np.abs(lab[..., 0] - median[0]) < tolerance)
    cheek_chroma = float(np.hypot(median[1], median[2]))
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    if cheek_chroma < GREY_CHROMA:
        return (skin & (chroma < 2 * GREY_CHROMA)).astype(np.float32)
    hue = np.degrees(np.arctan2(lab[..., 2], lab[..., 1]))
    cheek_hue = float(np.degrees(np.arctan2(median[2], median[1])))
    hue_off = np.abs((hue - cheek_hue + 180.0) % 360.0 - 180.0)
    low, high = SKIN_CHROMA_RATIO
    skin &= (hue_off < SKIN_HUE_DEGREES) & (chroma > low * cheek_chroma) & (chroma < high * cheek_chroma)
    return skin.astype(np.float32)


def _lowpass(lab: np.ndarray, weights: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised convolution: the weighted local mean of ``lab`` and the local weight density."""
    import cv2

    density = cv2.GaussianBlur(weights, (0, 0), sigma)
    total = cv2.GaussianBlur(lab * weights[..., None], (0, 0), sigma).reshape(lab.shape)  # one channel too
    return total / np.maximum(density, 1e-4)[..., None], density


def _local_shift(
    src_lab: np.ndarray,
    src_w: np.ndarray,
    dst_lab: np.ndarray,
    dst_w: np.ndarray,
    inside: np.ndarray,
    sigma: float,
) -> np.ndarray:
    """Low-frequency difference target − source of the weighted skin colours; where either side has
    little skin nearby, the mean difference over the face. Channel by channel: ``src_lab`` and
    ``dst_lab`` may hold any of L*, a*, b* (H×W×C)."""
    src_low, src_density = _lowpass(src_lab, src_w, sigma)
    dst_low, dst_density = _lowpass(dst_lab, dst_w, sigma)
    confidence = np.clip(np.minimum(src_density, dst_density) / 0.15, 0.0, 1.0)[..., None]
    mean_shift = (dst_low - src_low)[inside & (confidence[..., 0] > 0.99)]
    fallback = mean_shift.mean(axis=0) if len(mean_shift) else np.zeros(src_lab.shape[-1], np.float32)
    return (confidence * (dst_low - src_low) + (1.0 - confidence) * fallback).astype(np.float32)


def _rim_weight(inside: np.ndarray, size: float) -> np.ndarray:
    """1 at the face outline, falling to :data:`CENTRE_SHARE` at :data:`RIM_DEPTH` face sizes inside it."""
    import cv2

    depth = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 5) / max(size, 1.0)
    return (1.0 - (1.0 - CENTRE_SHARE) * np.clip(depth / RIM_DEPTH, 0.0, 1.0)).astype(np.float32)


def match_surroundings(
    matched: np.ndarray,
    target: np.ndarray,
    points: np.ndarray,
    face: np.ndarray,
    *,
    source_hair: FacialHair | None = None,
    target_hair: FacialHair | None = None,
    keep: np.ndarray | None = None,
) -> np.ndarray:
    """``matched`` (the colour-matched, warped source, aligned with ``target``) with the low frequencies
    of its skin replaced by the target's: measured over the face outline ``face`` for the source, over
    the face and the skin up to :data:`SURROUNDING` face sizes around it for the target. ``keep``
    (e.g. the open mouth) is left out of both measurements.
    """
    import cv2

    size = face_size(points)
    scale = min(1.0, LOWPASS_FACE_PX / size)
    small = (max(8, round(target.shape[1] * scale)), max(8, round(target.shape[0] * scale)))
    pts = (points + 0.5) * np.array([small[0] / target.shape[1], small[1] / target.shape[0]]) - 0.5
    shrink = lambda image: cv2.resize(image, small, interpolation=cv2.INTER_AREA)  # noqa: E731
    src_lab, dst_lab = to_lab(shrink(matched)), to_lab(shrink(target))
    inside = cv2.resize(face.astype(np.uint8), small, interpolation=cv2.INTER_NEAREST) > 0
    reach = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 5) < SURROUNDING * size * scale
    kept = np.zeros(inside.shape, dtype=bool)
    if keep is not None:
        kept = cv2.resize(keep.astype(np.float32), small, interpolation=cv2.INTER_LINEAR) > 0.1
    features = feature_mask(pts, inside.shape, source_hair) | feature_mask(pts, inside.shape, target_hair)
    # Lightness: both sides over the same skin, never the source's chin and upper lip (stubble and light
    # beards escape detection and darken the source's lower face, which the shift then lightened, away
    # from the source: 2 of 7 identity-losing pairs on the bench). Colour: the chin and upper lip do
    # count, so that a bluish shaved chin takes the target's skin colour.
    lower_face = feature_mask(pts, inside.shape, _ANY_HAIR)
    sigma = LOCAL_SIGMA * size * scale
    shift = np.zeros(src_lab.shape, dtype=np.float32)
    for channels, not_skin in ((slice(0, 1), features | lower_face | kept), (slice(1, 3), features | kept)):
        src_w = skin_weights(src_lab, pts, inside & ~not_skin, inside)
        dst_w = skin_weights(dst_lab, pts, (inside | reach) & ~not_skin, inside)
        if src_w.sum() < 10 or dst_w.sum() < 10:
            continue
        shift[..., channels] = _local_shift(
            src_lab[..., channels], src_w, dst_lab[..., channels], dst_w, inside, sigma
        )
    shift = cv2.GaussianBlur(shift.astype(np.float32), (0, 0), 0.5 * sigma)
    shift *= _rim_weight(inside, size * scale)[..., None]
    full = cv2.resize(shift, (target.shape[1], target.shape[0]), interpolation=cv2.INTER_CUBIC)
    lab = to_lab(matched)
    lab += full
    lab[..., 0] = _soft_limit(lab[..., 0])  # no clipped, flat highlights
    return from_lab(lab)
