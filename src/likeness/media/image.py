"""Still-image decoding: size limits before decoding, EXIF orientation, RGB uint8 out."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from likeness.errors import BadInput

# 100 megapixels: a 60 MP camera frame fits, a decompression bomb does not.
DEFAULT_MAX_PIXELS = 100_000_000
_SNIFF_BYTES = 16


@dataclass(frozen=True)
class Picture:
    """A decoded still image: ``pixels`` is H×W×3 uint8 RGB, upright (EXIF orientation applied)."""

    pixels: np.ndarray = field(repr=False)
    path: Path | None
    sha256: str
    format: str

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def _describe_bytes(head: bytes) -> str:
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head[4:8] == b"ftyp":
        return "an MP4/MOV video (name it .mp4 or .mov: likeness reads a file by its suffix)"
    if head.startswith((b"PK\x03\x04",)):
        return "a ZIP archive"
    if head.startswith((b"\x1aE\xdf\xa3",)):
        return "a Matroska/WebM video (name it .mkv or .webm: likeness reads a file by its suffix)"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "a WAV audio file"
    if head.startswith((b"ID3", b"fLaC", b"OggS")) or head[:2] in (b"\xff\xfb", b"\xff\xf3"):
        return "an audio file"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head if head):
        return "a text file"
    return "unknown binary data"


def load_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Decode ``path`` to an upright RGB picture, or raise :class:`BadInput` saying what is wrong."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: file not found", hint="check the path")
    if path.is_dir():
        raise BadInput(f"{path}: is a folder, not an image file", hint="pass an image file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"{path}: cannot be read ({exc.strerror})", hint="check its permissions") from exc
    if not data:
        raise BadInput(f"{path}: the file is empty (0 bytes)", hint="re-export or re-download the image")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format or "unknown"
            width, height = image.size
            if width * height > max_pixels:
                raise BadInput(
                    f"{path}: {width}×{height} is {width * height / 1e6:.3g} megapixels, "
                    f"over the limit of {max_pixels / 1e6:.3g}",
                    hint="downscale the image, or raise the limit with --max-pixels",
                )
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode != "RGB":
                if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    arr = np.asarray(image, dtype=np.float64)
                    top = max(float(arr.max()), 1.0)
                    image = Image.fromarray((arr * (255.0 / top)).clip(0, 255).astype(np.uint8))
                image = image.convert("RGB")
            pixels = np.array(image, dtype=np.uint8)
    except BadInput:
        raise
    except UnidentifiedImageError as exc:
        raise BadInput(
            f"{path}: not an image that can be read (it looks like {_describe_bytes(data[:_SNIFF_BYTES])})",
            hint="use a JPEG, PNG, WebP, TIFF or BMP file",
        ) from exc
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise BadInput(
            f"{path}: the image claims implausibly large dimensions, over the limit of "
            f"{max_pixels / 1e6:.0f} megapixels (a decompression bomb or a corrupt header)",
            hint="downscale the image, or raise the limit with --max-pixels",
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInput(
            f"{path}: the image data is corrupt or truncated ({exc})",
            hint="re-export or re-download the image",
        ) from exc
    except MemoryError as exc:
        raise BadInput(f"{path}: not enough memory to decode this image", hint="downscale it first") from exc

    return Picture(pixels=pixels, path=path, sha256=hashlib.sha256(data).hexdigest(), format=fmt)
