"""The one writer of media: every output passes through :func:`seal` and nothing else writes one.

Order: new output id → visible label → invisible watermark → encode (JPEG q95 4:4:4 or PNG, by
the output suffix; no metadata from any input) → self-check (the encoded pixels must read back the
id) → temp file in the destination folder → C2PA content credentials signed into it
(:mod:`likeness.disclosure.credentials`; a signing failure is an error, never an unsigned output)
→ ``record(sealed)``
(the registry transaction; it may still refuse) → atomic rename onto the final name → fsync.

On any failure the temp file is removed, nothing appears under the final name, and the error is
raised: typed errors as they are, anything unexpected wrapped in :class:`DisclosureError`.

An existing file at the output path is replaced atomically, unless it is one of the job's inputs:
then ``seal`` refuses before any work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from likeness.disclosure import watermark
from likeness.disclosure.credentials import CredentialFacts, sign_content_credentials
from likeness.disclosure.label import apply_label
from likeness.disclosure.output_id import new_output_id
from likeness.disclosure.phash import phash
from likeness.disclosure.types import SealedOutput, Unsealed
from likeness.errors import DisclosureError, LikenessError, UsageError
from likeness.home import Home

if TYPE_CHECKING:
    from likeness.pipeline import StageTimer

FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
JPEG_QUALITY = 95
PNG_COMPRESS_LEVEL = 3
RETRY_STRENGTH = 1.4
"""If the mark does not read back at the normal strength (very busy images), it is embedded once
more at this multiple (PSNR about 3 dB lower) before the writer gives up."""


def output_format(out_path: Path) -> str:
    """``"JPEG"`` or ``"PNG"`` for the output path, or :class:`UsageError`."""
    suffix = out_path.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(
            f"{out_path}: cannot write {suffix or 'a file without a suffix'!s}; outputs are images",
            hint="name the output .jpg, .jpeg or .png",
        )
    return FORMATS[suffix]


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _check_destination(unsealed: Unsealed, out_path: Path) -> None:
    for ingredient in unsealed.ingredients:
        if ingredient.path is not None and _same_file(Path(ingredient.path), out_path):
            raise UsageError(
                f"{out_path}: is the {ingredient.role} input of this job; refusing to overwrite an input",
                hint="choose another output path",
            )
    folder = out_path.parent
    if not folder.is_dir():
        raise UsageError(f"{folder}: the output folder does not exist", hint="create it first")
    if out_path.is_dir():
        raise UsageError(f"{out_path}: is a folder", hint="give an output file name ending .jpg or .png")


def _check_pixels(pixels: np.ndarray) -> None:
    if (
        not isinstance(pixels, np.ndarray)
        or pixels.dtype != np.uint8
        or pixels.ndim != 3
        or pixels.shape[2] != 3
    ):
        shape = getattr(pixels, "shape", None)
        dtype = getattr(pixels, "dtype", None)
        raise DisclosureError(f"the result to seal is not an H×W×3 uint8 RGB image (shape {shape}, {dtype})")
    if min(pixels.shape[:2]) < 16:
        raise DisclosureError(
            f"the result is only {pixels.shape[1]}×{pixels.shape[0]} pixels; too small to label and watermark"
        )


@contextlib.contextmanager
def _stage(timer: StageTimer | None, name: str) -> Iterator[None]:
    if timer is None:
        yield
    else:
        with timer.stage(name):
            yield


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    """Encode pixels as a fresh file: JPEG q95 with 4:4:4 chroma, or PNG; no metadata at all."""
    from PIL import Image

    image = Image.fromarray(pixels, mode="RGB")
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=True)
    else:
        image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _decode_bytes(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _sign_content_credentials(path: Path, sealed: SealedOutput, unsealed: Unsealed, home: Home) -> bool:
    """Sign ``path`` in place with C2PA content credentials (the installation's certificate chain).

    Called on the temp file before the output is recorded, so a signing failure (a
    :class:`DisclosureError`) leaves nothing. Returns whether a manifest was embedded: always, or
    it raises.
    """
    facts = CredentialFacts(
        output_id=sealed.output_id,
        kind=sealed.kind,
        media_type=sealed.media_type,
        purpose=sealed.purpose,
        consent_ids=list(sealed.consent_ids),
        ingredients=list(unsealed.ingredients),
        tools=dict(unsealed.tools),
        consent_hashes=dict(unsealed.consent_hashes),
    )
    sign_content_credentials(path, facts=facts, home=home)
    return True


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (shared by the image and video writers)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not supported on this platform/filesystem
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remark(labelled: np.ndarray, output_id: str, fmt: str) -> tuple[np.ndarray, bytes, np.ndarray]:
    """Embed once more, stronger, after the mark did not read back; or give up."""
    marked = watermark.embed_id(labelled, output_id, strength=watermark.STRENGTH * RETRY_STRENGTH)
    data = encode(marked, fmt)
    decoded = _decode_bytes(data)
    if watermark.decode(decoded).output_id != output_id:
        raise DisclosureError(
            f"the watermark carrying {output_id} does not read back from the encoded output",
            hint="the image may be too small or too flat to carry it; try a larger output",
        )
    return marked, data, decoded


def seal(
    unsealed: Unsealed,
    out_path: Path,
    *,
    home: Home,
    record: Callable[[SealedOutput], None],
    timer: StageTimer | None = None,
) -> SealedOutput:
    """Label, watermark, encode and atomically write ``unsealed`` to ``out_path``, then record it."""
    out_path = Path(out_path).expanduser().absolute()
    fmt = output_format(out_path)
    _check_destination(unsealed, out_path)
    _check_pixels(unsealed.pixels)

    tmp_path: Path | None = None
    try:
        output_id = new_output_id()
        with _stage(timer, "label"):
            labelled, _ = apply_label(
                unsealed.pixels, output_id, corner=unsealed.label_corner, language=unsealed.label_language
            )
        with _stage(timer, "watermark"):
            marked = watermark.embed_id(labelled, output_id)
        with _stage(timer, "encode"):
            data = encode(marked, fmt)
        with _stage(timer, "self-check"):
            decoded = _decode_bytes(data)
            if watermark.decode(decoded).output_id != output_id:
                marked, data, decoded = _remark(labelled, output_id, fmt)
            perceptual = phash(decoded)

        fd, name = tempfile.mkstemp(
            dir=out_path.parent, prefix=f".{out_path.stem}.", suffix=f".partial{out_path.suffix}"
        )
        tmp_path = Path(name)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

        sealed = SealedOutput(
            path=out_path,
            output_id=output_id,
            sha256=hashlib.sha256(data).hexdigest(),
            media_type=MEDIA_TYPES[fmt],
            kind=unsealed.kind,
            consent_ids=list(unsealed.consent_ids),
            purpose=unsealed.purpose,
            phash=perceptual,
            c2pa=False,
            ingredient_sha256={item.role: item.sha256 for item in unsealed.ingredients},
        )
        with _stage(timer, "c2pa"):
            signed_in_place = _sign_content_credentials(tmp_path, sealed, unsealed, home)
        if signed_in_place:
            signed = tmp_path.read_bytes()
            sealed = dataclasses.replace(sealed, sha256=hashlib.sha256(signed).hexdigest(), c2pa=True)

        record(sealed)
        try:
            os.replace(tmp_path, out_path)
        except OSError as exc:
            raise DisclosureError(
                f"{out_path}: output {output_id} was recorded but could not be moved into place ({exc})",
                hint="check the folder's permissions and free space; the ledger entry names this id",
            ) from exc
        tmp_path = None
        fsync_dir(out_path.parent)
        return sealed
    except LikenessError:
        raise
    except Exception as exc:
        raise DisclosureError(
            f"{out_path}: sealing failed, nothing was written ({type(exc).__name__}: {exc})",
        ) from exc
    finally:
        if tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()
