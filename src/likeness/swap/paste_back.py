"""Aligned face crops and pasting them back: similarity alignment, soft mask, colour match, blend.

Shared by the inswapper path (128×128 ArcFace-aligned crop) and face restoration (512×512 FFHQ-aligned
crop); nothing here knows about a particular model. All images are RGB.

The mask follows the face outline: the convex hull of the target's dense landmarks (106 or 68 points:
jaw line and eyebrows) when there are any, else an ellipse placed from the five alignment points; it is
eroded a little and feathered, and fades to zero before the crop border so no crop edge shows.
Hair above the brows and background beside the cheeks stay the target's. What it does not exclude:
hands, glasses or microphones *in front of* the face — that needs a segmentation model (none is used).
"""

from __future__ import annotations

import numpy as np

# insightface's ArcFace template for a 112×112 crop (utils/face_align.py, ``arcface_dst``).
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
# The FFHQ alignment GFPGAN and CodeFormer were trained on, for a 512×512 crop.
FFHQ_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.19360],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
)


def arcface_template(size: int) -> np.ndarray:
    """The five-point template for an ArcFace-style crop of ``size`` (insightface's ``estimate_norm``)."""
    if size % 112 == 0:
        return ARCFACE_112 * (size / 112.0)
    if size % 128 == 0:
        ratio = size / 128.0
        template = ARCFACE_112 * ratio
        template[:, 0] += 8.0 * ratio
        return template
    raise ValueError(f"ArcFace crops are 112·k or 128·k pixels, not {size}")


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2×3 similarity transform (rotation, uniform scale, translation) mapping ``src`` onto ``dst``.

    Least squares (Umeyama 1991), the same estimate as scikit-image's ``SimilarityTransform``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching (N, 2) point sets, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1.0
    rotation = u @ np.diag(d) @ vt
    var = (src_c**2).sum() / len(src)
    scale = (s * d).sum() / var if var > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points @ matrix[:, :2].T + matrix[:, 2]


def align_crop(
    image: np.ndarray, points5: np.ndarray, template: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Warp the face whose five points are ``points5`` onto ``template`` in a ``size``² crop."""
    import cv2

    matrix = similarity_matrix(points5, template)
    crop = cv2.warpAffine(image, matrix, (size, size), borderValue=0.0)
    return crop, matrix


def face_mask(
    size: int,
    matrix: np.ndarray,
    landmarks: np.ndarray,
    points5: np.ndarray,
    *,
    erode: float = 0.03,
    feather: float = 0.035,
    border: float = 0.04,
) -> np.ndarray:
    """A soft face mask in crop space (float32 in [0, 1], ``size``²).

    ``landmarks`` (N, 2) in image pixels (N ≥ 17, e.g. 106 or 68 points) give the face outline; with
    fewer, an ellipse is placed from ``points5`` (eyes, nose, mouth corners). ``erode``, ``feather``
    and ``border`` are fractions of ``size``.
    """
    import cv2

    hard = np.zeros((size, size), dtype=np.uint8)
    if landmarks is not None and len(landmarks) >= 17:
        pts = transform_points(landmarks, matrix).astype(np.float32)
        hull = cv2.convexHull(pts)
        cv2.fillConvexPoly(hard, np.round(hull * 16).astype(np.int32), 255, lineType=cv2.LINE_AA, shift=4)
    else:
        p = transform_points(points5, matrix)
        eyes, mouth = p[:2].mean(axis=0), p[3:5].mean(axis=0)
        eye_dist = float(np.linalg.norm(p[1] - p[0]))
        down = mouth - eyes
        # Roughly brow to chin and cheek to cheek for a frontal face.
        centre = eyes + 0.45 * down
        axes = (1.15 * eye_dist, 0.8 * float(np.linalg.norm(down)) + 0.6 * eye_dist)
        angle = float(np.degrees(np.arctan2(down[0], down[1]))) * -1.0
        cv2.ellipse(
            hard,
            (round(centre[0] * 16), round(centre[1] * 16)),
            (round(axes[0] * 16), round(axes[1] * 16)),
            angle,
            0,
            360,
            255,
            -1,
            cv2.LINE_AA,
            4,
        )
    mask = hard.astype(np.float32) / 255.0
    k = max(1, round(erode * size))
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    sigma = max(0.5, feather * size)
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma, sigmaY=sigma)
    ramp = np.clip(np.arange(size, dtype=np.float32) / max(1.0, border * size), 0.0, 1.0)
    ramp = np.minimum(ramp, ramp[::-1])
    mask *= np.minimum.outer(ramp, ramp)
    return np.clip(mask, 0.0, 1.0)


def match_colours(
    crop: np.ndarray, reference: np.ndarray, mask: np.ndarray, *, max_gain: float = 1.4
) -> np.ndarray:
    """Shift ``crop``'s colours (float RGB 0..255) to ``reference``'s inside ``mask``, in Lab.

    Mean per channel fully, spread (std) within ``1/max_gain .. max_gain`` so the face keeps its own
    contrast. Returns float32 RGB 0..255.
    """
    import cv2

    weights = (mask > 0.5).astype(np.float32)
    if weights.sum() < 16:
        return crop.astype(np.float32)
    lab_new = cv2.cvtColor(np.clip(crop, 0, 255).astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    lab_ref = cv2.cvtColor(reference.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    w = weights[..., None]
    total = w.sum()
    mean_new = (lab_new * w).sum(axis=(0, 1)) / total
    mean_ref = (lab_ref * w).sum(axis=(0, 1)) / total
    std_new = np.sqrt(((lab_new - mean_new) ** 2 * w).sum(axis=(0, 1)) / total) + 1e-6
    std_ref = np.sqrt(((lab_ref - mean_ref) ** 2 * w).sum(axis=(0, 1)) / total) + 1e-6
    gain = np.clip(std_ref / std_new, 1.0 / max_gain, max_gain)
    matched = (lab_new - mean_new) * gain + mean_ref
    rgb = cv2.cvtColor(matched.astype(np.float32), cv2.COLOR_Lab2RGB)
    return np.clip(rgb * 255.0, 0.0, 255.0)


def paste(image: np.ndarray, crop: np.ndarray, mask: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Blend ``crop`` (float or uint8 RGB, aligned by ``matrix``) into a copy of ``image`` through ``mask``.

    Only the region the crop covers is touched; pixels where the warped mask is 0 keep their exact value.
    The crop is upsampled with bicubic interpolation in one warp (no intermediate resize).
    """
    import cv2

    height, width = image.shape[:2]
    size = crop.shape[0]
    inverse = cv2.invertAffineTransform(matrix)
    corners = transform_points(
        np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64), inverse
    )
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    out = image.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    # Maps ROI pixel (u, v) to crop coordinates: matrix · (u + x0, v + y0, 1).
    to_crop = matrix.astype(np.float64).copy()
    to_crop[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)
    flags = cv2.WARP_INVERSE_MAP
    roi_size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(
        crop.astype(np.float32),
        to_crop,
        roi_size,
        flags=cv2.INTER_CUBIC | flags,
        borderMode=cv2.BORDER_REPLICATE,
    )
    alpha = cv2.warpAffine(
        mask.astype(np.float32), to_crop, roi_size, flags=cv2.INTER_LINEAR | flags, borderValue=0.0
    )
    alpha = np.clip(alpha, 0.0, 1.0)[..., None]
    roi = out[y0:y1, x0:x1].astype(np.float32)
    blended = roi + alpha * (np.clip(warped, 0.0, 255.0) - roi)
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out
