"""The inpainting mask of a face edit: the face's landmark hull, widened to take in the forehead.

White (255) is re-made by the model, black (0) is kept. Landmarks (68 dlib or 106 insightface points)
stop at the eyebrows, so the hull is joined with an ellipse over the face box raised by a fifth of its
height; the union is dilated by ``grow`` of the face size so the seam falls outside the face.
"""

from __future__ import annotations

import numpy as np

from likeness.faces.types import Face

GROW = 0.08


def face_mask(shape: tuple[int, ...], face: Face, *, grow: float = GROW) -> np.ndarray:
    """An H×W uint8 mask (255 = re-make) for ``face`` in an image of ``shape``."""
    import cv2

    height, width = int(shape[0]), int(shape[1])
    mask = np.zeros((height, width), dtype=np.uint8)
    left, top, right, bottom = face.box
    box_w, box_h = max(1, right - left), max(1, bottom - top)
    centre = (round((left + right) / 2), round((top + bottom) / 2 - box_h * 0.1))
    axes = (max(1, int(box_w * 0.55)), max(1, int(box_h * 0.65)))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 255, thickness=-1)
    points = np.asarray(face.landmarks, dtype=np.float32).reshape(-1, 2)
    if len(points) >= 3:
        hull = cv2.convexHull(np.round(points).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 255)
    radius = max(1, round(min(box_w, box_h) * grow))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask, kernel)


def overlaps(mask: np.ndarray, face: Face, *, at_least: float = 0.2) -> bool:
    """Whether at least ``at_least`` of ``face``'s box lies inside the re-made area."""
    left, top, right, bottom = (int(v) for v in face.box)
    region = mask[max(0, top) : max(0, bottom), max(0, left) : max(0, right)]
    return region.size > 0 and float((region > 127).mean()) >= at_least


REGION_SCALE = 2.2


def edit_region(shape: tuple[int, ...], face: Face, *, scale: float = REGION_SCALE) -> tuple[slice, slice]:
    """A square around ``face`` (``scale`` × its larger side), moved inside the image: what is inpainted.

    The model works on this crop at its own size (e.g. 512²), never on the whole photo, and the result
    is pasted back through the mask; the photo's size does not change the model's cost.
    """
    height, width = int(shape[0]), int(shape[1])
    left, top, right, bottom = face.box
    side = min(height, width, max(16, round(max(right - left, bottom - top) * scale)))
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0 = int(min(max(0, round(cx - side / 2)), width - side))
    y0 = int(min(max(0, round(cy - side / 2)), height - side))
    return slice(y0, y0 + side), slice(x0, x0 + side)
