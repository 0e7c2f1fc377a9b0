"""IP-Adapter FaceID: the identity reference it needs and where its weights are.

FaceID was trained on insightface's ArcFace ``normed_embedding`` (512-d). dlib's ResNet embedding
(128-d, space ``dlib_resnet_v1``) lives in a different space and cannot stand in for it, not even
projected: so ``--identity`` needs the person enrolled with the insightface backend (a reference in an
``arcface_*`` space), and is refused, saying how to add one, when there is none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from likeness.consent.records import Identity
from likeness.consent.registry import Registry
from likeness.errors import BadInput, ModelMissing
from likeness.fsutil import sha256_file
from likeness.generation_models import generation_model, hf_cache_snapshot, table_folder
from likeness.home import Home
from likeness.models import ModelUse

FACEID_SPACE_PREFIX = "arcface_"
FACEID_DIM = 512
FACEID_MODEL = "ip-adapter-faceid"
FACEID_FILE = "ip-adapter-faceid_sd15.bin"


@dataclass(frozen=True)
class IdentityReference:
    """The person's mean ArcFace reference (unit length) and the space it comes from."""

    identity_id: str
    embedding_space: str
    embedding: np.ndarray
    references: int


def identity_reference(registry: Registry, identity: Identity) -> IdentityReference:
    """The ArcFace reference FaceID conditions on; :class:`BadInput` when the identity has none."""
    spaces = sorted(s for s in identity.embedding_spaces if s.startswith(FACEID_SPACE_PREFIX))
    for space in spaces:
        for entry in registry.gallery(space):
            if entry.identity_id != identity.id:
                continue
            vectors = np.asarray(entry.embeddings, dtype=np.float32).reshape(len(entry.embeddings), -1)
            if vectors.shape[1] != FACEID_DIM:
                continue
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
            mean = vectors.mean(axis=0)
            mean /= np.linalg.norm(mean) + 1e-12
            return IdentityReference(identity.id, space, mean.astype(np.float32), len(vectors))
    have = ", ".join(identity.embedding_spaces) or "none"
    raise BadInput(
        f"identity {identity.name!r} ({identity.id}) has no ArcFace (insightface, 512-d) reference; "
        f"IP-Adapter FaceID needs one, and dlib's 128-d embedding is a different space "
        f"(this identity has: {have})",
        hint="re-embed their stored reference crops with insightface: "
        f"likeness identity reembed {identity.id} --backend insightface",
    )


def faceid_table_use() -> ModelUse:
    """FaceID as the model table describes it (licence, commercial use), before its file is located."""
    entry = generation_model(FACEID_MODEL)
    assert entry is not None
    return ModelUse(entry.name, FACEID_FILE, None, entry.licence, entry.commercial_use, "not yet located")


def locate_faceid_weights(home: Home, given: Path | None) -> tuple[Path, ModelUse]:
    """The FaceID weight file (``--ip-adapter``, else the data home, else the HF cache) and its use."""
    entry = generation_model(FACEID_MODEL)
    assert entry is not None
    folder = table_folder(home, entry)
    candidates = [given] if given is not None else [folder / FACEID_FILE]
    if given is None:
        snapshot = hf_cache_snapshot(entry.repo_id)
        if snapshot is not None:
            candidates.append(snapshot / FACEID_FILE)
    for path in candidates:
        if path.is_file():
            use = ModelUse(
                name=entry.name,
                file=path.name,
                sha256=sha256_file(path),
                licence=entry.licence,
                commercial_use=entry.commercial_use,
                state="hashed",
            )
            return path, use
    looked = ", ".join(str(p) for p in candidates)
    raise ModelMissing(
        f"IP-Adapter FaceID weights not found; looked in: {looked}",
        hint=f"download {FACEID_FILE} from {entry.repo_id} on a connected machine and put it at "
        f"{folder / FACEID_FILE}, or pass --ip-adapter FILE",
    )
