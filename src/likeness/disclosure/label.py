"""The visible label: "AI-GENERATED" and the whole output id on a dark plate in a corner.

- The id is the whole output id in capitals (``LK-XXXX-XXXX-XXXX``: a capital K and no lower-case
  l, which read as "Ik-" in the label font); ``likeness verify`` and the ledger accept it in any case.
  Only a picture too small for the whole id at the legal size shows the short id (its first two
  groups, ``LK-XXXX-XXXX``), which this installation's ledger resolves to the output.
- It never covers a detected face: given the faces' boxes (``avoid``), the plate goes to the asked
  corner if that covers none, else to the first other corner that covers none; only when every
  corner would cover a face does it stay in the asked one (``LabelBox.covers_face`` says so).

- Size: the capital letters are at least 5 % of the image's shorter side tall (GB 45438-2025 asks
  for text at least 5 % of the shorter side), and at least ``MIN_CAP_PX`` where the label still fits
  whole; an image too small for a whole, legible label is refused (``DisclosureError``).
- Legible on any background: white text on an opaque near-black plate with a thin light outline.
- Corner and language are configurable; there is no way to skip the label (the writer always
  calls :func:`apply_label`).
- Fonts ship with the package (``fonts/``: DejaVu Sans Bold and Noto Sans CJK SC Bold subsets);
  if they are missing, Latin text falls back to Pillow's built-in scalable font, and CJK text to
  the English label.

:func:`detect_label` finds such a plate in a corner again (for ``likeness verify``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from likeness.disclosure.output_id import short_output_id
from likeness.errors import DisclosureError, UsageError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage
    from PIL.ImageDraw import ImageDraw as PILDraw

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
LABEL_TEXT = {
    "en": "AI-GENERATED",
    "de": "KI-GENERIERT",
    "fr": "GÉNÉRÉ PAR IA",
    "es": "GENERADO POR IA",
    "it": "GENERATO DALL'IA",
    "pt": "GERADO POR IA",
    "nl": "AI-GEGENEREERD",
    "zh": "AI生成",
    "ja": "AI生成",
    "ko": "AI 생성",
}
CJK_LANGUAGES = frozenset({"zh", "ja", "ko"})
CAP_FRACTION = 0.05
"""Cap height of the label text as a fraction of the image's shorter side."""
ID_SCALE = 0.6
"""The output id's cap height relative to the label text's: the rules size the AI label, and the id
beside or under it in smaller capitals keeps the plate no wider than the legal text needs."""
MIN_CAP_PX = 8
"""Preferred smallest cap height; on small images it shrinks (never below 5 %) so the label fits."""
MIN_LEGIBLE_CAP_PX = 6
"""Below this no label is legible: such images are refused rather than labelled unreadably."""
PLATE_RGB = (16, 16, 16)
TEXT_RGB = (255, 255, 255)
OUTLINE_RGB = (235, 235, 235)
FONT_DIR = Path(__file__).resolve().parent / "fonts"
LATIN_FONT = FONT_DIR / "LikenessLabel-Latin.ttf"
CJK_FONT = FONT_DIR / "LikenessLabel-CJK.otf"


@dataclass(frozen=True)
class LabelBox:
    """Where the plate went and how tall its capital letters are, in pixels."""

    left: int
    top: int
    right: int
    bottom: int
    cap_height: int
    lines: tuple[str, ...]
    corner: str = "bottom-right"
    """Where it went (another corner than asked when the asked one would cover a face)."""
    covers_face: bool = False
    """Every allowed corner would have covered a face; it stayed in the first one tried."""
    text: str = ""
    """The label's text (without the id)."""

    def facts(self, width: int, height: int) -> dict[str, object]:
        """What the manifest records about the label: text, where, and its size against the picture."""
        short = min(width, height)
        return {
            "text": self.text,
            "corner": self.corner,
            "box": {"left": self.left, "top": self.top, "right": self.right, "bottom": self.bottom},
            "cap_height_px": self.cap_height,
            "shorter_side_px": short,
            "cap_fraction": round(self.cap_height / short, 4),
            "covers_face": self.covers_face,
        }


