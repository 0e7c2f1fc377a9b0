"""Where the classical swap may paint: the open mouth it keeps, the facial hair it detects, the beard.

Everything here works on 68-point landmarks in the coordinates of the image it is given; nothing is
learned. Polygons are rasterised with 4 bits of sub-pixel precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INNER_LIPS = np.arange(60, 68)
OUTER_LIPS = np.arange(48, 60)
CHIN = np.array([4, 5, 6, 7, 8, 9, 10, 11, 12, 54, 55, 56, 57, 58, 59, 48])
"""Jaw below the mouth corners, closed along the lower lip: where a chin beard grows."""
NOSE_BOTTOM = np.array([31, 32, 33, 34, 35])
UPPER_LIP_TOP = np.array([54, 53, 52, 51, 50, 49, 48])
"""The moustache region runs from the upper lip up to 40 % of the way to the nostrils (whose shadow
would otherwise read as a dark moustache)."""
CHEEKS = np.array([1, 2, 3, 31, 32, 33, 34, 35, 13, 14, 15, 45, 46, 47, 42, 28, 39, 40, 41, 36])
"""Cheeks and nose between the lower eyelids and the nostrils: skin in nearly every face."""

MOUTH_OPEN_RATIO = 0.06
"""The mouth counts as open when its inner lips are apart by more than this share of the mouth's width
(closed mouths measure 0.00–0.05 on the test photos; a smile showing teeth 0.15–0.35)."""
SOURCE_MOUTH_SHARE = 0.5
"""See :func:`keeps_target_mouth`."""
MOUTH_FEATHER = 0.02
"""The kept mouth fades in over this share of the face size, centred on the inner-lip outline (see
:func:`mouth_interior`). Centred rather than all outside it (as before): fewer of the target's own lip
edges, which cost identity (on the bench's 15 pairs with a kept mouth and a closed source: 4 worse by
more than 0.02 instead of 6); all inside it showed more of the source's stretched mouth corners."""
HAIR_TEXTURE = 1.5
"""A region counts as facial hair when its fine texture (local L* spread) is this many times the
cheeks' (on the test photos no clean-shaven chin reaches 1.5; beards measure 1.5–3.5) …"""
HAIR_DARKER = 20.0
"""… or when its median L* is this much below the cheeks' (a dark, smooth-looking full beard) …"""
HAIR_TEXTURED_DARKER = (10.0, 1.25)
"""… or when it is both this much darker and this much more textured. A chin shadow alone measured
up to 14 darker at 0.9–1.2 times the texture."""
HAIR_COHERENCE = 0.78
"""… or when its local orientation coherence (see :func:`_coherence`) is below this share of the
cheeks': hair strands cross every way, skin shading and wrinkles run smooth or one way. It finds a
white beard in a soft greyscale photo (Darwin: 0.74, as light as his skin and only 1.2 times as
textured); every chin in testdata at or below 0.79 is bearded, the nearest clean-shaven one is 0.81."""
HAIR_FACE_PX = 320.0
"""Faces larger than this (see :func:`face_size`) are measured on a copy scaled down to it (a 780 px
face took 213 ms, now 58 ms, with the same findings on every testdata face)."""
FULL_BEARD_DARKER = 25.0
"""A chin beard this much darker than the cheeks (median L*) is a full beard: only then does the swap
keep the target's beard (the "inner" mask: the full mask less :func:`beard_weight`). Stubble and
short beards (Kit Harington: 15–22 darker) are replaced by the source's chin with the full mask: on
the bench keeping them cost those pairs dlib distance 0.02–0.12 to the source, and a short beard ends
at the jaw line, where the full mask's edge is."""
MOUSTACHE_DARKER = 12.0
MOUSTACHE_TEXTURE = 1.2
"""A moustache: the upper lip's median L* this much below the cheeks' and this much more textured
(a shaved upper lip in shadow measured at most 11 darker; white moustaches are not detected)."""


