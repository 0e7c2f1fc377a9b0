"""Re-embedding an enrolled identity with another face backend, from its stored reference crops.

The registry keeps an encrypted face crop of every reference photo (``records.face_crop_jpeg``) so a
person enrolled with one backend can be matched by another without being asked for photos again:
each crop is analysed by the new backend (it must show exactly one face) and the embeddings are
added to the identity in that backend's space, with the enrolment checks (``add_references``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from likeness.consent.records import Identity, Reference
from likeness.consent.registry import Registry
from likeness.errors import NoFace, UsageError
from likeness.faces.types import Analyzer


@dataclass(frozen=True)
class ReembedResult:
    identity: Identity
    embedding_space: str
    added: int
    skipped: list[str]
    """Why a stored crop gave no reference (photo sha256 prefix: reason)."""

    def to_dict(self) -> dict[str, object]:
        return {
            "identity": self.identity.to_dict(),
            "embedding_space": self.embedding_space,
            "added": self.added,
            "skipped": list(self.skipped),
        }


def _pixels(crop: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(crop)) as image:
        return np.asarray(image.convert("RGB"))


def reembed_identity(
    registry: Registry, identity: str, analyzer: Analyzer, *, operator: str
) -> ReembedResult:
    """Add ``analyzer``'s embeddings of ``identity``'s stored reference crops (see the module docstring)."""
    person = registry.get_identity(identity)
    space = analyzer.embedding_space
    if person.erased_at is not None:
        raise UsageError(f"identity {person.id} ({person.name}) was erased; nothing is left to re-embed")
    if space in person.embedding_spaces:
        raise UsageError(
            f"{person.name} ({person.id}) already has "
            f"{person.references_by_space.get(space, 0)} reference(s) in {space}",
            hint="nothing to do; to replace them, erase the identity and enrol it again",
        )
    photos = registry.reference_photos(person.id)
    if not photos:
        raise UsageError(
            f"{person.name} ({person.id}) has no stored reference crops to re-embed",
            hint=f"enrol them again with photos (likeness identity add ... --backend {analyzer.name})",
        )
    references: list[Reference] = []
    skipped: list[str] = []
    for photo, crop in photos:
        faces = analyzer.analyze(_pixels(crop))
        if len(faces) != 1:
            skipped.append(
                f"{photo[:12]}: {'no face' if not faces else f'{len(faces)} faces'} found in the stored crop"
            )
            continue
        embedding = np.asarray(faces[0].embedding, dtype=np.float32).ravel()
        references.append(Reference(embedding, space, photo, crop_jpeg=crop))
    if not references:
        raise NoFace(
            f"{analyzer.name} found no single face in any stored crop of {person.name} ({person.id})",
            hint=f"enrol them again with full photos (likeness identity add ... --backend {analyzer.name})",
        )
    updated = registry.add_references(person.id, references, operator=operator)
    return ReembedResult(updated, space, len(references), skipped)
