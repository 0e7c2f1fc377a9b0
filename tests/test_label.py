"""The visible label: present, ≥ 5 % of the shorter side, in every corner, any language, any
background; detectable again; and absent from real unlabelled photos."""

from __future__ import annotations

import dataclasses
import inspect
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from likeness.disclosure.label import (
    CJK_FONT,
    CORNERS,
    LABEL_TEXT,
    LATIN_FONT,
    MIN_LEGIBLE_CAP_PX,
    apply_label,
    detect_label,
)
from likeness.disclosure.output_id import new_output_id, parse_output_id
from likeness.disclosure.types import Unsealed
from likeness.disclosure.write import seal
from likeness.errors import DisclosureError, UsageError
from likeness.media import load_image


def _photos(faces_dir: Path) -> list[Path]:
    return sorted(p for p in faces_dir.rglob("*") if p.suffix.lower() in {".jpg", ".png"})


def _text_line_heights(labelled: np.ndarray, box) -> list[int]:
    """Heights of the runs of rows holding white text inside the plate."""
    plate = labelled[box.top : box.bottom, box.left : box.right]
    inner = plate[3:-3, 3:-3]  # skip the outline
    white_rows = (inner.min(axis=2) > 200).any(axis=1)
    runs, run = [], 0
    for has_text in white_rows.tolist():
        if has_text:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    if run:
        runs.append(run)
    return runs


@pytest.mark.parametrize("corner", CORNERS)
@pytest.mark.parametrize("photo", ["John_Simm/1.jpg", "deepface_person_06/3.jpg", "biden/1.jpg"])
def test_label_in_each_corner_and_at_least_five_percent(faces_dir: Path, photo: str, corner: str) -> None:
    pixels = load_image(faces_dir / photo).pixels
    height, width = pixels.shape[:2]
    labelled, box = apply_label(pixels, new_output_id(), corner=corner)

    assert box.cap_height >= 0.05 * min(height, width)
    heights = _text_line_heights(labelled, box)
    # the AI text at the legal size (GB 45438-2025: 5 % of the shorter side); the id under or beside
    # it smaller but legible (one run of rows when it shares the text's line)
    assert heights and heights[0] >= 0.05 * min(height, width), heights
    assert all(h >= MIN_LEGIBLE_CAP_PX for h in heights), heights
    # It sits in the asked corner, within a small margin.
    margin = 0.05 * min(height, width)
    assert (box.left <= margin) if corner.endswith("left") else (width - box.right <= margin)
    assert (box.top <= margin) if corner.startswith("top") else (height - box.bottom <= margin)
    # Only the plate changed.
    outside = np.ones((height, width), bool)
    outside[box.top : box.bottom, box.left : box.right] = False
    assert np.array_equal(labelled[outside], pixels[outside])
    assert detect_label(labelled)


@pytest.mark.parametrize("background", [0, 255, 128])
def test_legible_on_dark_light_and_grey(background: int) -> None:
    pixels = np.full((600, 900, 3), background, np.uint8)
    labelled, box = apply_label(pixels, new_output_id())
    plate = labelled[box.top : box.bottom, box.left : box.right].astype(int)
    text = plate.min(axis=2) > 200
    dark = plate.max(axis=2) < 40
    assert text.mean() > 0.05 and dark.mean() > 0.4  # white text on a dark plate
    # The plate's edge differs strongly from the background either way (outline or plate).
    edge = labelled[box.top, box.left : box.right].astype(int)
    assert abs(int(edge.mean()) - background) > 60 or dark.mean() > 0.4
    assert detect_label(labelled)


@pytest.mark.parametrize("language", sorted(LABEL_TEXT))
def test_languages_render_their_own_text(language: str) -> None:
    pixels = np.full((500, 800, 3), 90, np.uint8)
    output_id = new_output_id()
    labelled, box = apply_label(pixels, output_id, language=language)
    english, _ = apply_label(pixels, output_id, language="en")
    assert LABEL_TEXT[language] in box.lines[0] or len(box.lines) == 2
    if language != "en":
        assert not np.array_equal(labelled, english)
    assert detect_label(labelled)


def test_fonts_ship_with_the_package() -> None:
    assert LATIN_FONT.is_file() and CJK_FONT.is_file()


def test_bad_corner_or_language_is_a_usage_error() -> None:
    pixels = np.zeros((300, 300, 3), np.uint8)
    with pytest.raises(UsageError):
        apply_label(pixels, new_output_id(), corner="middle")
    with pytest.raises(UsageError):
        apply_label(pixels, new_output_id(), language="xx")


