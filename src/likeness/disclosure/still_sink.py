"""The sink for stills: JPEG (q95, 4:4:4) or PNG, by the output suffix, with no metadata from any input.

The encoded file lives in a private job folder next to the output, ``.<out name>.likeness-partial``
(same filesystem, so the final rename is atomic), as ``sealed`` (mode 0600, no image suffix: no
viewer or file manager shows it as a picture). A killed job leaves that folder behind; every later
still job into the same folder removes such leftovers once no process holds their lock
(:func:`sweep_stale`).
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from likeness.disclosure import watermark
from likeness.disclosure.credentials import CredentialResult
from likeness.disclosure.output_id import new_output_id
from likeness.disclosure.phash import phash
from likeness.disclosure.seal import Begun, MarkedFrame
from likeness.disclosure.types import Ingredient, SealedOutput
from likeness.errors import DisclosureError, UsageError
from likeness.fsutil import move_into_place, same_file, try_lock, unwritable_reason
from likeness.media.frames import ResumePoint
from likeness.progress import Progress

FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
JPEG_QUALITY = 95
PNG_COMPRESS_LEVEL = 3
RETRY_STRENGTH = 1.4
"""If the mark does not read back at the normal strength (very busy images), it is embedded once
more at this multiple (PSNR about 3 dB lower) before the writer gives up."""
PARTIAL_SUFFIX = ".likeness-partial"
SEALED_NAME = "sealed"


def output_format(out_path: Path) -> str:
    """``"JPEG"`` or ``"PNG"`` for the output path, or :class:`UsageError`."""
    suffix = Path(out_path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(
            f"{out_path}: cannot write {suffix or 'a file without a suffix'!s}: "
            "a picture's output is JPEG or PNG",
            hint="name the output .jpg, .jpeg or .png",
        )
    return FORMATS[suffix]


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


def decode_bytes(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def check_destination(ingredients: list[Ingredient], out_path: Path, *, names: str) -> None:
    """Refuse an output that is one of the job's inputs, a folder, or in a missing or unwritable
    folder (``names``: the suffixes to suggest)."""
    for ingredient in ingredients:
        if ingredient.path is not None and same_file(Path(ingredient.path), out_path):
            raise UsageError(
                f"{out_path}: is the {ingredient.role} input of this job; refusing to overwrite an input",
                hint="choose another output path",
            )
    check_output_path(out_path, names=names)


def check_output_path(out_path: Path, *, names: str) -> None:
    """Refuse an output path that is a folder, or in a missing or unwritable folder."""
    folder = out_path.parent
    if out_path.is_dir():
        raise UsageError(
            f"{out_path}: is a folder; --out takes a file name",
            hint=f"give an output file name ending {names}, e.g. {out_path / ('output' + names.split()[0])}",
        )
    if not folder.is_dir():
        raise UsageError(f"{folder}: the output folder does not exist", hint="create it first")
    why = unwritable_reason(folder)
    if why is not None:
        raise UsageError(
            f"{folder}: the output folder is not writable ({why})", hint="choose a folder you can write to"
        )


def partial_folder(out_path: Path) -> Path:
    out_path = Path(out_path).expanduser().absolute()
    return out_path.parent / f".{out_path.name}{PARTIAL_SUFFIX}"


def _remove_partial(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def sweep_stale(folder: Path) -> list[Path]:
    """Remove what killed still jobs left in ``folder`` (their job folders, once unlocked)."""
    removed = []
    for partial in sorted(Path(folder).glob(f".*{PARTIAL_SUFFIX}")):
        if not partial.is_dir():
            continue
        lock = try_lock(partial / ".lock") if (partial / ".lock").exists() else None
        if (partial / ".lock").exists() and lock is None:
            continue  # a running job's
        try:
            _remove_partial(partial)
            removed.append(partial)
        finally:
            if lock is not None:
                lock.close()
    return removed


class StillSink:
    """Encodes one frame into ``sealed`` in the job folder; see the module docstring."""

    watermark_strength = watermark.STRENGTH
    start_time = 0.0
    watermark_per_output = False  # one frame: watermark.embed_id

    def __init__(self, out_path: Path) -> None:
        self.out_path = Path(out_path).expanduser().absolute()
        self.format = output_format(self.out_path)
        self.media_type = MEDIA_TYPES[self.format]
        self.folder = partial_folder(self.out_path)
        self._lock: IO[str] | None = None
        self._frame: MarkedFrame | None = None
        self._data = b""

    def check(self, ingredients: list[Ingredient]) -> None:
        check_destination(ingredients, self.out_path, names=".jpg or .png")

    def begin(self, checkpoint: Callable[[], dict[str, Any]]) -> Begun:
        sweep_stale(self.out_path.parent)
        self.folder.mkdir(mode=0o700, exist_ok=True)
        self._lock = try_lock(self.folder / ".lock")
        if self._lock is None:
            raise UsageError(
                f"{self.out_path}: another likeness job is writing this output right now",
                hint="wait for it to finish, or choose another output name",
            )
        return Begun(output_id=new_output_id(), start=ResumePoint())

    def adopt(self, recorded_sha256: Callable[[str], str | None]) -> SealedOutput | None:
        return None  # a still's id is new every time: nothing to adopt

    def write(self, frame: MarkedFrame) -> None:
        if self._frame is not None:
            raise DisclosureError("a still output takes exactly one frame")
        self._frame = frame
        self._data = encode(frame.marked, self.format)

    def finish(self, progress: Progress) -> Path:
        if self._frame is None:
            raise DisclosureError("nothing to seal: the job produced no picture")
        path = self.folder / SEALED_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(self._data)
            handle.flush()
            os.fsync(handle.fileno())
        return path

    def self_check(self, path: Path, output_id: str) -> str:
        decoded = decode_bytes(self._data)
        if watermark.decode(decoded).output_id != output_id:
            assert self._frame is not None
            stronger = watermark.embed_id(
                self._frame.labelled, output_id, strength=watermark.STRENGTH * RETRY_STRENGTH
            )
            self._data = encode(stronger, self.format)
            decoded = decode_bytes(self._data)
            if watermark.decode(decoded).output_id != output_id:
                raise DisclosureError(
                    f"the watermark carrying {output_id} does not read back from the encoded output",
                    hint="the image may be too small or too flat to carry it; try a larger output",
                )
            path.write_bytes(self._data)
        return phash(decoded)

    def keep(self, sealed: SealedOutput, signed: Path, credentials: CredentialResult) -> SealedOutput:
        return sealed

    def commit(self, signed: Path, result: SealedOutput) -> None:
        try:
            move_into_place(signed, self.out_path)
        except OSError as exc:
            raise DisclosureError(
                f"{self.out_path}: output {result.output_id} was recorded but could not be moved into "
                f"place ({exc})",
                hint="check the folder's permissions and free space; the ledger entry names this id",
            ) from exc
        _remove_partial(self.folder)

    def abandon(self, *, resumable: bool) -> None:
        if self._lock is not None:  # ours (another job's folder is left alone); a still never resumes
            _remove_partial(self.folder)

    def stopped(self, exc: Exception) -> DisclosureError:
        return DisclosureError(
            f"{self.out_path}: sealing failed, nothing was written ({type(exc).__name__}: {exc})"
        )

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None
