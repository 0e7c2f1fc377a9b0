"""The one reader of disclosure: C2PA content credentials, watermark, visible label, hashes.

:func:`read_file` reads any file: a still, footage (which adds its per-window view, see
:mod:`likeness.disclosure.footage_read`), or a file whose pixels do not decode at all. It never
refuses a file it can partly read: where the pixels cannot be decoded it still reports the file's
hashes and its content credentials, and says what could not be read (``unreadable``), so a
damaged or edited file comes out as what it is, never as "bad input".

The ledger lookup (by output id, file hash, and perceptual hash for stripped files) is done by
``likeness.jobs.verify.verify_file`` with :func:`ledger_matches_by_phash`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from likeness.disclosure.credentials import FORMAT_MIME, CredentialReport, read_credentials
from likeness.disclosure.footage_read import VideoDisclosureReport, read_video_disclosure
from likeness.disclosure.implicit import read_aigc
from likeness.disclosure.label import Plate, find_plates
from likeness.disclosure.phash import MAX_DISTANCE, phash_variants
from likeness.disclosure.watermark import WatermarkReading, decode
from likeness.errors import BadInput
from likeness.fsutil import sha256_file
from likeness.home import Home
from likeness.media.image import DEFAULT_MAX_PIXELS, load_image
from likeness.media.video import looks_like_video

if TYPE_CHECKING:
    from likeness.consent.records import OutputRecord
    from likeness.consent.registry import Registry


@dataclass(frozen=True)
class DisclosureReport:
    path: Path
    sha256: str
    phash: str
    format: str
    width: int
    height: int
    watermark: WatermarkReading
    label_detected: bool
    c2pa: CredentialReport
    phash_variants: tuple[str, ...] = ()
    """``phash`` and the hash of the picture inside a uniform frame, if it has one."""
    unreadable: str | None = None
    """Why the pixels could not be decoded (then the watermark and the label were not read)."""
    plates: tuple[Plate, ...] = ()
    """The label plates found in a corner (where, how tall their text)."""
    aigc: dict[str, str] | None = None
    """The AIGC implicit label in the file's metadata (GB 45438-2025), if any."""

    @property
    def output_id(self) -> str | None:
        return self.watermark.output_id

    def to_dict(self) -> dict[str, object]:
        return {
            "file": {
                "path": str(self.path),
                "sha256": self.sha256,
                "phash": self.phash,
                "format": self.format,
                "width": self.width,
                "height": self.height,
            },
            "watermark": self.watermark.to_dict(),
            "label": {"detected": self.label_detected},
            "c2pa": self.c2pa.to_dict(),
            "unreadable": self.unreadable,
        }


def read_disclosure(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, home: Home | None = None
) -> DisclosureReport:
    """Decode ``path`` (``BadInput`` if it is not a readable image) and read its disclosure.

    Content credentials are validated with ``home``'s trust anchors (its installation root and
    configured roots); without a home nothing is trusted and a good manifest reads
    ``valid-untrusted``.
    """
    picture = load_image(path, max_pixels=max_pixels)
    hashes = phash_variants(picture.pixels)
    plates = tuple(find_plates(picture.pixels))
    return DisclosureReport(
        path=Path(path),
        sha256=picture.sha256,
        phash=hashes[0],
        format=picture.format,
        width=picture.width,
        height=picture.height,
        watermark=decode(picture.pixels),
        label_detected=bool(plates),
        c2pa=read_credentials(path, home, media_type=FORMAT_MIME.get(picture.format.upper())),
        phash_variants=hashes,
        plates=plates,
        aigc=read_aigc(Path(path)),
    )


