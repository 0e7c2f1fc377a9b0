"""Reading an image's disclosure back: watermark, visible label, file hashes (C2PA: issue 4).

The CLI adds the ledger lookup (by output id, and by perceptual hash for stripped files).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from likeness.disclosure.label import detect_label
from likeness.disclosure.phash import phash
from likeness.disclosure.watermark import WatermarkReading, decode
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
    c2pa: dict[str, object] | None = None
    """The C2PA state; ``None`` until manifests are read (issue 4)."""

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
            "c2pa": self.c2pa
            if self.c2pa is not None
            else {"state": "not-checked", "reason": "reading content credentials is not built yet"},
        }


def read_disclosure(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DisclosureReport:
    """Decode ``path`` (``BadInput`` if it is not a readable image) and read its disclosure."""
    picture = load_image(path, max_pixels=max_pixels)
    return DisclosureReport(
        path=Path(path),
        sha256=picture.sha256,
        phash=phash(picture.pixels),
        format=picture.format,
        width=picture.width,
        height=picture.height,
        watermark=decode(picture.pixels),
        label_detected=detect_label(picture.pixels),
    )
