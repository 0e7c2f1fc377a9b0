"""Model files: what each is, where it comes from, its sha256, licence, and whether commercial use is allowed.

Every model file the toolkit loads is listed in :data:`MODELS`. A file is located with :func:`locate`
and checked with :func:`verify` before it is loaded; a missing file or one whose hash does not match
raises :class:`~likeness.errors.ModelMissing` naming the file, where it was looked for and how to get it.

Hashing is done on every load, not cached in a stamp file: on this machine the sha256 of the largest file
(the 100 MB 68-point predictor) takes 0.05 s warm / 0.13 s cold, against 0.35–0.41 s for dlib to
load it. A stamp keyed on size and mtime would save that 0.05 s but can be fooled by a same-size rewrite
with a restored mtime, and adds state to keep consistent. The result of a check lives on the loaded object
(:class:`VerifiedModel`), never in module state.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from likeness.errors import ModelMissing, UsageError
from likeness.home import Home

FACE_RECOGNITION_MODELS = "face_recognition_models"

_DLIB_NONCOMMERCIAL = (
    "dlib model file (Boost/BSL-1.0); trained on iBUG 300-W, whose licence excludes commercial use"
)
_INSIGHTFACE_LICENCE = (
    "insightface pretrained models: non-commercial research use only (code MIT; models and training data "
    "are not licensed for commercial use)"
)


@dataclass(frozen=True)
class ModelFile:
    """One model file and the facts needed to use it lawfully and safely."""

    name: str
    """Short key used in code and on the command line, e.g. ``dlib_landmarks_68``."""
    filename: str
    backend: str
    """Which face backend loads it: ``dlib`` or ``insightface``."""
    task: str
    """``detection``, ``landmarks-68``, ``landmarks-5``, ``landmarks-106``, ``recognition``, ``swap`` …"""
    sha256: str | None
    """Known-good hash; ``None`` where upstream publishes none and none has been recorded yet."""
    size: int | None
    licence: str
    commercial_use: bool
    source_url: str
    notes: str = ""
    pack: str | None = None
    """Sub-folder for files that come as a pack (insightface's ``models/<pack>/`` layout)."""

    @property
    def short_hash(self) -> str:
        return self.sha256[:12] if self.sha256 else "unrecorded"


MODELS: tuple[ModelFile, ...] = (
    ModelFile(
        name="dlib_landmarks_68",
        filename="shape_predictor_68_face_landmarks.dat",
        backend="dlib",
        task="landmarks-68",
        sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
        size=99_693_937,
        licence=_DLIB_NONCOMMERCIAL,
        commercial_use=False,
        source_url="http://dlib.net/files/shape_predictor_68_face_landmarks.dat.bz2",
        notes="Shipped in the face_recognition_models wheel. Drives the classical swap's warp and mask.",
    ),
    ModelFile(
        name="dlib_landmarks_5",
        filename="shape_predictor_5_face_landmarks.dat",
        backend="dlib",
        task="landmarks-5",
        sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
        size=9_150_489,
        licence="CC0 1.0 / public domain (dlib's own 5-point dataset)",
        commercial_use=True,
        source_url="http://dlib.net/files/shape_predictor_5_face_landmarks.dat.bz2",
        notes="Shipped in face_recognition_models. Aligns the face chip for the ResNet embedding.",
    ),
    ModelFile(
        name="dlib_resnet_v1",
        filename="dlib_face_recognition_resnet_model_v1.dat",
        backend="dlib",
        task="recognition",
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        size=22_466_066,
        licence="CC0 1.0 / public domain",
        commercial_use=True,
        source_url="http://dlib.net/files/dlib_face_recognition_resnet_model_v1.dat.bz2",
        notes="Shipped in face_recognition_models. 128-D embeddings (embedding space 'dlib_resnet_v1').",
    ),
    ModelFile(
        name="dlib_mmod_detector",
        filename="mmod_human_face_detector.dat",
        backend="dlib",
        task="detection",
        sha256="4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
        size=729_940,
        licence="CC0 1.0 / public domain",
        commercial_use=True,
        source_url="http://dlib.net/files/mmod_human_face_detector.dat.bz2",
        notes="CNN detector; 10-20 s per image on a CPU, so not used by default (HOG is built into dlib).",
    ),
    ModelFile(
        name="insightface_det_10g",
        filename="det_10g.onnx",
        backend="insightface",
        task="detection",
        sha256=None,
        size=None,
        licence=_INSIGHTFACE_LICENCE,
        commercial_use=False,
        source_url="https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
        notes="SCRFD-10GF detector from the buffalo_l pack. Upstream publishes no sha256: record one on "
        "first verified use.",
        pack="buffalo_l",
    ),
    ModelFile(
        name="insightface_landmarks_106",
        filename="2d106det.onnx",
        backend="insightface",
        task="landmarks-106",
        sha256=None,
        size=None,
        licence=_INSIGHTFACE_LICENCE,
        commercial_use=False,
        source_url="https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
        notes="2D 106-point landmarks from buffalo_l. No upstream sha256.",
        pack="buffalo_l",
    ),
    ModelFile(
        name="insightface_landmarks_3d68",
        filename="1k3d68.onnx",
        backend="insightface",
        task="landmarks-3d68",
        sha256=None,
        size=None,
        licence=_INSIGHTFACE_LICENCE,
        commercial_use=False,
        source_url="https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
        notes="3D 68-point landmarks / pose from buffalo_l. No upstream sha256.",
        pack="buffalo_l",
    ),
    ModelFile(
        name="insightface_genderage",
        filename="genderage.onnx",
        backend="insightface",
        task="attributes",
        sha256=None,
        size=None,
        licence=_INSIGHTFACE_LICENCE,
        commercial_use=False,
        source_url="https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
        notes="Gender/age head from buffalo_l; likeness does not need it (FaceAnalysis loads it if present). "
        "No upstream sha256.",
        pack="buffalo_l",
    ),
    ModelFile(
        name="insightface_arcface_r50",
        filename="w600k_r50.onnx",
        backend="insightface",
        task="recognition",
        sha256=None,
        size=None,
        licence=_INSIGHTFACE_LICENCE,
        commercial_use=False,
        source_url="https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
        notes="ArcFace ResNet-50 trained on WebFace600K; 512-D embeddings. No upstream sha256.",
        pack="buffalo_l",
    ),
    ModelFile(
        name="inswapper_128",
        filename="inswapper_128.onnx",
        backend="insightface",
        task="swap",
        sha256=None,
        size=None,
        licence=_INSIGHTFACE_LICENCE,
        commercial_use=False,
        source_url="https://github.com/deepinsight/insightface/tree/master/examples/in_swapper",
        notes="128×128 face swapper. Upstream no longer links a public download and publishes no sha256; "
        "obtain it from the insightface authors and record its hash on first verified use. Keep it outside "
        "the buffalo_l folder (insightface's FaceAnalysis crashes on it).",
    ),
)


def model(name: str) -> ModelFile:
    """The table entry called ``name``."""
    for entry in MODELS:
        if entry.name == name:
            return entry
    known = ", ".join(entry.name for entry in MODELS)
    raise UsageError(f"unknown model {name!r}", hint=f"known models: {known}")


def face_recognition_models_dir() -> Path | None:
    """The ``models/`` folder of the installed ``face_recognition_models`` package, or ``None``.

    Found through the import system's metadata only: importing the package runs ``pkg_resources``,
    which is deprecated and slow.
    """
    try:
        spec = importlib.util.find_spec(FACE_RECOGNITION_MODELS)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "models"
        if folder.is_dir():
            return folder
    return None


def search_paths(entry: ModelFile, home: Home | None) -> list[Path]:
    """Where ``entry`` is looked for, in order: the data home first, then the package that ships it."""
    paths: list[Path] = []
    if home is not None:
        folder = home.models_dir / entry.pack if entry.pack else home.models_dir / entry.backend
        paths.append(folder / entry.filename)
    if entry.backend == "dlib":
        package_dir = face_recognition_models_dir()
        if package_dir is not None:
            paths.append(package_dir / entry.filename)
    return paths


def _how_to_get(entry: ModelFile, home: Home | None) -> str:
    if entry.backend == "dlib":
        where = f" or put the file into {home.models_dir / 'dlib'}" if home is not None else ""
        return f"run `pip install face_recognition_models==0.3.0`{where} (source: {entry.source_url})"
    folder = home.models_dir / (entry.pack or "") if home is not None else Path("<home>/models")
    return f"download it from {entry.source_url} and put {entry.filename} into {folder}"


def locate(entry: ModelFile, home: Home | None = None) -> Path:
    """The first existing path for ``entry``, else :class:`ModelMissing` saying where it looked."""
    paths = search_paths(entry, home)
    for path in paths:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in paths) or "nowhere (face_recognition_models is not installed)"
    raise ModelMissing(
        f"model file {entry.filename} ({entry.name}) not found; looked in: {looked}",
        hint=_how_to_get(entry, home),
    )


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass(frozen=True)
class VerifiedModel:
    """A model file whose hash was checked against the table (or recorded, where the table has none)."""

    entry: ModelFile
    path: Path
    sha256: str
    hash_known: bool
    """False when the table holds no sha256 for this file: the hash was computed, not compared."""

    def describe(self) -> str:
        return f"{self.entry.filename} sha256:{self.sha256[:12]}"