def read_file(path: str | Path, *, home: Home | None = None) -> DisclosureReport | VideoDisclosureReport:
    """Read every disclosure layer ``path`` still carries; see the module docstring.

    The reader is picked by the file's suffix and header; when it refuses the file, the other one
    is tried, so a still named ``.mp4`` or a video named ``.jpg`` reads the same as under its right
    name. Raises :class:`BadInput` only when the file itself cannot be opened (missing, a folder,
    unreadable): there is nothing to report then.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(
            f"{path}: {'is a folder' if path.is_dir() else 'no such file'}", hint="give the path of a file"
        )
    try:
        sha256 = sha256_file(path)
    except OSError as exc:
        raise BadInput(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    video_first = looks_like_video(path)
    try:
        return read_video_disclosure(path, home=home) if video_first else read_disclosure(path, home=home)
    except BadInput as error:
        first = error
    # The suffix can lie (a still renamed .mp4, an MPEG-TS named .jpg): read what the bytes are.
    try:
        return read_disclosure(path, home=home) if video_first else read_video_disclosure(path, home=home)
    except BadInput as error:
        still, video = (error, first) if video_first else (first, error)
    reason = still.reason if _is_still_image(path) else (video if video_first else still).reason
    return _pixels_unreadable(path, sha256, reason, home)


def _is_still_image(path: Path) -> bool:
    """Whether the file's header is that of a still-image format (Pillow identifies it; nothing is
    decoded): then the still reader's refusal says what is wrong with it, not the video reader's."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path):
                return True
    except Image.DecompressionBombError:
        return True
    except (OSError, SyntaxError, ValueError, EOFError):  # UnidentifiedImageError is an OSError
        return False


def _pixels_unreadable(path: Path, sha256: str, reason: str, home: Home | None) -> DisclosureReport:
    """The layers of a file whose pixels do not decode: hashes and content credentials."""
    return DisclosureReport(
        path=path,
        sha256=sha256,
        phash="",
        format="unknown",
        width=0,
        height=0,
        watermark=WatermarkReading(found=False, output_id=None, confidence=0.0),
        label_detected=False,
        c2pa=_credentials_of_unparsed(path, home),
        unreadable=reason,
        aigc=read_aigc(path),
    )


def _credentials_of_unparsed(path: Path, home: Home | None) -> CredentialReport:
    """The content credentials of a file whose media does not decode. c2pa reports any asset it
    cannot parse as an unreadable manifest; a file with no C2PA manifest data in it at all never
    had one, so that is "absent", not "invalid" (which would read as tampered)."""
    report = read_credentials(path, home)
    if report.state != "invalid" or report.reasons != ("manifest.unreadable",) or _has_c2pa_bytes(path):
        return report
    return CredentialReport(
        state="absent", explanations=("the file could not be parsed and holds no C2PA manifest data",)
    )


def _has_c2pa_bytes(path: Path) -> bool:
    import mmap

    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            return False
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(b"c2pa") >= 0


def ledger_matches_by_phash(
    registry: Registry, hashes: Sequence[str], max_distance: int = MAX_DISTANCE
) -> list[tuple[OutputRecord, int]]:
    """Recorded outputs whose perceptual hash is within ``max_distance`` of any of ``hashes``.

    Nearest first (then oldest first), as (record, distance): each output once, at its smallest
    distance to any of ``hashes``.
    """
    nearest: dict[str, tuple[OutputRecord, int]] = {}
    for value in dict.fromkeys(hashes):
        for record, distance in registry.find_outputs_by_phash(value, max_distance):
            known = nearest.get(record.output_id)
            if known is None or distance < known[1]:
                nearest[record.output_id] = (record, distance)
    return sorted(nearest.values(), key=lambda pair: (pair[1], pair[0].created_at, pair[0].output_id))


def ingredient_role(record: OutputRecord, sha256: str, home: Home | None) -> str | None:
    """The role (``target``, ``source`` …) a file with ``sha256`` played in making ``record``, if any.

    From the input hashes the registry recorded with the output (``ingredient_sha256``), which
    answer even when the output file is gone. Outputs recorded without them (before registry
    schema version 2, or by a writer that did not pass them) fall back to the content credentials
    of the output file, if it is still at its recorded path, unchanged (its sha256 is the recorded
    one).
    """
    sha256 = sha256.lower()
    if record.ingredient_sha256:
        return next(
            (role for role, value in record.ingredient_sha256.items() if value.lower() == sha256), None
        )
    if not record.path:
        return None
    path = Path(record.path)
    if not path.is_file() or sha256_file(path) != record.sha256:
        return None
    credentials = read_credentials(path, home)
    if credentials.state == "invalid" or credentials.output_id != record.output_id:
        return None
    for item in credentials.ingredients:
        if item.get("sha256") and str(item["sha256"]).lower() == sha256:
            return str(item.get("role") or item.get("title"))
    return None
