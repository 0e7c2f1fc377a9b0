"""The ONNX model files of the insightface backend: where they live, their hashes, fetching them.

:data:`PACKAGES` is the one table of the ONNX files (licence and commercial use included);
:mod:`likeness.models` lists them together with the dlib files, without repeating them.

Layout — insightface's own ``<root>/models/`` folder, so ``~/.insightface/models`` works as a models
directory as it is, and likeness's is ``<data home>/models``::

    <models_dir>/buffalo_l/det_10g.onnx      SCRFD detector            (required)
    <models_dir>/buffalo_l/w600k_r50.onnx    ArcFace recogniser        (required)
    <models_dir>/buffalo_l/2d106det.onnx     106-point landmarks       (optional: better masks)
    <models_dir>/buffalo_l/1k3d68.onnx       unused; verified if present (FaceAnalysis loads it)
    <models_dir>/buffalo_l/genderage.onnx    unused; verified if present (FaceAnalysis loads it)
    <models_dir>/inswapper_128.onnx          swapper (where insightface's own downloader put it)
    <models_dir>/restore/gfpgan_1.4.onnx     optional face restoration
    <models_dir>/restore/codeformer.onnx     optional face restoration
    <models_dir>/likeness-sha256.json        hashes recorded on first verified use

Trust. insightface publishes no sha256 for any of these files, so a hash can only be pinned in code
(:attr:`ModelFileSpec.sha256`) once somebody has verified one; until then the rule is *record on first
verified use*: the first time a file is used (or ``likeness models verify`` / ``fetch`` sees it) it must
parse as ONNX and show the input/output signature of its role (a detector with keypoint outputs, a
112×112→512 recogniser, an inswapper with a 512×512 ``emap`` as last initializer, …); then its sha256 is
written to the record file. From then on a file whose sha256 differs from the pinned or recorded one is
refused — never opened by onnxruntime — with :class:`~likeness.errors.ModelMissing`. Replacing a
file on purpose takes an explicit ``verify --re-record``; a pinned hash can never be overridden.
Every ``.onnx`` file in the buffalo_l folder is checked, not only the ones likeness uses, because
insightface's ``FaceAnalysis`` opens all of them; an unknown one is refused.

What this does not protect against: a file that was already tampered with when it was first recorded
(the record says "recorded", not "verified", so ``likeness models list`` shows the difference), and a
process that can rewrite both the model and the record file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from likeness.errors import ModelMissing, UsageError
from likeness.fsutil import sha256_file_size

RECORD_FILENAME = "likeness-sha256.json"
DOWNLOADS_DIRNAME = ".downloads"
CHUNK = 1 << 20

Progress = Callable[[str, float], None]

_INSIGHTFACE_LICENCE = (
    "insightface pretrained models: non-commercial research use only (the code is MIT; the models and "
    "their training data are not licensed for commercial use)"
)

# Roles, and what insightface routes each to (model_zoo.ModelRouter's shape rules).
DETECTION = "detection"
RECOGNITION = "recognition"
LANDMARK_2D_106 = "landmark_2d_106"
LANDMARK_3D_68 = "landmark_3d_68"
GENDERAGE = "genderage"
SWAP = "swap"
RESTORE = "restore"


@dataclass(frozen=True)
class ModelFileSpec:
    """One model file: where it goes, what it must look like, whose it is."""

    name: str
    """Key used on the command line and in the model table, e.g. ``insightface_det_10g``."""
    relpath: str
    """Path under the models directory, POSIX style."""
    role: str
    package: str
    used: bool = True
    """False for files of a pack that likeness does not use (not extracted by ``fetch``)."""
    required: bool = True
    """False where the package works without it (106 landmarks: masks fall back to the 5 points)."""
    sha256: str | None = None
    """Pinned known-good hash; ``None`` where upstream publishes none (then: record on first verified use)."""
    licence: str = _INSIGHTFACE_LICENCE
    commercial_use: bool = False
    notes: str = ""

    @property
    def filename(self) -> str:
        return PurePosixPath(self.relpath).name


@dataclass(frozen=True)
class ModelPackage:
    """What ``likeness models fetch NAME`` gets: one download holding one or more files."""

    name: str
    description: str
    files: tuple[ModelFileSpec, ...]
    url: str | None
    """Upstream download; ``None`` where upstream publishes none (then :attr:`manual` says what to do)."""
    archive: str | None = None
    """``"zip"`` when :attr:`url` is an archive holding the files, ``None`` for a single file."""
    archive_sha256: str | None = None
    folder: str | None = None
    """A folder whose every ``.onnx`` file gets loaded (insightface's pack folder), checked for strangers."""
    manual: str = ""


def _buffalo(filename: str, name: str, role: str, *, used: bool, required: bool, notes: str) -> ModelFileSpec:
    return ModelFileSpec(
        name=name,
        relpath=f"buffalo_l/{filename}",
        role=role,
        package="buffalo_l",
        used=used,
        required=required,
        notes=notes,
    )


BUFFALO_L = ModelPackage(
    name="buffalo_l",
    description="insightface buffalo_l: SCRFD-10GF detector, ArcFace R50 (WebFace600K), 106 landmarks",
    files=(
        _buffalo(
            "det_10g.onnx", "insightface_det_10g", DETECTION, used=True, required=True, notes="SCRFD-10GF"
        ),
        _buffalo(
            "w600k_r50.onnx",
            "insightface_arcface_r50",
            RECOGNITION,
            used=True,
            required=True,
            notes="ArcFace ResNet-50 on WebFace600K, 512-D; inswapper_128 expects these embeddings",
        ),
        _buffalo(
            "2d106det.onnx",
            "insightface_landmarks_106",
            LANDMARK_2D_106,
            used=True,
            required=False,
            notes="106 landmarks: the swap mask follows the face outline with them",
        ),
        _buffalo(
            "1k3d68.onnx",
            "insightface_landmarks_3d68",
            LANDMARK_3D_68,
            used=False,
            required=False,
            notes="not used; not extracted by fetch; verified if present because FaceAnalysis opens it",
        ),
        _buffalo(
            "genderage.onnx",
            "insightface_genderage",
            GENDERAGE,
            used=False,
            required=False,
            notes="not used (likeness infers no gender or age); verified if present: FaceAnalysis opens it",
        ),
    ),
    # The URL insightface 2.1's own downloader uses (utils/storage.py, release tag "model-zoo").
    url="https://github.com/deepinsight/insightface/releases/download/model-zoo/buffalo_l.zip",
    archive="zip",
    folder="buffalo_l",
)

INSWAPPER_128 = ModelPackage(
    name="inswapper_128",
    description="insightface inswapper_128: 128×128 one-shot face swapper",
    files=(
        ModelFileSpec(
            name="inswapper_128",
            relpath="inswapper_128.onnx",
            role=SWAP,
            package="inswapper_128",
            notes="keep it outside the buffalo_l folder (FaceAnalysis crashes on it there)",
        ),
    ),
    url=None,
    manual=(
        "insightface withdrew the public download of inswapper_128.onnx in May 2023 and publishes no hash "
        "(deepinsight/insightface#2294); obtain a copy you are licensed to use (non-commercial research only)"
    ),
)

GFPGAN_14 = ModelPackage(
    name="gfpgan_1.4",
    description="GFPGAN v1.4 face restoration, ONNX export (512×512 in and out, values in [-1, 1])",
    files=(
        ModelFileSpec(
            name="gfpgan_1.4",
            relpath="restore/gfpgan_1.4.onnx",
            role=RESTORE,
            package="gfpgan_1.4",
            licence=(
                "GFPGAN: Apache-2.0, but it includes StyleGAN2 parts under the NVIDIA Source Code Licence "
                "(non-commercial); treated as non-commercial"
            ),
        ),
    ),
    url=None,
    manual=(
        "TencentARC publishes GFPGANv1.4.pth (PyTorch), not ONNX; export it to ONNX with one 512×512 input "
        "in [-1, 1], or use an export you trust"
    ),
)

CODEFORMER = ModelPackage(
    name="codeformer",
    description="CodeFormer face restoration, ONNX export (512×512 image input plus a fidelity weight)",
    files=(
        ModelFileSpec(
            name="codeformer",
            relpath="restore/codeformer.onnx",
            role=RESTORE,
            package="codeformer",
            licence="CodeFormer: S-Lab License 1.0 (non-commercial use only)",
        ),
    ),
    url=None,
    manual="sczhou/CodeFormer publishes PyTorch weights only; export to ONNX (512×512 input + fidelity)",
)

PACKAGES: tuple[ModelPackage, ...] = (BUFFALO_L, INSWAPPER_128, GFPGAN_14, CODEFORMER)
RESTORERS: tuple[ModelPackage, ...] = (GFPGAN_14, CODEFORMER)


def package(name: str) -> ModelPackage:
    for entry in PACKAGES:
        if entry.name == name:
            return entry
    raise UsageError(
        f"unknown model package {name!r}", hint=f"known packages: {', '.join(p.name for p in PACKAGES)}"
    )


def model_file(name: str) -> ModelFileSpec:
    for entry in PACKAGES:
        for spec in entry.files:
            if spec.name == name:
                return spec
    known = ", ".join(spec.name for entry in PACKAGES for spec in entry.files)
    raise UsageError(f"unknown model file {name!r}", hint=f"known model files: {known}")


def _specs(names: Iterable[str] | None) -> list[ModelFileSpec]:
    """Model files named by package or file name (all when ``names`` is empty or ``None``)."""
    if not names:
        return [spec for entry in PACKAGES for spec in entry.files]
    specs: list[ModelFileSpec] = []
    for name in names:
        found = [entry for entry in PACKAGES if entry.name == name]
        specs.extend(found[0].files if found else [model_file(name)])
    return specs


# ---------------------------------------------------------------------------------------------- signatures


def _dims(value_info: object) -> tuple[int | None, ...]:
    dims = value_info.type.tensor_type.shape.dim  # type: ignore[attr-defined]
    return tuple(int(d.dim_value) if d.dim_value > 0 else None for d in dims)


def _matches(shape: tuple[int | None, ...], expected: tuple[int | None, ...]) -> bool:
    """``expected`` None entries match anything; a free dimension in ``shape`` matches anything too."""
    return len(shape) == len(expected) and all(
        e is None or s is None or s == e for s, e in zip(shape, expected, strict=False)
    )


def signature_problem(role: str, model: object) -> str | None:
    """What is wrong with ``model`` (an ``onnx.ModelProto``) for ``role``; ``None`` when it fits."""
    graph = model.graph  # type: ignore[attr-defined]
    initializer_names = {init.name for init in graph.initializer}
    inputs = [_dims(v) for v in graph.input if v.name not in initializer_names]
    outputs = [_dims(v) for v in graph.output]
    shown = f"inputs {inputs}, outputs {outputs}"
    if not inputs:
        return "the graph has no inputs"
    first = inputs[0]
    if role == DETECTION:
        if len(outputs) not in (9, 15) or len(first) != 4 or first[1] not in (3, None):
            return (
                f"expected an SCRFD detector with keypoints (1 image input, 9 or 15 outputs); found {shown}"
            )
        return None
    single = {
        RECOGNITION: ((None, 3, None, None), (None, 512)),
        LANDMARK_2D_106: ((None, 3, 192, 192), (None, 212)),
        LANDMARK_3D_68: ((None, 3, 192, 192), (None, 3309)),
        GENDERAGE: ((None, 3, 96, 96), (None, 3)),
    }
    if role in single:
        want_in, want_out = single[role]
        ok = (
            len(inputs) == 1
            and len(outputs) == 1
            and _matches(first, want_in)
            and _matches(outputs[0], want_out)
        )
        if ok and role == RECOGNITION:
            side = first[2]
            ok = side is not None and side == first[3] and side >= 112 and side % 16 == 0
        if not ok:
            return f"expected {role}: input {want_in}, output {want_out}; found {shown}"
        return None
    if role == SWAP:
        ok = (
            len(inputs) == 2
            and len(outputs) == 1
            and _matches(first, (None, 3, 128, 128))
            and _matches(inputs[1], (None, 512))
            and _matches(outputs[0], (None, 3, 128, 128))
        )
        if not ok:
            return (
                f"expected an inswapper: inputs [1,3,128,128], [1,512], output [1,3,128,128]; found {shown}"
            )
        last = graph.initializer[-1] if graph.initializer else None
        if last is None or tuple(last.dims) != (512, 512):
            found = f"{last.name} {tuple(last.dims)}" if last is not None else "none"
            return (
                f"expected the 512×512 emap as the graph's last initializer; the last initializer is {found}"
            )
        return None
    if role == RESTORE:
        if len(inputs) not in (1, 2) or not _matches(first, (None, 3, 512, 512)) or len(outputs) < 1:
            return f"expected a face restorer: image input [1,3,512,512], image output; found {shown}"
        if not _matches(outputs[0], (None, 3, 512, 512)):
            return f"expected a face restorer whose first output is [1,3,512,512]; found {shown}"
        return None
    raise ValueError(f"unknown role {role!r}")


def _parse(data: bytes | Path) -> object:
    import onnx

    if isinstance(data, Path):
        return onnx.load_model(str(data), load_external_data=False)
    return onnx.load_model_from_string(data)


# ------------------------------------------------------------------------------------------------ statuses

MISSING = "missing"
VERIFIED = "verified"
RECORDED = "recorded"
RECORDED_NOW = "recorded now"
CHECKED = "checked"
UNRECORDED = "unrecorded"
MISMATCH = "mismatch"
INVALID = "invalid"
USABLE = (VERIFIED, RECORDED, RECORDED_NOW, CHECKED)


@dataclass(frozen=True)
class FileStatus:
    """What one model file on disk is, as far as trust goes.

    ``state``: ``missing``; ``verified`` (matches the pinned upstream hash); ``recorded`` (matches the hash
    recorded on its first verified use); ``recorded now`` (first use: signature checked, hash recorded);
    ``checked`` (first use: signature checked, but the record could not be written, e.g. a read-only
    models directory: usable now, checked again next time);
    ``unrecorded`` (present, not yet checked); ``mismatch`` (differs from the pinned or recorded hash:
    never loaded); ``invalid`` (not the kind of model its role needs: never loaded or recorded).
    """

    spec: ModelFileSpec
    path: Path
    state: str
    sha256: str | None = None
    size: int | None = None
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.state in USABLE

    @property
    def present(self) -> bool:
        return self.state != MISSING

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.spec.name,
            "package": self.spec.package,
            "file": str(self.path),
            "role": self.spec.role,
            "present": self.present,
            "state": self.state,
            "usable": self.usable,
            "sha256": self.sha256,
            "size": self.size,
            "licence": self.spec.licence,
            "commercial_use": self.spec.commercial_use,
            "detail": self.detail,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------------- store


@dataclass(frozen=True)
class ModelStore:
    """A models directory in insightface's layout plus the record of hashes taken on first use.

    ``models_dir`` is what insightface calls ``<root>/models`` (``~/.insightface/models``); likeness's
    is ``Home.models_dir``.
    """

    models_dir: Path
    record_path: Path | None = None
    """Where recorded hashes are kept; default ``<models_dir>/likeness-sha256.json``."""

    @property
    def record_file(self) -> Path:
        return self.record_path or self.models_dir / RECORD_FILENAME

    def path(self, spec: ModelFileSpec) -> Path:
        return self.models_dir / PurePosixPath(spec.relpath)

    # -- the record ------------------------------------------------------------------------------------

    def recorded(self) -> dict[str, dict[str, object]]:
        """Recorded hashes by relative path. An unreadable record is an error, never silently reset."""
        try:
            text = self.record_file.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except OSError as exc:
            raise ModelMissing(
                f"{self.record_file}: the record of model hashes cannot be read ({exc.strerror})",
                hint="check its permissions",
            ) from exc
        try:
            data = json.loads(text)
            files = data["files"]
            if not isinstance(files, dict):
                raise TypeError("files is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelMissing(
                f"{self.record_file}: the record of model hashes is damaged ({exc}); no model is loaded "
                "while it is",
                hint="restore it from a backup, or delete it to record every model file anew on next use",
            ) from exc
        return files

    def _write_record(self, relpath: str, entry: dict[str, object]) -> None:
        files = self.recorded()
        files[relpath] = entry
        self.record_file.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"version": 1, "files": dict(sorted(files.items()))}, indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=".sha256-", dir=self.record_file.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
            os.replace(tmp, self.record_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- checking --------------------------------------------------------------------------------------

    def check(self, spec: ModelFileSpec, *, record: bool = False, rerecord: bool = False) -> FileStatus:
        """Hash ``spec``'s file and compare it; with ``record``, record a first verified use."""
        path = self.path(spec)
        if not path.is_file():
            return FileStatus(spec, path, MISSING, detail="not found")
        try:
            digest, size = sha256_file_size(path)
        except OSError as exc:
            return FileStatus(spec, path, INVALID, detail=f"cannot be read ({exc.strerror})")
        return self._judge(spec, path, digest, size, lambda: _parse(path), record=record, rerecord=rerecord)

    def read_verified(self, spec: ModelFileSpec, *, record: bool = True) -> tuple[bytes, FileStatus]:
        """The file's bytes, hashed as read, so what is checked is exactly what gets loaded.

        Raises :class:`ModelMissing` unless the file is usable.
        """
        path = self.path(spec)
        if not path.is_file():
            raise self.missing_error(FileStatus(spec, path, MISSING, detail="not found"))
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        status = self._judge(
            spec, path, digest, len(data), lambda: _parse(data), record=record, rerecord=False
        )
        if not status.usable:
            raise self.missing_error(status)
        return data, status

    def _judge(
        self,
        spec: ModelFileSpec,
        path: Path,
        digest: str,
        size: int,
        parse: Callable[[], object],
        *,
        record: bool,
        rerecord: bool,
    ) -> FileStatus:
        if spec.sha256 is not None:
            if digest == spec.sha256:
                return FileStatus(spec, path, VERIFIED, digest, size, "matches the pinned sha256")
            return FileStatus(
                spec, path, MISMATCH, digest, size, f"sha256 {digest} differs from the pinned {spec.sha256}"
            )
        previous = self.recorded().get(spec.relpath)
        if previous is not None and previous.get("sha256") == digest:
            return FileStatus(
                spec, path, RECORDED, digest, size, f"matches the hash recorded {previous.get('recorded_at')}"
            )
        if previous is not None and not rerecord:
            return FileStatus(
                spec,
                path,
                MISMATCH,
                digest,
                size,
                f"sha256 {digest} differs from the {previous.get('sha256')} "
                f"recorded {previous.get('recorded_at')}",
            )
        if not (record or rerecord):
            return FileStatus(spec, path, UNRECORDED, digest, size, "no hash recorded yet")
        try:
            model = parse()
        except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others
            return FileStatus(spec, path, INVALID, digest, size, f"not a readable ONNX model ({exc})")
        problem = signature_problem(spec.role, model)
        if problem is not None:
            return FileStatus(spec, path, INVALID, digest, size, problem)
        replaced = f"; replaced the record {previous.get('sha256')}" if previous is not None else ""
        try:
            self._write_record(
                spec.relpath,
                {
                    "name": spec.name,
                    "sha256": digest,
                    "size": size,
                    "recorded_at": _now(),
                    "how": f"first verified use: ONNX signature of a {spec.role} model checked{replaced}",
                },
            )
        except OSError as exc:
            return FileStatus(
                spec,
                path,
                CHECKED,
                digest,
                size,
                f"signature checked; the hash could not be recorded in {self.record_file} ({exc})",
            )
        return FileStatus(
            spec, path, RECORDED_NOW, digest, size, f"first use: signature checked, hash recorded{replaced}"
        )

    # -- errors ----------------------------------------------------------------------------------------

    def how_to_get(self, spec: ModelFileSpec) -> str:
        entry = package(spec.package)
        if entry.url is not None:
            return f"run `likeness models fetch {entry.name}` (downloads {entry.url})"
        return f"{entry.manual}; put it at {self.path(spec)}, then run `likeness models verify {entry.name}`"

    def missing_error(self, status: FileStatus) -> ModelMissing:
        spec, path = status.spec, status.path
        what = f"{spec.filename} ({spec.name}, the {spec.role} model of {spec.package})"
        if status.state == MISSING:
            return ModelMissing(f"model file {what} not found at {path}", hint=self.how_to_get(spec))
        if status.state == MISMATCH:
            return ModelMissing(
                f"model file {path} ({spec.name}) is not the file that was verified before: {status.detail}; "
                "it is not loaded",
                hint=(
                    f"restore the original file ({self.how_to_get(spec)}); if you replaced it on purpose and "
                    f"trust the new one, run `likeness models verify {spec.name} --re-record`"
                    if spec.sha256 is None
                    else f"delete it and get the original: {self.how_to_get(spec)}"
                ),
            )
        if status.state == INVALID:
            return ModelMissing(
                f"model file {path} ({spec.name}) cannot be used: {status.detail}; it is not loaded",
                hint=f"delete it and get the right file: {self.how_to_get(spec)}",
            )
        return ModelMissing(f"model file {path} ({spec.name}) is {status.state}: {status.detail}")

    def stray_files_error(self, entry: ModelPackage) -> ModelMissing | None:
        """The error for files in ``entry``'s pack folder that are not part of it, if there are any.

        insightface opens every ``.onnx`` file in the folder, and a ``manifest.json`` (its "model package
        V2") would change which files it opens and how it routes them.
        """
        if entry.folder is None:
            return None
        folder = self.models_dir / PurePosixPath(entry.folder)
        known = {spec.filename for spec in entry.files}
        found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        strangers = [
            name
            for name in found
            if (name.endswith(".onnx") or name == "manifest.json") and name not in known
        ]
        if not strangers:
            return None
        return ModelMissing(
            f"unexpected file(s) {', '.join(strangers)} in {folder}: insightface loads every "
            f".onnx file (and a manifest.json) in that folder; these are not part of {entry.name}",
            hint=(
                f"move them out of {folder} (inswapper_128.onnx belongs in {self.models_dir}); "
                f"{entry.name} holds {', '.join(sorted(known))}"
            ),
        )

    def require(self, entry: ModelPackage) -> dict[str, FileStatus]:
        """Check (and on first use record) every file of ``entry`` before anything loads them.

        Returns the usable files by role. Raises :class:`ModelMissing` for a missing required file, any
        present file that is not usable, or an unknown ``.onnx`` file in the package's folder.
        """
        problem = self.stray_files_error(entry)
        if problem is not None:
            raise problem
        usable: dict[str, FileStatus] = {}
        missing: list[FileStatus] = []
        for spec in entry.files:
            status = self.check(spec, record=True)
            if status.state == MISSING:
                if spec.required:
                    missing.append(status)
                continue
            if not status.usable:
                raise self.missing_error(status)
            usable[spec.role] = status
        if len(missing) == 1:
            raise self.missing_error(missing[0])
        if missing:
            names = ", ".join(f"{status.spec.filename} ({status.spec.role})" for status in missing)
            where = ", ".join(str(status.path) for status in missing)
            raise ModelMissing(
                f"model files of {entry.name} not found: {names}; looked for {where}",
                hint=self.how_to_get(missing[0].spec),
            )
        return usable


# -------------------------------------------------------------------------------------- list/verify/fetch


def list_models(store: ModelStore, names: Sequence[str] | None = None) -> list[FileStatus]:
    """Every model file (or those named) with its state; records nothing."""
    return [store.check(spec, record=False) for spec in _specs(names)]


def verify_models(
    store: ModelStore, names: Sequence[str] | None = None, *, rerecord: bool = False
) -> list[FileStatus]:
    """Check every present model file (or those named); record first verified uses.

    ``rerecord`` replaces a recorded hash that no longer matches (after the signature check) — for a
    file replaced on purpose. Pinned hashes are never replaced.
    """
    return [store.check(spec, record=True, rerecord=rerecord) for spec in _specs(names)]


@dataclass
class _Download:
    url: str
    part: Path
    resumed_from: int = 0
    received: int = 0
    notes: list[str] = field(default_factory=list)


def _download(url: str, part: Path, *, progress: Progress, timeout: float) -> _Download:
    """Download ``url`` into ``part``, resuming from its current size with an HTTP Range request."""
    import urllib.error
    import urllib.request

    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    result = _Download(url=url, part=part, resumed_from=have)
    request = urllib.request.Request(url, headers={"User-Agent": "likeness-model-fetch"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the part is complete
            result.notes.append("already complete")
            return result
        raise
    with response:
        status = getattr(response, "status", 200)
        if have and status != 206:  # the server ignored the Range header: start over
            result.notes.append("server does not resume; downloading from the start")
            have = 0
            result.resumed_from = 0
        total_header = response.headers.get("Content-Length")
        total = have + int(total_header) if total_header and total_header.isdigit() else None
        mode = "ab" if have else "wb"
        done = have
        with part.open(mode) as handle:
            while chunk := response.read(CHUNK):
                handle.write(chunk)
                done += len(chunk)
                result.received += len(chunk)
                progress("download", done / total if total else 0.0)
        if total is not None and done < total:
            raise OSError(f"connection closed after {done} of {total} bytes")
    return result


def fetch(
    store: ModelStore,
    name: str | ModelPackage,
    *,
    url: str | None = None,
    progress: Progress | None = None,
    timeout: float = 30.0,
) -> list[FileStatus]:
    """Download package ``name`` into the store (resuming a partial download), check and record its files.

    Only the files likeness uses are installed (not buffalo_l's gender/age and 3-D landmark heads).

    ``url`` overrides the package's upstream URL (a mirror). Raises :class:`ModelMissing` with what to
    do where there is no network or no upstream download. Files already present and usable are kept.
    """
    import urllib.error

    entry = name if isinstance(name, ModelPackage) else package(name)
    report = progress or (lambda stage, fraction: None)
    wanted = [spec for spec in entry.files if spec.used]
    present = [store.check(spec, record=True) for spec in wanted]
    if all(status.usable for status in present):
        return present
    source = url or entry.url
    if source is None:
        raise ModelMissing(
            f"{entry.name} cannot be fetched automatically: {entry.manual}",
            hint=f"put it at {store.path(wanted[0])}, then run `likeness models verify {entry.name}`",
        )
    suffix = ".zip" if entry.archive == "zip" else PurePosixPath(wanted[0].relpath).suffix
    part = store.models_dir / DOWNLOADS_DIRNAME / f"{entry.name}{suffix}.part"
    try:
        _download(source, part, progress=report, timeout=timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        kept = (
            f"; the {part.stat().st_size} bytes received are kept in {part} and the next fetch resumes"
            if part.exists() and part.stat().st_size
            else ""
        )
        if entry.archive == "zip":
            folder = store.models_dir / PurePosixPath(entry.folder or ".")
            install = f"unzip {', '.join(s.filename for s in wanted)} into {folder}"
        else:
            install = f"copy it to {store.path(wanted[0])}"
        raise ModelMissing(
            f"could not download {entry.name} from {source}: {reason}{kept}",
            hint=(
                "this machine may have no network access: download that URL on another machine, "
                f"{install}, then run `likeness models verify {entry.name}`"
            ),
        ) from exc
    if entry.archive_sha256 is not None:
        digest, _ = sha256_file_size(part)
        if digest != entry.archive_sha256:
            part.unlink()
            raise ModelMissing(
                f"the download of {entry.name} from {source} has sha256 {digest}, not the pinned "
                f"{entry.archive_sha256}; it was deleted",
                hint="try again later or from another mirror",
            )
    report("install", 0.0)
    if entry.archive == "zip":
        _extract(part, wanted, store)
    else:
        target = store.path(wanted[0])
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, target)
    statuses = [store.check(spec, record=True) for spec in wanted]
    part.unlink(missing_ok=True)
    report("done", 1.0)
    return statuses


def _extract(archive: Path, wanted: Sequence[ModelFileSpec], store: ModelStore) -> None:
    """Extract the wanted files by base name (no member path is trusted), each written atomically."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = {
                PurePosixPath(info.filename).name: info for info in zipped.infolist() if not info.is_dir()
            }
            for spec in wanted:
                info = members.get(spec.filename)
                if info is None:
                    if spec.required:
                        raise ModelMissing(
                            f"the downloaded {spec.package} archive holds no {spec.filename}",
                            hint="the upstream archive changed; report this to the likeness maintainers",
                        )
                    continue
                target = store.path(spec)
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{spec.filename}-", dir=target.parent)
                try:
                    with os.fdopen(fd, "wb") as out, zipped.open(info) as src:
                        while chunk := src.read(CHUNK):
                            out.write(chunk)
                    os.replace(tmp, target)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
    except zipfile.BadZipFile as exc:
        archive.unlink(missing_ok=True)
        raise ModelMissing(
            f"the download {archive} is not a valid zip archive ({exc}); it was deleted",
            hint="run the fetch again",
        ) from exc