def _font(path: Path, size: int):
    from PIL import ImageFont

    if path.is_file():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def _cap_height(font, sample: str = "H") -> int:
    _left, top, _right, bottom = font.getbbox(sample)
    return bottom - top


def _sample(text: str, language: str) -> str:
    """The glyph whose height counts as the text's: a capital H, or the text's first CJK glyph (the
    CJK font has no H, and its ideographs must themselves be the legal height)."""
    if language in CJK_LANGUAGES:
        return next((c for c in text if ord(c) > 0x2E7F), "H")
    return "H"


def _font_for_cap(path: Path, cap: int, sample: str = "H"):
    """The smallest font size whose ``sample`` glyph (a capital H) is at least ``cap`` pixels tall."""
    probe = _cap_height(_font(path, 100), sample)  # glyph height per 100 px of font size
    size = max(4, math.floor(cap * 100 / max(probe, 1)) - 1)
    font = _font(path, size)
    while _cap_height(font, sample) < cap:
        size += 1
        font = _font(path, size)
    return font


def label_lines(output_id: str, language: str) -> tuple[str, str]:
    if language not in LABEL_TEXT:
        raise UsageError(
            f"label language {language!r} is not available",
            hint=f"choose one of: {', '.join(LABEL_TEXT)}",
        )
    text = LABEL_TEXT[language]
    if language in CJK_LANGUAGES and not CJK_FONT.is_file():
        text = LABEL_TEXT["en"]  # no font for it: English rather than boxes
    return text, label_id(output_id)


def label_id(output_id: str) -> str:
    """The id as the label shows it: the whole id, in capitals."""
    return output_id.upper()


@dataclass(frozen=True)
class _Layout:
    text_font: object
    id_font: object
    text_box: tuple[int, int, int, int]
    id_box: tuple[int, int, int, int]
    pad: int
    gap: int
    outline: int
    margin: int
    line_height: int
    lines: tuple[str, ...]
    plate_w: int
    plate_h: int
    cap: int = 0
    id_cap: int = 0


def _layout(
    text: str, short_id: str, cap: int, language: str, width: int, lines_wanted: int | None = None
) -> _Layout:
    """Fonts, spacing and plate size for a label with capital letters ``cap`` pixels tall."""
    text_font = _font_for_cap(
        CJK_FONT if language in CJK_LANGUAGES else LATIN_FONT, cap, _sample(text, language)
    )
    id_cap = max(MIN_LEGIBLE_CAP_PX, round(ID_SCALE * cap))
    id_font = _font_for_cap(LATIN_FONT, id_cap)
    pad = max(2, round(0.45 * cap))
    gap = max(2, round(0.4 * cap))
    outline = max(1, round(cap / 14))
    margin = max(2, round(0.4 * cap))
    text_box = text_font.getbbox(text)
    id_box = id_font.getbbox(short_id)
    one_line_width = (text_box[2] - text_box[0]) + gap + (id_box[2] - id_box[0]) + 2 * pad
    line_height = round(cap * 1.0)
    if lines_wanted == 1 or (lines_wanted is None and one_line_width <= 0.6 * width):
        lines: tuple[str, ...] = (f"{text} {short_id}",)
        plate_w = one_line_width
        plate_h = line_height + 2 * pad
    else:
        lines = (text, short_id)
        plate_w = max(text_box[2] - text_box[0], id_box[2] - id_box[0]) + 2 * pad
        plate_h = line_height + gap + id_cap + 2 * pad
    return _Layout(
        text_font=text_font,
        id_font=id_font,
        text_box=text_box,
        id_box=id_box,
        pad=pad,
        gap=gap,
        outline=outline,
        margin=margin,
        line_height=line_height,
        lines=lines,
        plate_w=plate_w + 2 * outline,
        plate_h=plate_h + 2 * outline,
        cap=cap,
        id_cap=id_cap,
    )