@dataclass(frozen=True)
class FacialHair:
    """What :func:`facial_hair` found under the lower landmarks of one face."""

    chin: bool
    moustache: bool
    chin_contrast: float
    moustache_contrast: float
    chin_texture: float
    moustache_texture: float
    chin_coherence: float = 1.0
    """The chin's orientation coherence as a share of the cheeks' (:data:`HAIR_COHERENCE`)."""

    @property
    def any(self) -> bool:
        return self.chin or self.moustache

    @property
    def full_beard(self) -> bool:
        """A dark chin beard (see :data:`FULL_BEARD_DARKER`): the swap keeps it (the "inner" mask)."""
        return self.chin and self.chin_contrast < -FULL_BEARD_DARKER


def polygon_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask of the polygon ``points`` (in order) over an array of ``shape``."""
    import cv2

    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 255, cv2.LINE_8, 4)
    return mask > 0


def hull_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask of the convex hull of ``points`` over an array of ``shape``."""
    import cv2

    hull = cv2.convexHull(np.round(points * 16).astype(np.int32))
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillConvexPoly(mask, hull, 255, cv2.LINE_8, 4)
    return mask > 0


def face_size(points: np.ndarray) -> float:
    """A pose-robust size: the square root of the area of the points' convex hull."""
    import cv2

    hull = cv2.convexHull(points.astype(np.float32))
    return float(np.sqrt(max(cv2.contourArea(hull), 1.0)))


# -- mouth ------------------------------------------------------------------------------------------


def mouth_opening(points: np.ndarray) -> float:
    """How far the inner lips are apart, as a share of the mouth's width (0 for a closed mouth)."""
    width = float(np.hypot(*(points[54] - points[48])))
    gaps = np.hypot(*(points[[61, 62, 63]] - points[[67, 66, 65]]).T)
    return float(gaps.mean()) / max(width, 1e-6)


def mouth_is_open(points: np.ndarray) -> bool:
    return mouth_opening(points) > MOUTH_OPEN_RATIO


def keeps_target_mouth(target_points: np.ndarray, source_points: np.ndarray) -> bool:
    """Keep the target's open mouth (teeth, tongue) when the source has too little mouth to fill it.

    An open source mouth at least :data:`SOURCE_MOUTH_SHARE` as wide open as the target's brings its own
    teeth, which carry its identity (keeping the target's cost dlib distance 0.08-0.2 to the source on
    the bench's pairs of smiles, 0.21 for a source 70 % as open as its target, which is why the share
    is 0.5 and no longer 0.8); a closed one has nothing to show inside the target's lips.
    """
    opening = mouth_opening(target_points)
    return opening > MOUTH_OPEN_RATIO and mouth_opening(source_points) < SOURCE_MOUTH_SHARE * opening


def mouth_interior(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Weight 1 over the open mouth (teeth, tongue) inside the inner-lip outline, 0.5 on that outline and
    0 a little outside it (the ramp is :data:`MOUTH_FEATHER` of the face size wide, centred on the
    outline), as float32 over ``shape``: the lips and everything around them are the source's."""
    import cv2

    inside = polygon_mask(points[INNER_LIPS], shape[:2]).astype(np.uint8)
    width = max(1.0, MOUTH_FEATHER * face_size(points))
    depth = cv2.distanceTransform(inside, cv2.DIST_L2, 5) - cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5)
    ramp = np.clip(depth / width + 0.5, 0.0, 1.0)
    return (ramp * ramp * (3.0 - 2.0 * ramp)).astype(np.float32)


