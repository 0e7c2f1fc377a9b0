"""Model files: the one table of every file the toolkit loads — where, sha256, licence, commercial use.

Two stores hold the files, and this module is the one place that lists them together:

* **dlib** files (:data:`MODELS`, below): shipped in the ``face_recognition_models`` wheel, each with a
  sha256 pinned here. Located with :func:`locate` (the data home's ``models/dlib/`` first, then the
  package) and checked with :func:`verify` before dlib loads them.
* **ONNX** files of the insightface backend (buffalo_l, inswapper_128, optional GFPGAN / CodeFormer):
  described by :data:`likeness.model_store.PACKAGES` (their layout is insightface's own, their hashes
  are recorded on first verified use because upstream publishes none). That table is not repeated here.

:func:`catalogue` joins the two into :class:`CatalogueEntry` rows; :func:`list_all`, :func:`verify_all`
and :func:`fetch` give their state on disk as :class:`ModelRow` (what ``likeness models`` prints).
Analyzers and swappers report the files they run as :class:`ModelUse` (``model_files()``), which the
licence check and the C2PA manifest read (:func:`likeness.licences.check_model_licences`,
:func:`likeness.licences.manifest_entries`).

Hashing is done on every load, not cached in a stamp file: on this machine the sha256 of the largest dlib
file (the 100 MB 68-point predictor) takes 0.05 s warm / 0.13 s cold, against 0.35–0.41 s for dlib to
load it. A stamp keyed on size and mtime would save that 0.05 s but can be fooled by a same-size rewrite
with a restored mtime, and adds state to keep consistent. The result of a check lives on the loaded object
(:class:`VerifiedModel`), never in module state. One exception: a landmark ``.dat`` whose trees are
loaded from cached arrays (:mod:`likeness.faces.shape_cache`) is not read at all, so it is hashed once
and then recognised by a stamp that includes its change time (which a restored mtime does not undo);
the arrays themselves are hashed on every load.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from likeness import model_store
from likeness.errors import ModelMissing, UsageError
from likeness.fsutil import sha256_file
from likeness.generation_models import GENERATION_MODELS, GenerationModel, hf_cache_snapshot, table_folder
from likeness.home import Home
from likeness.model_store import INVALID, MISMATCH, MISSING, VERIFIED, FileStatus, ModelFileSpec, ModelStore

FACE_RECOGNITION_MODELS = "face_recognition_models"
DLIB = "dlib"
"""The name of the dlib group on the command line (``likeness models verify dlib``)."""

_DLIB_NONCOMMERCIAL = (
    "dlib model file (Boost/BSL-1.0); trained on iBUG 300-W, whose licence excludes commercial use"
)


@dataclass(frozen=True)
class ModelFile:
    """One dlib model file and the facts needed to use it lawfully and safely."""

    name: str
    """Short key used in code and on the command line, e.g. ``dlib_landmarks_68``."""
    filename: str
    backend: str
    """Which face backend loads it: ``dlib``."""
    task: str
    """``detection``, ``landmarks-68``, ``landmarks-5``, ``recognition``."""
    sha256: str
    size: int
    licence: str
    commercial_use: bool
    source_url: str
    notes: str = ""

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]


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
)


def model(name: str) -> ModelFile:
    """The dlib table entry called ``name`` (ONNX files: :func:`likeness.model_store.model_file`)."""
    for entry in MODELS:
        if entry.name == name:
            return entry
    known = ", ".join(entry.name for entry in MODELS)
    raise UsageError(f"unknown dlib model {name!r}", hint=f"dlib models: {known}")


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
    """Where ``entry`` is looked for, in order: the data home's ``models/dlib/``, then the package."""
    paths: list[Path] = []
    if home is not None:
        paths.append(home.models_dir / DLIB / entry.filename)
    package_dir = face_recognition_models_dir()
    if package_dir is not None:
        paths.append(package_dir / entry.filename)
    return paths


def _how_to_get(entry: ModelFile, home: Home | None) -> str:
    where = f" or put the file into {home.models_dir / DLIB}" if home is not None else ""
    return f"run `pip install face_recognition_models==0.3.0`{where} (source: {entry.source_url})"


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