def test_label_survives_jpeg_and_downscale(faces_dir: Path) -> None:
    pixels = load_image(faces_dir / "obama" / "4.jpg").pixels
    labelled, _ = apply_label(pixels, new_output_id(), corner="top-left")
    buffer = io.BytesIO()
    Image.fromarray(labelled).resize((pixels.shape[1] // 2, pixels.shape[0] // 2)).save(
        buffer, "JPEG", quality=70
    )
    assert detect_label(np.asarray(Image.open(buffer).convert("RGB")))


@pytest.mark.slow
def test_no_label_found_in_real_unlabelled_photos(faces_dir: Path) -> None:
    photos = _photos(faces_dir)
    assert len(photos) > 90
    flagged = [p.name for p in photos if detect_label(load_image(p).pixels)]
    assert flagged == []


def test_the_whole_id_is_printed_in_capitals_next_to_the_text() -> None:
    output_id = new_output_id()
    for width, language in ((1200, "en"), (300, "de")):  # one line, and two lines on a narrow image
        _, box = apply_label(np.full((900, width, 3), 90, np.uint8), output_id, language=language)
        printed = " ".join(box.lines)
        assert LABEL_TEXT[language] in printed and output_id.upper() in printed
        assert "lk-" not in printed and parse_output_id(output_id.upper()) == output_id


@pytest.fixture(scope="module")
def dlib_analyzer(tmp_path_factory: pytest.TempPathFactory):
    from likeness.home import Home
    from likeness.jobs.engines import load_engines

    return load_engines("dlib", Home(tmp_path_factory.mktemp("label") / "home").ensure()).analyzer


def test_the_label_covers_no_face_on_the_group_photos(faces_dir: Path, dlib_analyzer) -> None:
    """On every group photo the plate goes where it covers no detected face; where no corner is free
    (a wall of faces) it says so, and then truly every corner would have covered one."""
    moved, crowded = 0, []
    for photo in sorted((faces_dir / "_multi").glob("*.jpg")):
        pixels = load_image(photo).pixels
        faces = dlib_analyzer.analyze(pixels)
        height, width = pixels.shape[:2]
        for corner in ("bottom-right", "top-right"):
            labelled, box = apply_label(pixels, new_output_id(), corner=corner, avoid=[f.box for f in faces])
            plate = (box.left, box.top, box.right, box.bottom)
            covered = [f.box for f in faces if _overlap(plate, f.box)]
            if box.covers_face:
                crowded.append(photo.name)
                w, h = box.right - box.left, box.bottom - box.top
                corners = [(0, 0), (width - w, 0), (0, height - h), (width - w, height - h)]
                assert all(any(_overlap((x, y, x + w, y + h), f.box) for f in faces) for x, y in corners)
                continue
            assert covered == [], (photo.name, corner, covered)
            assert len(dlib_analyzer.analyze(labelled)) == len(faces), photo.name  # nobody hidden
            moved += box.corner != corner
    assert moved > 0, "no photo needed another corner: the test does not exercise avoiding faces"
    assert len(set(crowded)) <= 1, crowded


def test_when_every_corner_covers_a_face_the_label_says_so() -> None:
    pixels = np.full((300, 400, 3), 90, np.uint8)
    _, box = apply_label(pixels, new_output_id(), corner="top-left", avoid=[(0, 0, 400, 300)])
    assert box.covers_face and box.corner == "top-left"


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize(
    ("width", "height"), [(120, 90), (160, 120), (320, 240), (300, 2000), (1920, 1080), (4000, 3000)]
)
@pytest.mark.parametrize("language", ["en", "it", "ja"])
def test_every_size_gets_a_whole_label_of_at_least_five_percent(
    width: int, height: int, language: str
) -> None:
    pixels = np.full((height, width, 3), 200, np.uint8)
    labelled, box = apply_label(pixels, new_output_id(), language=language, corner="top-right")
    assert 0 < box.left < box.right < width and 0 < box.top < box.bottom < height  # nothing clipped
    assert box.cap_height >= 0.05 * min(width, height)
    assert detect_label(labelled)


def test_an_image_too_small_for_a_legible_label_is_refused(tmp_path: Path, home) -> None:
    with pytest.raises(DisclosureError, match="too small"):
        apply_label(np.zeros((48, 64, 3), np.uint8), new_output_id())
    tiny = Unsealed(
        pixels=np.full((48, 64, 3), 120, np.uint8),
        kind="swap",
        purpose="test",
        consent_ids=[],
        ingredients=[],
        tools={},
        operator="tester",
    )
    with pytest.raises(DisclosureError):
        seal(tiny, tmp_path / "tiny.png", home=home, record=lambda sealed: None)
    assert not (tmp_path / "tiny.png").exists()


def test_the_label_cannot_be_switched_off() -> None:
    """The job can choose the corner and the language, nothing else: there is no flag to skip it."""
    assert {f.name for f in dataclasses.fields(Unsealed) if "label" in f.name} == {
        "label_corner",
        "label_language",
    }
    assert list(inspect.signature(seal).parameters) == ["unsealed", "out_path", "home", "record", "timer"]
