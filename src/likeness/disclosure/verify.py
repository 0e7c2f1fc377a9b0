"""Reading an image's disclosure back: C2PA content credentials, watermark, visible label, hashes.

The ledger lookup (by output id, file hash, and perceptual hash for stripped files) is done by
``likeness.pipeline.verify_file`` with :func:`ledger_matches_by_phash`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from likeness.disclosure.credentials import FORMAT_MIME, CredentialReport, read_credentials
from likeness.disclosure.label import detect_label
from likeness.disclosure.phash import MAX_DISTANCE, phash_variants
from likeness.disclosure.watermark import WatermarkReading, decode
from likeness.home import Home
from likeness.media.image import DEFAULT_MAX_PIXELS, load_image

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
    return DisclosureReport(
        path=Path(path),
        sha256=picture.sha256,
        phash=hashes[0],
        format=picture.format,
        width=picture.width,
        height=picture.height,
        watermark=decode(picture.pixels),
        label_detected=detect_label(picture.pixels),
        c2pa=read_credentials(path, home, media_type=FORMAT_MIME.get(picture.format.upper())),
        phash_variants=hashes,
    )


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


def _sha256_of(path: Path) -> str | None:
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


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
    if not path.is_file() or _sha256_of(path) != record.sha256:
        return None
    credentials = read_credentials(path, home)
    if credentials.state == "invalid" or credentials.output_id != record.output_id:
        return None
    for item in credentials.ingredients:
        if item.get("sha256") and str(item["sha256"]).lower() == sha256:
            return str(item.get("role") or item.get("title"))
    return None