@dataclass(frozen=True)
class ModelUse:
    """A model file a loaded analyzer or swapper runs: what the licence check and the manifest need.

    ``file`` is the file name only (no folder), so a manifest does not disclose the operator's paths.
    """

    name: str
    file: str
    sha256: str | None
    licence: str
    commercial_use: bool
    state: str
    """How far the file is trusted: ``verified`` (pinned hash), ``recorded`` / ``recorded now`` (hash
    recorded on first verified use), ``checked`` (signature checked, record not writable)."""

    @classmethod
    def from_status(cls, status: FileStatus) -> ModelUse:
        return cls(
            name=status.spec.name,
            file=status.spec.filename,
            sha256=status.sha256,
            licence=status.spec.licence,
            commercial_use=status.spec.commercial_use,
            state=status.state,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "file": self.file,
            "sha256": self.sha256,
            "licence": self.licence,
            "commercial_use": self.commercial_use,
            "state": self.state,
        }

    def manifest_value(self) -> str:
        use = "commercial use allowed" if self.commercial_use else "non-commercial licence"
        return f"{self.file} sha256:{self.sha256} ({self.state}); {use}: {self.licence}"


@dataclass(frozen=True)
class VerifiedModel:
    """A dlib model file whose size and sha256 were checked against the table."""

    entry: ModelFile
    path: Path
    sha256: str
    hash_known: bool
    """True: the table pins every dlib hash (kept for callers that print it)."""

    def describe(self) -> str:
        return f"{self.entry.filename} sha256:{self.sha256[:12]}"

    def use(self) -> ModelUse:
        return ModelUse(
            name=self.entry.name,
            file=self.entry.filename,
            sha256=self.sha256,
            licence=self.entry.licence,
            commercial_use=self.entry.commercial_use,
            state=VERIFIED,
        )


def _inspect(entry: ModelFile, path: Path) -> tuple[int, str | None]:
    """``(size, sha256)``; the hash is skipped (``None``) when the size already differs."""
    size = path.stat().st_size
    return size, (_sha256_mapped(path) if size == entry.size else None)


def _sha256_mapped(path: Path) -> str:
    """The file's sha256 in one call over a memory map: hashlib releases the GIL for the whole file, so
    a check run in a thread (see :class:`likeness.faces.dlib_backend.DlibAnalyzer`) goes on while dlib,
    which holds the GIL, loads the files already checked."""
    import hashlib
    import mmap

    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            return sha256_file(path)
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return hashlib.sha256(mapped).hexdigest()


def verify(entry: ModelFile, path: Path, home: Home | None = None) -> VerifiedModel:
    """Check ``path`` against ``entry``'s size and sha256; raise :class:`ModelMissing` if they differ."""
    try:
        size, digest = _inspect(entry, path)
    except OSError as exc:
        raise ModelMissing(
            f"model file {path} ({entry.name}) cannot be read: {exc.strerror}",
            hint=_how_to_get(entry, home),
        ) from exc
    if digest != entry.sha256:
        found = f"{size} bytes" if digest is None else f"sha256 {digest[:16]}…"
        expected = f"{entry.size} bytes" if digest is None else f"sha256 {entry.sha256[:16]}…"
        raise ModelMissing(
            f"model file {path} ({entry.name}) is corrupt or not the expected file: found {found}, "
            f"expected {expected}; it will not be loaded",
            hint=f"delete it and reinstall: {_how_to_get(entry, home)}",
        )
    return VerifiedModel(entry=entry, path=path, sha256=digest, hash_known=True)


def locate_verified(name: str, home: Home | None = None) -> VerifiedModel:
    """Locate the model called ``name`` and verify its hash: the one call loaders make before loading."""
    entry = model(name)
    return verify(entry, locate(entry, home), home)


# ------------------------------------------------------------------------------ the combined table


@dataclass(frozen=True)
class CatalogueEntry:
    """One model file in the combined table, whichever store holds it."""

    name: str
    package: str
    """``dlib`` for the dlib files, else the ONNX package (``buffalo_l``, ``inswapper_128`` …)."""
    backend: str
    role: str
    filename: str
    licence: str
    commercial_use: bool
    source: str
    """Where it comes from: a URL, or what to do where upstream publishes no download."""
    dlib: ModelFile | None = field(default=None, repr=False, compare=False)
    onnx: ModelFileSpec | None = field(default=None, repr=False, compare=False)
    generation: GenerationModel | None = field(default=None, repr=False, compare=False)


def _from_dlib(entry: ModelFile) -> CatalogueEntry:
    return CatalogueEntry(
        name=entry.name,
        package=DLIB,
        backend=DLIB,
        role=entry.task,
        filename=entry.filename,
        licence=entry.licence,
        commercial_use=entry.commercial_use,
        source=f"face_recognition_models 0.3.0 (pip); {entry.source_url}",
        dlib=entry,
    )


def _from_spec(pack: model_store.ModelPackage, spec: ModelFileSpec) -> CatalogueEntry:
    return CatalogueEntry(
        name=spec.name,
        package=pack.name,
        backend="insightface",
        role=spec.role,
        filename=spec.filename,
        licence=spec.licence,
        commercial_use=spec.commercial_use,
        source=pack.url or pack.manual,
        onnx=spec,
    )