# -- facial hair ------------------------------------------------------------------------------------


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (float32; L* 0–100) of an RGB uint8 image."""
    import cv2

    scaled = rgb.astype(np.float32)
    scaled /= np.float32(255.0)  # in place: the same float32 division as rgb.astype(np.float32) / 255.0
    return cv2.cvtColor(scaled, cv2.COLOR_RGB2LAB)


def _hair_sigma(size: float) -> float:
    """The Gaussian scale of single hairs, for a face of ``size`` (see :func:`face_size`)."""
    return max(0.8, 0.012 * size)


def _lightness_and_texture(
    rgb: np.ndarray, points: np.ndarray, lab: np.ndarray | None = None, size: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """L* (0–100) and its local spread at the scale of single hairs (about 1 % of the face size).

    ``lab``: ``to_lab(rgb)`` when the caller already has it (the swap shares it with colour matching);
    ``size``: the face's size when ``points`` are not all of it."""
    import cv2

    lightness = (to_lab(rgb) if lab is None else lab)[..., 0]
    sigma = _hair_sigma(face_size(points) if size is None else size)
    fine = lightness - cv2.GaussianBlur(lightness, (0, 0), sigma)
    spread = np.sqrt(cv2.GaussianBlur(fine * fine, (0, 0), 2 * sigma))
    return lightness, spread


