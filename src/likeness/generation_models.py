"""Generation models: the table of known diffusers models with their licences, and where to find one.

Generation models are folders (a diffusers ``model_index.json`` with its components, or one adapter
weight file), never downloaded by likeness. A model is found, offline only, as:

* a folder given on the command line (``--model PATH``);
* ``<data home>/models/diffusers/<name>/`` for a table name (``--model sd15``);
* a Hugging Face repo id already in the local Hugging Face cache (``--model org/name``), resolved
  with ``local_files_only=True``.

Which licence applies: a table entry when the folder is a known repo (by repo id, or the HF cache path
``models--org--name``), else the ``license:`` tag of the folder's model card (``README.md`` front
matter), else **unknown, treated as non-commercial** (a commercial purpose is refused until the
operator records a licence, as for any non-commercial model file).

The licences below were read from each model card (2026); they are facts for counsel to confirm, not
legal advice. This module is a leaf: it imports nothing heavy and nothing of likeness but errors/home.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from likeness.errors import ModelMissing
from likeness.home import Home

DIFFUSERS_DIRNAME = "diffusers"
"""``<models>/diffusers/<name>/``: where a table model's folder is looked for in the data home."""
UNKNOWN_LICENCE = "unknown (no licence found in the model card); treated as non-commercial"


@dataclass(frozen=True)
class GenerationModel:
    """One known generation model: where it comes from, its licence, whether commercial use is allowed."""

    name: str
    repo_id: str
    role: str
    """``text-to-image``, ``identity-adapter`` (a FaceID adapter) or ``identity-model``."""
    licence: str
    commercial_use: bool
    licence_tags: tuple[str, ...] = ()
    """Model-card ``license:`` / ``license_name:`` values that identify this licence."""
    aliases: tuple[str, ...] = ()
    """Other repo ids of the same weights (renamed or mirrored repos)."""
    notes: str = ""

    @property
    def source(self) -> str:
        return f"https://huggingface.co/{self.repo_id} (fetch it yourself; likeness never downloads models)"


GENERATION_MODELS: tuple[GenerationModel, ...] = (
    GenerationModel(
        name="sd15",
        repo_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
        role="text-to-image",
        licence="CreativeML OpenRAIL-M (use restrictions of its Attachment A apply)",
        commercial_use=True,
        licence_tags=("creativeml-openrail-m",),
        aliases=("runwayml/stable-diffusion-v1-5", "CompVis/stable-diffusion-v1-4"),
    ),
    GenerationModel(
        name="sd15-inpainting",
        repo_id="stable-diffusion-v1-5/stable-diffusion-inpainting",
        role="inpainting",
        licence="CreativeML OpenRAIL-M (use restrictions of its Attachment A apply)",
        commercial_use=True,
        licence_tags=("creativeml-openrail-m",),
        aliases=("runwayml/stable-diffusion-inpainting",),
    ),
    GenerationModel(
        name="sdxl-base",
        repo_id="stabilityai/stable-diffusion-xl-base-1.0",
        role="text-to-image",
        licence="CreativeML OpenRAIL++-M (use restrictions apply)",
        commercial_use=True,
        licence_tags=("openrail++",),
        notes="diffusers adds its own invisible watermark when invisible-watermark is installed; kept",
    ),
    GenerationModel(
        name="flux1-schnell",
        repo_id="black-forest-labs/FLUX.1-schnell",
        role="text-to-image",
        licence="Apache-2.0",
        commercial_use=True,
        licence_tags=("apache-2.0",),
    ),
    GenerationModel(
        name="flux1-dev",
        repo_id="black-forest-labs/FLUX.1-dev",
        role="text-to-image",
        licence="FLUX.1 [dev] Non-Commercial License",
        commercial_use=False,
        licence_tags=("flux-1-dev-non-commercial-license",),
        notes="running the model for a commercial purpose needs a licence from Black Forest Labs",
    ),
    GenerationModel(
        name="ip-adapter-faceid",
        repo_id="h94/IP-Adapter-FaceID",
        role="identity-adapter",
        licence="non-commercial research use only (conditions on insightface ArcFace identity features)",
        commercial_use=False,
        notes="file ip-adapter-faceid_sd15.bin (SD 1.5); needs a 512-d insightface ArcFace reference",
    ),
    GenerationModel(
        name="arc2face",
        repo_id="FoivosPar/Arc2Face",
        role="identity-model",
        licence=(
            "weights MIT per the model card, but it runs on insightface antelopev2 ArcFace embeddings "
            "(non-commercial) and was trained on WebFace42M (non-commercial research): treated as "
            "non-commercial"
        ),
        commercial_use=False,
        notes="listed for licence checks; likeness does not run Arc2Face yet",
    ),
)

LICENCE_TAGS: dict[str, tuple[str, bool]] = {
    "creativeml-openrail-m": ("CreativeML OpenRAIL-M (use restrictions apply)", True),
    "openrail++": ("CreativeML OpenRAIL++-M (use restrictions apply)", True),
    "openrail": ("OpenRAIL (use restrictions apply)", True),
    "apache-2.0": ("Apache-2.0", True),
    "mit": ("MIT", True),
    "flux-1-dev-non-commercial-license": ("FLUX.1 [dev] Non-Commercial License", False),
    "cc-by-nc-4.0": ("CC BY-NC 4.0", False),
    "cc-by-nc-sa-4.0": ("CC BY-NC-SA 4.0", False),
}
"""Model-card licence tags likeness can read; any other tag (``other`` included) is unknown."""