def _from_generation(entry: GenerationModel) -> CatalogueEntry:
    return CatalogueEntry(
        name=entry.name,
        package=entry.name,
        backend="diffusers",
        role=entry.role,
        filename=entry.repo_id,
        licence=entry.licence,
        commercial_use=entry.commercial_use,
        source=entry.source,
        generation=entry,
    )


def catalogue() -> list[CatalogueEntry]:
    """Every model the toolkit knows: the dlib files, the ONNX packages' files, the generation models
    (:mod:`likeness.generation_models`)."""
    rows = [_from_dlib(entry) for entry in MODELS]
    rows += [_from_spec(pack, spec) for pack in model_store.PACKAGES for spec in pack.files]
    rows += [_from_generation(entry) for entry in GENERATION_MODELS]
    return rows


def group_names() -> list[str]:
    """Names that stand for several files: ``dlib`` and the ONNX package names."""
    return [DLIB, *(pack.name for pack in model_store.PACKAGES)]


def select(names: Iterable[str] | None = None) -> list[CatalogueEntry]:
    """The entries called ``names`` (file names, ``dlib`` or package names); all when empty."""
    every = catalogue()
    wanted = list(names or ())
    if not wanted:
        return every
    chosen: list[CatalogueEntry] = []
    for name in wanted:
        found = [entry for entry in every if name in (entry.name, entry.package)]
        if not found:
            raise UsageError(
                f"unknown model {name!r}",
                hint=f"use a group ({', '.join(group_names())}) or a file name from `likeness models list`",
            )
        chosen.extend(entry for entry in found if entry not in chosen)
    return chosen


@dataclass(frozen=True)
class ModelRow:
    """One model file on disk: presence, hash state, size, licence (a line of ``likeness models list``)."""

    entry: CatalogueEntry
    path: Path
    """Where it was found, or where it is expected."""
    state: str
    """One of :mod:`likeness.model_store`'s states: missing, verified, recorded, recorded now, checked,
    unrecorded, mismatch, invalid."""
    sha256: str | None
    size: int | None
    detail: str
    how_to_get: str
    """How to get the file; for a file that must not be loaded, how to put that right."""

    @property
    def present(self) -> bool:
        return self.state != MISSING

    @property
    def usable(self) -> bool:
        return self.state in model_store.USABLE

    @property
    def unusable(self) -> bool:
        """Present but never to be loaded (hash mismatch, not the right kind of model, unreadable)."""
        return self.state in (MISMATCH, INVALID)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.entry.name,
            "package": self.entry.package,
            "backend": self.entry.backend,
            "role": self.entry.role,
            "file": str(self.path),
            "present": self.present,
            "state": self.state,
            "usable": self.usable,
            "sha256": self.sha256,
            "size": self.size,
            "licence": self.entry.licence,
            "commercial_use": self.entry.commercial_use,
            "detail": self.detail,
            "source": self.entry.source,
            "how_to_get": self.how_to_get,
        }


def _dlib_row(entry: CatalogueEntry, home: Home) -> ModelRow:
    dlib = entry.dlib
    assert dlib is not None
    paths = search_paths(dlib, home)
    how = _how_to_get(dlib, home)
    found = next((path for path in paths if path.is_file()), None)
    if found is None:
        looked = ", ".join(str(p) for p in paths)
        return ModelRow(entry, paths[0], MISSING, None, None, f"not found; looked in {looked}", how)
    try:
        size, digest = _inspect(dlib, found)
    except OSError as exc:
        return ModelRow(entry, found, INVALID, None, None, f"cannot be read ({exc.strerror})", how)
    if digest == dlib.sha256:
        return ModelRow(entry, found, VERIFIED, digest, size, "matches the pinned sha256", how)
    detail = (
        f"{size} bytes, expected {dlib.size}"
        if digest is None
        else f"sha256 {digest} differs from the pinned {dlib.sha256}"
    )
    return ModelRow(entry, found, MISMATCH, digest, size, detail, f"delete it and reinstall: {how}")


def _onnx_row(entry: CatalogueEntry, status: FileStatus, store: ModelStore) -> ModelRow:
    # For a file that must not be loaded, the same advice the loader gives (e.g. ``--re-record``).
    refused = store.missing_error(status).hint if status.state in (MISMATCH, INVALID) else None
    return ModelRow(
        entry,
        status.path,
        status.state,
        status.sha256,
        status.size,
        status.detail,
        refused or store.how_to_get(status.spec),
    )