def _coherence(lightness: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Orientation coherence of L* at the scale of hairs, 0..1: (λ1 − λ2) / (λ1 + λ2) of the structure
    tensor, averaged over about 4 % of the face size (1: one direction, 0: every way or flat)."""
    import cv2

    sigma = max(0.8, 0.012 * face_size(points))
    smooth = cv2.GaussianBlur(lightness, (0, 0), 0.5 * sigma)
    gx, gy = cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
    xx, xy, yy = (cv2.GaussianBlur(v, (0, 0), 3 * sigma) for v in (gx * gx, gx * gy, gy * gy))
    return np.sqrt((xx - yy) ** 2 + 4 * xy * xy) / np.maximum(xx + yy, 1e-6)


def facial_hair(rgb: np.ndarray, points: np.ndarray) -> FacialHair:
    """Look for a beard on the chin and a moustache over the upper lip of the face at ``points``.

    Compares each region with the same face's cheeks: facial hair is much darker than skin, or darker
    and much more textured (stubble, a thin beard), or (the chin) much more textured, or disordered
    (a white beard, :data:`HAIR_COHERENCE`). Only the crop around the face is converted.
    """
    import cv2

    x0, y0 = np.floor(points.min(axis=0)).astype(int) - 4
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 4
    x0, y0 = max(x0, 0), max(y0, 0)
    crop = rgb[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]
    local = points - (x0, y0)
    scale = HAIR_FACE_PX / face_size(local)
    if scale < 1.0:  # every measure is relative to the face size: a large face is measured smaller
        size = (max(2, round(crop.shape[1] * scale)), max(2, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        local = (local + 0.5) * scale - 0.5
    lightness, spread = _lightness_and_texture(crop, local)
    shape = crop.shape[:2]
    cheeks = polygon_mask(local[CHEEKS], shape)
    for eye in (local[36:42], local[42:48]):
        cheeks &= ~polygon_mask(eye, shape)
    if cheeks.sum() < 20:
        return FacialHair(False, False, 0.0, 0.0, 1.0, 1.0)
    skin_l = float(np.median(lightness[cheeks]))
    skin_t = max(float(np.median(spread[cheeks])), 0.5)

    def measure_moustache(region: np.ndarray) -> tuple[bool, float, float]:
        # The lip's edge makes every upper lip look textured: only a clearly darker one counts.
        _, contrast, texture = measure(region)
        return contrast < -MOUSTACHE_DARKER and texture > MOUSTACHE_TEXTURE, contrast, texture

    def measure(region: np.ndarray) -> tuple[bool, float, float]:
        if region.sum() < 20:
            return False, 0.0, 1.0
        contrast = float(np.median(lightness[region])) - skin_l
        texture = float(np.median(spread[region])) / skin_t
        darker, textured = HAIR_TEXTURED_DARKER
        hairy = (
            texture > HAIR_TEXTURE or contrast < -HAIR_DARKER or (contrast < -darker and texture > textured)
        )
        return hairy, contrast, texture

    lips = polygon_mask(local[OUTER_LIPS], shape)
    chin_region = polygon_mask(local[CHIN], shape) & ~lips
    chin, chin_c, chin_t = measure(chin_region)
    coherence = _coherence(lightness, local)
    chin_o = 1.0
    if chin_region.sum() >= 20:
        chin_o = float(np.median(coherence[chin_region])) / max(float(np.median(coherence[cheeks])), 1e-3)
    moustache_region = polygon_mask(moustache_outline(local), shape) & ~lips
    moustache, must_c, must_t = measure_moustache(moustache_region)
    return FacialHair(chin or chin_o < HAIR_COHERENCE, moustache, chin_c, must_c, chin_t, must_t, chin_o)


def moustache_outline(points: np.ndarray) -> np.ndarray:
    """The upper lip's top edge and, above it, 40 % of the way to the nostrils."""
    nose, lip = points[NOSE_BOTTOM], points[UPPER_LIP_TOP]
    top = lip[1:6] + 0.4 * (nose[::-1] - lip[1:6])
    return np.vstack([lip, top])


# -- the target's beard, pixel by pixel -------------------------------------------------------------

LOWER_FACE = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 35, 34, 33, 32, 31])
"""Jaw from cheekbone to cheekbone, closed along the bottom of the nose: where a beard can grow."""
UPPER_LIP = np.array([31, 32, 33, 34, 35, 54, 53, 52, 51, 50, 49, 48])
"""Between the nostrils and the upper lip: always the source's, moustache or not (keeping the target's
moustache there cost dlib distance to the source of up to 0.1 on the bench's bearded targets)."""
BEARD_PIXEL_DARKER = 20.0
"""A pixel of the lower face (L* smoothed over 1.5 % of the face size) this much darker than the
cheeks' median is beard …"""
BEARD_PIXEL_TEXTURED = (4.0, 1.5)
"""… and so is one this much darker whose fine texture is this many times the cheeks'."""
BEARD_FEATHER = 0.04
"""The beard's edge is feathered by a Gaussian of this share of the face size (a beard's edge is soft;
at 0.012 the edge step across it was 0.62–0.96 L* per 1 % of the face on the bench's bearded targets,
at 0.04 0.30–0.44, below the full mask's 0.42–0.60 on the same pairs)."""


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` (bool) with every hole filled: background not 4-connected to the border becomes True.

    The same as ``scipy.ndimage.binary_fill_holes`` with its default structure, with ``cv2.floodFill``
    (spares a still's run the import of ``scipy.ndimage``).
    """
    import cv2

    outside = np.pad(mask, 1).astype(np.uint8)
    flood = np.zeros((outside.shape[0] + 2, outside.shape[1] + 2), dtype=np.uint8)
    cv2.floodFill(outside, flood, (0, 0), 2, flags=4)
    return outside[1:-1, 1:-1] != 2


def beard_weight(rgb: np.ndarray, points: np.ndarray, lab: np.ndarray | None = None) -> np.ndarray:
    """Weight 1 on the beard of the face at ``points`` (float32 over ``rgb``'s shape), 0 on skin, lips and
    the upper lip (:data:`UPPER_LIP`), feathered across a narrow band.

    Found pixel by pixel in the lower face (:data:`LOWER_FACE`): darker than the same face's cheeks, or
    darker and more textured; then closed, holes filled (skin showing through a beard stays beard) and
    specks dropped, so the mask follows the beard's own upper edge on the cheeks instead of a fixed
    polygon. ``lab``: :func:`to_lab` of ``rgb`` when the caller already has it.

    Computed over the lower face's box only, grown by the reach of every filter (:func:`_beard_box`):
    the same weights as over the whole image, which are exactly 0 outside that box.
    """
    size = face_size(points)
    x0, y0, x1, y1 = _beard_box(points, size, rgb.shape[:2])
    weight = np.zeros(rgb.shape[:2], dtype=np.float32)
    if max(0, x1 - x0) * max(0, y1 - y0) < 20:  # the lower face is outside the image: nothing to measure
        return weight
    box = (slice(y0, y1), slice(x0, x1))
    local_lab = None if lab is None else lab[box]
    weight[box] = _beard_weight(rgb[box], points - (x0, y0), size, local_lab)
    return weight


def _filter_reach(sigma: float) -> int:
    """Pixels a ``cv2.GaussianBlur`` of float data with this sigma (and no kernel size) reaches, at least."""
    return int(np.ceil(4.0 * sigma)) + 1


def _beard_box(points: np.ndarray, size: float, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the box that :func:`_beard_weight` needs: the cheeks', eyes', lips' and lower
    face's landmarks, grown by what its filters reach (blurs, the texture's blur of a blur, morphology
    and the final feather), clipped to the image.

    With that margin every pixel it measures sees only real pixels (or the image's own edge), the beard
    stays clear of the box's edge (background connected round it for the hole filling), and the feather
    falls to exactly 0 inside it.
    """
    hair = _hair_sigma(size)
    step = max(1, round(0.025 * size))
    margin = 2 + max(
        _filter_reach(hair) + _filter_reach(2 * hair),
        _filter_reach(max(0.8, 0.015 * size)),
        2 * step + 2,
        _filter_reach(max(0.8, BEARD_FEATHER * size)),
    )
    used = points[np.r_[1:16, 27:60]]
    low = np.floor(used.min(axis=0)).astype(int) - margin
    high = np.ceil(used.max(axis=0)).astype(int) + 1 + margin
    height, width = shape
    return max(0, low[0]), max(0, low[1]), min(width, high[0]), min(height, high[1])


def _beard_weight(rgb: np.ndarray, points: np.ndarray, size: float, lab: np.ndarray | None) -> np.ndarray:
    """:func:`beard_weight` over ``rgb`` (a crop: ``points`` in its coordinates, ``size`` the face's)."""
    import cv2

    shape = rgb.shape[:2]
    lightness, spread = _lightness_and_texture(rgb, points, lab, size)
    cheeks = polygon_mask(points[CHEEKS], shape)
    for eye in (points[36:42], points[42:48]):
        cheeks &= ~polygon_mask(eye, shape)
    region = polygon_mask(points[LOWER_FACE], shape)
    if cheeks.sum() < 20 or region.sum() < 20:
        return np.zeros(shape, dtype=np.float32)
    skin_l = float(np.median(lightness[cheeks]))
    skin_t = max(float(np.median(spread[cheeks])), 0.5)
    darker = skin_l - cv2.GaussianBlur(lightness, (0, 0), max(0.8, 0.015 * size))
    textured_darker, textured = BEARD_PIXEL_TEXTURED
    hair = (darker > BEARD_PIXEL_DARKER) | ((darker > textured_darker) & (spread > textured * skin_t))
    lips = polygon_mask(points[OUTER_LIPS], shape)
    source_only = lips | polygon_mask(points[UPPER_LIP], shape)
    hair &= region & ~source_only
    step = max(1, round(0.025 * size))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * step + 1, 2 * step + 1))
    hair = cv2.morphologyEx(hair.astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0
    hair = fill_holes(hair | source_only) & region & ~source_only
    hair = cv2.morphologyEx(hair.astype(np.uint8), cv2.MORPH_OPEN, kernel) > 0
    _, labels, stats, _ = cv2.connectedComponentsWithStats(hair.astype(np.uint8), connectivity=8)
    specks = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < 0.02 * region.sum())
    hair[np.isin(labels, specks[specks > 0])] = False
    soft = cv2.GaussianBlur(hair.astype(np.float32), (0, 0), max(0.8, BEARD_FEATHER * size))
    return np.where(lips, 0.0, soft).astype(np.float32)