def generation_model(name_or_repo: str) -> GenerationModel | None:
    """The table entry called ``name_or_repo`` (a table name or a repo id), or ``None``."""
    wanted = name_or_repo.strip().lower()
    for entry in GENERATION_MODELS:
        if wanted in (entry.name, entry.repo_id.lower(), *(alias.lower() for alias in entry.aliases)):
            return entry
    return None


@dataclass(frozen=True)
class ModelLicence:
    """The licence a located model folder is used under, and how that was decided."""

    name: str
    licence: str
    commercial_use: bool
    decided_by: str
    """``table <name>``, ``model card license: <tag>`` or ``unknown``."""
    entry: GenerationModel | None = None


_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---", re.DOTALL)


def card_licence_tags(folder: Path) -> list[str]:
    """The ``license`` and ``license_name`` values of ``folder/README.md``'s front matter."""
    try:
        text = (folder / "README.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    found = _FRONT_MATTER.match(text)
    if found is None:
        return []
    tags = []
    for line in found.group(1).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("license", "license_name") and value.strip():
            tags.append(value.strip().strip("'\"").lower())
    return tags


def repo_id_of(folder: Path) -> str | None:
    """The repo id of a Hugging Face cache snapshot folder (``…/models--org--name/snapshots/<rev>``)."""
    for part in folder.resolve().parts:
        if part.startswith("models--"):
            return part[len("models--") :].replace("--", "/")
    return None


def model_licence(folder: Path, *, requested: str | None = None) -> ModelLicence:
    """Which licence the model in ``folder`` is used under (see the module docstring)."""
    for candidate in (requested, repo_id_of(folder)):
        entry = generation_model(candidate) if candidate else None
        if entry is not None:
            return ModelLicence(entry.name, entry.licence, entry.commercial_use, f"table {entry.name}", entry)
    name = folder.name
    for tag in card_licence_tags(folder):
        if tag in LICENCE_TAGS:
            licence, commercial = LICENCE_TAGS[tag]
            return ModelLicence(name, licence, commercial, f"model card license: {tag}")
    return ModelLicence(name, UNKNOWN_LICENCE, False, "unknown")


def table_folder(home: Home, entry: GenerationModel) -> Path:
    return home.models_dir / DIFFUSERS_DIRNAME / entry.name


def hf_cache_snapshot(repo_id: str) -> Path | None:
    """The local snapshot folder of ``repo_id`` in the Hugging Face cache, or ``None`` (never downloads)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - LocalEntryNotFoundError, a bad repo id …: not in the cache
        return None


def how_to_get(home: Home, wanted: str, entry: GenerationModel | None) -> str:
    if entry is not None:
        return (
            f"on a connected machine download {entry.repo_id} (e.g. `hf download {entry.repo_id}`), then "
            f"copy the folder to {table_folder(home, entry)} or into this machine's Hugging Face cache; "
            "likeness never downloads models"
        )
    return (
        "pass --model a local diffusers folder (one with model_index.json), a table name "
        f"({', '.join(e.name for e in GENERATION_MODELS)}) or a repo id that is in the local "
        "Hugging Face cache"
    )


def locate_model(home: Home, wanted: str) -> Path:
    """The local folder for ``wanted`` (a folder, a table name or a cached repo id); :class:`ModelMissing`
    saying what to put where otherwise."""
    path = Path(wanted).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelMissing(
                f"--model {wanted}: is a file; a diffusers model is a folder with model_index.json",
                hint=how_to_get(home, wanted, None),
            )
        return path
    entry = generation_model(wanted)
    looked: list[str] = []
    if entry is not None:
        folder = table_folder(home, entry)
        looked.append(str(folder))
        if folder.is_dir():
            return folder
    repo_id = entry.repo_id if entry is not None else wanted
    if "/" in repo_id and not os.path.isabs(repo_id) and repo_id.count("/") == 1:
        looked.append(f"the Hugging Face cache ({repo_id})")
        snapshot = hf_cache_snapshot(repo_id)
        if snapshot is not None:
            return snapshot
    where = "; looked in: " + ", ".join(looked) if looked else " (no such folder)"
    raise ModelMissing(f"generation model {wanted!r} not found{where}", hint=how_to_get(home, wanted, entry))


_SKIPPED = {"README.md", ".gitattributes"}


def folder_sha256(folder: Path) -> str:
    """One sha256 over every file of a model folder: each file's relative path and content hash.

    Hashed on every load (weights included), like the other model files: a few seconds for a
    multi-GB model, measured in bench/generate.py ("load").
    """
    digest = hashlib.sha256()
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.name not in _SKIPPED and ".cache" not in p.parts
    )
    for path in files:
        file_hash = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                file_hash.update(chunk)
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_hash.hexdigest()}\n".encode())
    return digest.hexdigest()