def verify(entry: ModelFile, path: Path, home: Home | None = None) -> VerifiedModel:
    """Check ``path`` against ``entry``'s size and sha256; raise :class:`ModelMissing` if they differ."""
    try:
        size = path.stat().st_size
        digest = file_sha256(path) if entry.size is None or size == entry.size else None
    except OSError as exc:
        raise ModelMissing(
            f"model file {path} ({entry.name}) cannot be read: {exc.strerror}",
            hint=_how_to_get(entry, home),
        ) from exc
    if digest is None or (entry.sha256 is not None and digest != entry.sha256):
        found = f"{size} bytes" if digest is None else f"sha256 {digest[:16]}…"
        expected = f"{entry.size} bytes" if digest is None else f"sha256 {entry.sha256[:16]}…"  # type: ignore[index]
        raise ModelMissing(
            f"model file {path} ({entry.name}) is corrupt or not the expected file: found {found}, "
            f"expected {expected}; it will not be loaded",
            hint=f"delete it and reinstall: {_how_to_get(entry, home)}",
        )
    return VerifiedModel(entry=entry, path=path, sha256=digest, hash_known=entry.sha256 is not None)


def locate_verified(name: str, home: Home | None = None) -> VerifiedModel:
    """Locate the model called ``name`` and verify its hash: the one call loaders make before loading."""
    entry = model(name)
    return verify(entry, locate(entry, home), home)
