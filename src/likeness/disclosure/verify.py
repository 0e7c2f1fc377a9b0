"""Reading an image's disclosure back: C2PA content credentials, watermark, visible label, hashes.

The ledger lookup (by output id, file hash, and perceptual hash for stripped files) is done by
``likeness.pipeline.verify_file`` with :func:`ledger_matches_by_phash`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from likeness.disclosure.credentials import FORMAT_MIME, CredentialReport, read_credentials
from likeness.disclosure.label import detect_label
from likeness.disclosure.phash import MAX_DISTANCE, hamming, phash_variants
from likeness.disclosure.watermark import WatermarkReading, decode
from likeness.home import Home
from likeness.media.image import DEFAULT_MAX_PIXELS, load_image


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
    registry: Any, hashes: Sequence[str], max_distance: int = MAX_DISTANCE
) -> list[tuple[Any, int]]:
    """Recorded outputs whose perceptual hash is within ``max_distance`` of any of ``hashes``.

    Nearest first, as (record, distance). Uses ``registry.find_outputs_by_phash(phash,
    max_distance)`` where the registry has it, else scans ``registry.list_outputs()``.
    """
    if not hashes:
        return []
    finder = getattr(registry, "find_outputs_by_phash", None)
    candidates: Iterable[Any]
    if callable(finder):
        found: dict[str, Any] = {}
        for value in hashes:
            for item in finder(value, max_distance):
                record = item[0] if isinstance(item, tuple) else item
                found[record.output_id] = record
        candidates = found.values()
    else:
        lister = getattr(registry, "list_outputs", None)
        candidates = lister() if callable(lister) else []
    matches = []
    for record in candidates:
        stored = getattr(record, "phash", None)
        if not stored:
            continue
        distance = min(hamming(stored, value) for value in hashes)
        if distance <= max_distance:
            matches.append((record, distance))
    matches.sort(key=lambda pair: (pair[1], str(getattr(pair[0], "created_at", ""))))
    return matches


def _sha256_of(path: Path) -> str | None:
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def ingredient_role(record: Any, sha256: str, home: Home | None) -> str | None:
    """The role (``target``, ``source`` …) a file with ``sha256`` played in making ``record``, if any.

    From the record's ingredient hashes where the registry keeps them (``ingredient_sha256``:
    role → sha256), else from the content credentials of the recorded output file, if that file
    is still at its recorded path, unchanged (its sha256 is the recorded one).
    """
    sha256 = sha256.lower()
    kept = getattr(record, "ingredient_sha256", None)
    if isinstance(kept, Mapping):
        return next((str(role) for role, value in kept.items() if str(value).lower() == sha256), None)
    recorded = getattr(record, "path", None)
    if not recorded:
        return None
    path = Path(recorded)
    if not path.is_file() or _sha256_of(path) != getattr(record, "sha256", None):
        return None
    credentials = read_credentials(path, home)
    if credentials.state == "invalid" or credentials.output_id != getattr(record, "output_id", None):
        return None
    for item in credentials.ingredients:
        if item.get("sha256") and str(item["sha256"]).lower() == sha256:
            return str(item.get("role") or item.get("title"))
    return None