Box = tuple[int, int, int, int]


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place(
    width: int,
    height: int,
    plate_w: int,
    plate_h: int,
    margin: int,
    corner: str,
    avoid: Sequence[Box] = (),
    allowed: Sequence[str] = CORNERS,
) -> tuple[str, Box, bool]:
    """The corner for the plate (the asked one first, then the other ``allowed`` ones), its box, and
    whether it still covers a face."""
    order = [corner, *(c for c in allowed if c != corner)]
    boxes = {}
    for name in order:
        left = margin if name.endswith("left") else width - margin - plate_w
        top = margin if name.startswith("top") else height - margin - plate_h
        left, top = max(0, left), max(0, top)
        boxes[name] = (left, top, left + plate_w, top + plate_h)
        if not any(_overlaps(boxes[name], face) for face in avoid):
            return name, boxes[name], False
    return corner, boxes[corner], True


def _fit(
    text: str, shown_id: str, language: str, width: int, height: int, lines_wanted: int | None = None
) -> _Layout | None:
    """The largest layout from the preferred cap height down to the 5 % floor that fits whole."""
    least = max(MIN_LEGIBLE_CAP_PX, math.ceil(CAP_FRACTION * min(height, width)))
    cap = max(MIN_CAP_PX, least)
    while True:  # shrink towards the 5 % floor only if the label would not fit whole
        layout = _layout(text, shown_id, cap, language, width, lines_wanted)
        if layout.plate_w + 2 * layout.margin <= width and layout.plate_h + 2 * layout.margin <= height:
            return layout
        if cap <= least:
            return None
        cap -= 1


def _layouts(
    text: str, output_id: str, whole_id: str, language: str, width: int, height: int
) -> list[_Layout]:
    """Every layout of the label that fits a ``width``×``height`` picture, in the order tried: the
    whole id (``whole_id``) in each line layout first, the short id only after those."""
    return [
        layout
        for shown in (whole_id, short_output_id(output_id).upper())
        for wanted in (None, 1, 2)
        if (layout := _fit(text, shown, language, width, height, wanted)) is not None
    ]


def label_fits(text: str, output_id: str, language: str, width: int, height: int) -> bool:
    """Whether a ``width``×``height`` picture can carry the label ``text`` with ``output_id`` (whole or
    short) legibly: the test :func:`apply_label` makes before it refuses a picture."""
    return bool(_layouts(text, output_id, label_lines(output_id, language)[1], language, width, height))