def _generation_row(entry: CatalogueEntry, home: Home) -> ModelRow:
    """A generation model folder: present in the data home or the Hugging Face cache (not hashed here:
    the folder is hashed when a job loads it)."""
    generation = entry.generation
    assert generation is not None
    folder = table_folder(home, generation)
    how = (
        f"download {generation.repo_id} on a connected machine and copy the folder to {folder} "
        "(or into the Hugging Face cache); likeness never downloads models"
    )
    if folder.is_dir():
        return ModelRow(entry, folder, "present", None, None, "folder in the data home", how)
    snapshot = hf_cache_snapshot(generation.repo_id)
    if snapshot is not None:
        return ModelRow(entry, snapshot, "present", None, None, "in the Hugging Face cache", how)
    detail = "not in the data home nor the Hugging Face cache"
    return ModelRow(entry, folder, MISSING, None, None, detail, how)


def _rows(home: Home, names: Iterable[str] | None, *, record: bool, rerecord: bool) -> list[ModelRow]:
    store = ModelStore(home.models_dir)
    rows = []
    for entry in select(names):
        if entry.dlib is not None:
            rows.append(_dlib_row(entry, home))
        elif entry.generation is not None:
            rows.append(_generation_row(entry, home))
        else:
            assert entry.onnx is not None
            status = store.check(entry.onnx, record=record, rerecord=rerecord)
            rows.append(_onnx_row(entry, status, store))
    return rows


def list_all(home: Home, names: Iterable[str] | None = None) -> list[ModelRow]:
    """Every model file (or those named) with its state on disk; records nothing."""
    return _rows(home, names, record=False, rerecord=False)


def verify_all(home: Home, names: Iterable[str] | None = None, *, rerecord: bool = False) -> list[ModelRow]:
    """Check every present model file (or those named); ONNX files seen for the first time get their
    signature checked and their hash recorded. ``rerecord`` replaces a recorded ONNX hash that no longer
    matches (after the signature check); pinned hashes (all dlib files) are never replaced."""
    return _rows(home, names, record=True, rerecord=rerecord)


def stray_file_errors(home: Home) -> list[ModelMissing]:
    """Files in a pack folder that do not belong there (insightface would load them): one error each pack."""
    store = ModelStore(home.models_dir)
    errors = [store.stray_files_error(pack) for pack in model_store.PACKAGES]
    return [error for error in errors if error is not None]


def fetch(
    home: Home,
    name: str,
    *,
    url: str | None = None,
    progress: model_store.Progress | None = None,
    timeout: float = 30.0,
) -> list[ModelRow]:
    """Get the model files called ``name`` (a package, or any file of one) into the data home.

    ONNX packages are downloaded from upstream (or ``url``) with resume and checked
    (:func:`likeness.model_store.fetch`). The dlib files come with the ``face_recognition_models``
    package: nothing is downloaded; they are reported, or :class:`ModelMissing` says how to install them.
    """
    entries = select([name])
    generation = [entry for entry in entries if entry.generation is not None]
    if generation:
        row = _generation_row(generation[0], home)
        if not row.present:
            raise ModelMissing(
                f"generation model {row.entry.name} is not here; likeness does not download models",
                hint=row.how_to_get,
            )
        return [row]
    if any(entry.dlib is not None for entry in entries):
        rows = [_dlib_row(entry, home) for entry in entries if entry.dlib is not None]
        bad = [row for row in rows if not row.usable]
        if bad:
            raise ModelMissing(
                f"dlib model file(s) {', '.join(row.entry.filename for row in bad)} "
                f"{'are' if len(bad) > 1 else 'is'} {bad[0].state} ({bad[0].detail}); likeness does not "
                "download them: they come with the face_recognition_models package",
                hint=bad[0].how_to_get,
            )
        return rows
    packages = sorted({entry.package for entry in entries})
    if len(packages) != 1:
        raise UsageError(f"{name!r} names files of several packages: {', '.join(packages)}")
    store = ModelStore(home.models_dir)
    statuses = model_store.fetch(store, packages[0], url=url, progress=progress, timeout=timeout)
    by_name = {entry.name: entry for entry in catalogue()}
    return [_onnx_row(by_name[status.spec.name], status, store) for status in statuses]


def entries_for_licence(name: str) -> list[CatalogueEntry]:
    """The non-commercial files ``name`` stands for (a licence is recorded for each of them)."""
    entries = select([name])
    restricted = [entry for entry in entries if not entry.commercial_use]
    if not restricted:
        raise UsageError(
            f"{name} may be used commercially under its own licence ({entries[0].licence}); "
            "there is no licence to record for it"
        )
    return restricted


def unique_uses(uses: Sequence[ModelUse]) -> list[ModelUse]:
    """``uses`` without repeats (by name), in first-seen order."""
    seen: dict[str, ModelUse] = {}
    for use in uses:
        seen.setdefault(use.name, use)
    return list(seen.values())
