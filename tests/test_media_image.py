"""Image decoding: limits, orientation and clear errors on real files."""

from __future__ import annotations

import io
import resource
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from likeness.errors import BadInput
from likeness.media.image import load_image


def test_loads_real_photo_as_rgb(faces_dir: Path) -> None:
    picture = load_image(faces_dir / "obama" / "1.jpg")
    assert picture.pixels.dtype == np.uint8
    assert picture.pixels.shape == (1137, 910, 3)
    assert picture.format == "JPEG"
    assert len(picture.sha256) == 64


def test_png_with_alpha_and_greyscale_become_rgb(faces_dir: Path, tmp_path: Path) -> None:
    rgba = Image.open(faces_dir / "alex_lacamoire" / "1.png").convert("RGBA")
    grey = rgba.convert("L")
    rgba.save(tmp_path / "a.png")
    grey.save(tmp_path / "g.png")
    assert load_image(tmp_path / "a.png").pixels.shape[2] == 3
    g = load_image(tmp_path / "g.png").pixels
    assert g.shape[2] == 3 and np.array_equal(g[..., 0], g[..., 1])


def test_exif_orientation_is_applied(faces_dir: Path, tmp_path: Path) -> None:
    original = Image.open(faces_dir / "obama" / "1.jpg")
    width, height = original.size
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    rotated_file = tmp_path / "rotated.jpg"
    original.save(rotated_file, exif=exif.tobytes())
    picture = load_image(rotated_file)
    assert picture.pixels.shape[:2] == (width, height)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"hello, this is not a picture at all\n" * 5, "text file"),
        (b"%PDF-1.7\n" + bytes(200), "PDF"),
    ],
)
def test_unusable_files_give_clear_errors(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "input.jpg"
    path.write_bytes(content)
    with pytest.raises(BadInput) as error:
        load_image(path)
    assert str(path) in error.value.reason
    assert expected in error.value.reason
    assert error.value.hint
    assert error.value.exit_code == 4


def test_truncated_and_corrupt_jpeg(faces_dir: Path, tmp_path: Path) -> None:
    data = (faces_dir / "obama" / "1.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(BadInput, match="corrupt or truncated"):
        load_image(truncated)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(data[:200] + bytes(range(256)) * 40)
    with pytest.raises(BadInput):
        load_image(corrupt)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(BadInput, match="folder"):
        load_image(tmp_path)


def test_oversized_dimensions_refused_before_decoding(tmp_path: Path) -> None:
    # A PNG header claiming 30000 × 30000 pixels but tiny data: a decompression bomb.
    buffer = io.BytesIO()
    Image.new("L", (30000, 30000 // 200)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[20:24] = (30000).to_bytes(4, "big")  # IHDR height
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # keep the chunk's CRC valid
    path = tmp_path / "bomb.png"
    path.write_bytes(bytes(data))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BadInput, match="megapixels"):
        load_image(path)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert (after - before) < 200_000  # KiB: the 900 MP body was never decoded


def test_sixty_megapixel_photo_loads(faces_dir: Path, tmp_path: Path) -> None:
    big = Image.open(faces_dir / "obama" / "4.jpg").resize((9500, 6320))
    path = tmp_path / "big.jpg"
    big.save(path, quality=80)
    del big
    picture = load_image(path)
    assert picture.pixels.shape == (6320, 9500, 3)
    with pytest.raises(BadInput, match="over the limit"):
        load_image(path, max_pixels=50_000_000)