def _plate(pixels: np.ndarray, box: LabelBox, outline: int) -> tuple[PILImage, PILDraw]:
    """The picture with an empty label plate (outline, then the plate) drawn in ``box``."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(np.ascontiguousarray(pixels[..., :3]), mode="RGB")
    draw = ImageDraw.Draw(image)
    draw.rectangle((box.left, box.top, box.right - 1, box.bottom - 1), fill=OUTLINE_RGB)
    draw.rectangle(
        (box.left + outline, box.top + outline, box.right - 1 - outline, box.bottom - 1 - outline),
        fill=PLATE_RGB,
    )
    return image, draw


def apply_label(
    pixels: np.ndarray,
    output_id: str,
    *,
    corner: str = "bottom-right",
    language: str = "en",
    avoid: Sequence[Box] = (),
    text: str | None = None,
    corners: Sequence[str] = CORNERS,
) -> tuple[np.ndarray, LabelBox]:
    """Return a labelled copy of ``pixels`` (H×W×3 uint8 RGB) and where the label is; ``avoid``:
    boxes (left, top, right, bottom) of faces the plate must not cover (see the module docstring).

    ``text`` replaces the language's wording (a disclosure profile's, drawn in ``language``'s font);
    ``corners``: the corners the profile allows (``corner`` must be one of them).
    """

    if corner not in CORNERS or corner not in corners:
        raise UsageError(f"label corner {corner!r} is not one of {', '.join(corners)}")
    default_text, whole_id = label_lines(output_id, language)
    if text is None:
        text = default_text
    elif language in CJK_LANGUAGES and not CJK_FONT.is_file():
        raise DisclosureError(f"the label font for {text!r} is missing from this installation")
    height, width = pixels.shape[:2]
    layouts = _layouts(text, output_id, whole_id, language, width, height)
    if not layouts:
        raise DisclosureError(
            f"the image is only {width}×{height} pixels: too small to carry a legible "
            f"{text!r} label with its id",
            hint="write a larger output (at least about 160 pixels wide)",
        )
    layout, (chosen, where, covers) = (
        layouts[0],
        place(
            width, height, layouts[0].plate_w, layouts[0].plate_h, layouts[0].margin, corner, avoid, corners
        ),
    )
    for candidate in layouts:
        found = place(
            width, height, candidate.plate_w, candidate.plate_h, candidate.margin, corner, avoid, corners
        )
        if not found[2]:
            layout, (chosen, where, covers) = candidate, found
            break
    text_font, id_font, text_box, id_box = layout.text_font, layout.id_font, layout.text_box, layout.id_box
    pad, gap, outline = layout.pad, layout.gap, layout.outline
    line_height, lines = layout.line_height, layout.lines
    short_id = lines[-1].rsplit(" ", 1)[-1]
    left, top, right, bottom = where
    box = LabelBox(left, top, right, bottom, layout.cap, lines, chosen, covers, text)

    image, draw = _plate(pixels, box, outline)
    x = box.left + outline + pad
    baseline_top = box.top + outline + pad
    if len(lines) == 1:
        # Capital tops of the text at the padding; the smaller id shares the text's baseline.
        draw.text((x - text_box[0], baseline_top - text_box[1]), text, font=text_font, fill=TEXT_RGB)
        x_id = x + (text_box[2] - text_box[0]) + gap
        id_top = baseline_top + layout.cap - layout.id_cap
        draw.text((x_id - id_box[0], id_top - id_box[1]), short_id, font=id_font, fill=TEXT_RGB)
    else:
        draw.text((x - text_box[0], baseline_top - text_box[1]), text, font=text_font, fill=TEXT_RGB)
        second_top = baseline_top + line_height + gap
        draw.text((x - id_box[0], second_top - id_box[1]), short_id, font=id_font, fill=TEXT_RGB)
    return np.asarray(image, dtype=np.uint8).copy(), box


def detect_label(pixels: np.ndarray) -> bool:
    """Whether a label plate sits near a corner: a dark, two-tone, text-bearing box in a light frame."""
    return bool(find_plates(pixels))


def _framed(bright: np.ndarray, top: int, left: int, h: int, w: int) -> bool:
    """Each side of the dark box has a mostly light line 1 to 3 pixels outside it (the outline)."""
    height, width = bright.shape
    sides = []
    for side in ("top", "bottom", "left", "right"):
        best = 0.0
        for offset in (1, 2, 3):
            r0, r1 = top - offset, top + h - 1 + offset
            c0, c1 = left - offset, left + w - 1 + offset
            if r0 < 0 or c0 < 0 or r1 >= height or c1 >= width:
                continue
            line = {
                "top": bright[r0, c0 : c1 + 1],
                "bottom": bright[r1, c0 : c1 + 1],
                "left": bright[r0 : r1 + 1, c0],
                "right": bright[r0 : r1 + 1, c1],
            }[side]
            best = max(best, float(line.mean()))
        sides.append(best)
    return min(sides) >= 0.6


START_CAP_FRACTION = 0.08
"""Footage's start label: its text's height as a fraction of the shorter side (larger than the
corner label's 5 %, never below it)."""
START_ROWS = ("top", "bottom", "middle")
START_COLUMNS = ("centre", "left", "right")


@dataclass(frozen=True)
class _StartPlate:
    font: Any
    cap: int
    pad: int
    outline: int
    ink: tuple[int, int, int, int]
    width: int
    height: int


def _start_plate(text: str, language: str, cap: int) -> _StartPlate:
    path = CJK_FONT if language in CJK_LANGUAGES else LATIN_FONT
    font = _font_for_cap(path, cap, _sample(text, language))
    ink = font.getbbox(text)
    pad, outline = max(2, round(0.6 * cap)), max(1, round(cap / 14))
    width = (ink[2] - ink[0]) + 2 * pad + 2 * outline
    height = (ink[3] - ink[1]) + 2 * pad + 2 * outline
    return _StartPlate(font, cap, pad, outline, ink, width, height)


def _start_places(width: int, height: int, plate: _StartPlate) -> list[tuple[str, Box]]:
    """Candidate boxes: centred at the top, the bottom, the middle; then towards the sides."""
    margin = max(2, round(0.6 * plate.cap))
    ys = {"top": margin, "bottom": height - margin - plate.height, "middle": (height - plate.height) // 2}
    xs = {"centre": (width - plate.width) // 2, "left": margin, "right": width - margin - plate.width}
    return [
        (f"{row}-{column}", (xs[column], ys[row], xs[column] + plate.width, ys[row] + plate.height))
        for column in START_COLUMNS
        for row in START_ROWS
        if xs[column] >= 0 and ys[row] >= 0
    ]


def start_label_box(
    width: int,
    height: int,
    text: str,
    language: str,
    avoid: Sequence[Box] = (),
    keep_clear: Sequence[Box] = (),
) -> tuple[LabelBox, Any, tuple[int, int, int, int]]:
    """Where footage's start label goes: a text-only plate, centred at the top, the bottom or the
    middle (then towards a side), wherever it covers no face (``avoid``) and not the corner label
    (``keep_clear``); its text ``START_CAP_FRACTION`` of the shorter side tall, smaller (never below
    the 5 % floor) where that is what fits or what clears the faces. Only when no size and place
    clears them does it cover one, at the top, centred (``covers_face``). Returns the box, the font,
    and (pad, outline, text ink top, text ink left)."""
    short = min(width, height)
    least = max(MIN_LEGIBLE_CAP_PX, math.ceil(CAP_FRACTION * short))
    blocked = [*avoid, *keep_clear]
    fallback: tuple[_StartPlate, str, Box] | None = None
    for cap in range(max(least, math.ceil(START_CAP_FRACTION * short)), least - 1, -1):
        plate = _start_plate(text, language, cap)
        if plate.width > width - 4 or plate.height > height // 3:
            continue  # too large for the picture: a smaller size
        places = _start_places(width, height, plate)
        if fallback is None and places:
            fallback = (plate, *places[0])
        clear = next(
            ((name, box) for name, box in places if not any(_overlaps(box, b) for b in blocked)), None
        )
        if clear is not None:
            return _start_result(text, plate, *clear, covers=False)
    if fallback is None:
        raise DisclosureError(f"the picture is only {width}×{height} pixels: too small for the start label")
    return _start_result(text, *fallback, covers=True)


def _start_result(
    text: str, plate: _StartPlate, name: str, box: Box, *, covers: bool
) -> tuple[LabelBox, Any, tuple[int, int, int, int]]:
    left, top, right, bottom = box
    where = LabelBox(left, top, right, bottom, plate.cap, (text,), name, covers, text)
    return where, plate.font, (plate.pad, plate.outline, plate.ink[1], plate.ink[0])


def apply_start_label(
    pixels: np.ndarray,
    text: str,
    *,
    language: str = "en",
    avoid: Sequence[Box] = (),
    keep_clear: Sequence[Box] = (),
) -> tuple[np.ndarray, LabelBox]:
    """A copy of ``pixels`` with footage's larger start label (see :func:`start_label_box`)."""

    height, width = pixels.shape[:2]
    box, font, (pad, outline, text_top, text_left) = start_label_box(
        width, height, text, language, avoid, keep_clear
    )
    image, draw = _plate(pixels, box, outline)
    x, y = box.left + outline + pad, box.top + outline + pad
    draw.text((x - text_left, y - text_top), text, font=font, fill=TEXT_RGB)
    return np.asarray(image, dtype=np.uint8).copy(), box


@dataclass(frozen=True)
class Plate:
    """A label plate found in a picture: its dark box, the corner it sits in, its text's height."""

    box: Box
    corner: str
    text_height: int
    """Rows of the first line of light text inside the plate (its capitals' or glyphs' height)."""

    def to_dict(self, width: int, height: int) -> dict[str, object]:
        return {
            "box": list(self.box),
            "corner": self.corner,
            "text_height_px": self.text_height,
            "text_fraction": round(self.text_height / min(width, height), 4),
        }


def find_plates(pixels: np.ndarray, *, anywhere: bool = False) -> list[Plate]:
    """Label plates near a corner: dark, two-tone, text-bearing boxes in a light frame.

    ``anywhere``: plates anywhere in the picture (footage's start label sits at the top, the bottom
    or the middle); one away from every corner is named ``inside``."""
    import cv2

    height, width = pixels.shape[:2]
    short = min(height, width)
    if pixels.ndim != 3:
        raise ValueError(f"find_plates reads H×W×channels pictures, got an array of shape {pixels.shape}")
    channels = [pixels[..., k] for k in range(min(3, pixels.shape[2]))]
    # channel by channel: numpy's max/min over the last axis of uint8 is ~20× slower (1080p: 46 ms each)
    dark = functools.reduce(np.maximum, channels) < 72
    lowest = functools.reduce(np.minimum, channels)
    light = lowest > 170
    bright = lowest > 140
    near = max(4.0, 0.08 * short)  # the plate's margin is 0.4 cap heights plus its outline
    _, _, stats, _ = cv2.connectedComponentsWithStats(dark.view(np.uint8), connectivity=4)
    left, top, wide, tall, area = (stats[1:, k].astype(np.int64) for k in range(5))
    aspect = 1.2 if anywhere else 2.0  # a start label of two CJK glyphs is under 2:1
    shaped = (tall >= 0.04 * short) & (wide >= aspect * tall) & (area >= 0.3 * wide * tall)
    at_left, at_right = left <= near, width - (left + wide) <= near
    at_top, at_bottom = top <= near, height - (top + tall) <= near
    found = []
    cornered = (at_left | at_right) & (at_top | at_bottom)
    for index in np.flatnonzero(shaped if anywhere else shaped & cornered):
        x, y, w, h = (int(v) for v in stats[index + 1, :4])
        dark_share = float(dark[y : y + h, x : x + w].mean())
        light_share = float(light[y : y + h, x : x + w].mean())
        mid_share = 1.0 - dark_share - light_share
        two_tone = 0.45 <= dark_share <= 0.95 and light_share >= 0.04 and mid_share <= 0.3
        if two_tone and _framed(bright, y, x, h, w):
            vertical = "top" if at_top[index] else "bottom"
            horizontal = "left" if at_left[index] and not at_right[index] else "right"
            if at_left[index] and at_right[index]:
                horizontal = "left" if x + w / 2 < width / 2 else "right"
            corner = f"{vertical}-{horizontal}" if cornered[index] else "inside"
            found.append(Plate((x, y, x + w, y + h), corner, _first_line(light[y : y + h, x : x + w])))
    return found


def _first_line(light: np.ndarray) -> int:
    """The height of the first run of rows holding light (text) pixels."""
    rows = light.sum(axis=1) > 0
    run = best = 0
    for filled in rows:
        if filled:
            run += 1
            best = max(best, run)
        elif best:
            break
    return best
