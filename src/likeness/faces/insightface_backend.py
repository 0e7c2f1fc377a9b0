"""The production face backend: insightface's SCRFD detector, 106-point landmarks and ArcFace embeddings.

Loading is guarded. Before insightface constructs anything, :meth:`ModelStore.require` checks that the
buffalo_l folder holds the required files and that every ``.onnx`` file in it matches its pinned or
recorded sha256 (recording it on first verified use). Only then is the folder handed to insightface's
own ``FaceAnalysis`` — as a directory path, so it never tries to download (insightface's downloader
fires for a missing pack, and an empty folder gives a bare AssertionError). A missing or changed file
raises :class:`~likeness.errors.ModelMissing` naming the file, where it was looked for and how to get it.

Routing is insightface's: ``FaceAnalysis`` sends each file to a task by its input/output shapes. Only
``detection``, ``recognition`` and ``landmark_2d_106`` are kept: the gender/age and 3-D landmark heads
of buffalo_l are never run (likeness infers no gender or age).

Large images are detected on a copy whose longer side is ``det_size`` (area-averaged, so SCRFD's own
bilinear resize does not alias); landmarks and embeddings are then computed on the full-resolution
pixels from the boxes and keypoints mapped back. The embedding is insightface's ``normed_embedding``
(unit length, float32) and :meth:`InsightfaceAnalyzer.distance` is the cosine distance ``1 - cos``.

The embedding space is named after the recogniser file's name and sha256 (e.g.
``arcface_w600k_r50_1a2b3c4d5e6f``), so two different recognisers never share a space and an enrolment
made with one is never matched against the other.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from likeness.errors import BadInput, ModelMissing, UsageError
from likeness.faces.types import Face
from likeness.model_store import (
    BUFFALO_L,
    DETECTION,
    LANDMARK_2D_106,
    RECOGNITION,
    FileStatus,
    ModelPackage,
    ModelStore,
)
from likeness.models import ModelUse
from likeness.onnx_runtime import ProviderChoice, choose_providers

NAME = "insightface"
KEPT_TASKS = (DETECTION, RECOGNITION, LANDMARK_2D_106)


class StageTimer(Protocol):
    """Anything with a ``stage(name)`` context manager (``likeness.progress.StageTimer`` fits)."""

    def stage(self, name: str) -> contextlib.AbstractContextManager[None]: ...


@contextlib.contextmanager
def _no_stage(name: str) -> Iterator[None]:
    yield


def timed(timer: StageTimer | None, name: str) -> contextlib.AbstractContextManager[None]:
    return timer.stage(name) if timer is not None else _no_stage(name)


def embedding_space_for(status: FileStatus) -> str:
    """``arcface_<recogniser file stem>_<first 12 hex digits of its sha256>``."""
    if status.sha256 is None:
        raise ValueError("the recogniser's sha256 is needed to name its embedding space")
    return f"arcface_{Path(status.spec.filename).stem}_{status.sha256[:12]}"


class InsightfaceAnalyzer:
    """Analyzer on insightface's buffalo_l pack (see the module docstring).

    Build it with :meth:`load`; the pipeline does so through ``load_analyzer("insightface", home)``.
    """

    name = NAME

    def __init__(
        self,
        app: object,
        files: dict[str, FileStatus],
        providers: ProviderChoice,
        *,
        det_size: int,
        det_thresh: float,
        load_seconds: float,
    ) -> None:
        self._app = app
        self._files = files
        self.providers = providers
        self.det_size = det_size
        self.det_thresh = det_thresh
        self.load_seconds = load_seconds
        self.embedding_space = embedding_space_for(files[RECOGNITION])
        models = app.models  # type: ignore[attr-defined]
        self._detector = models[DETECTION]
        # Landmarks before recognition is not required (recognition aligns on the keypoints), but keep
        # insightface's own order so results match FaceAnalysis.get.
        self._heads = [(task, model) for task, model in models.items() if task != DETECTION]

    @classmethod
    def load(
        cls,
        models_dir: Path,
        *,
        providers: str = "auto",
        det_size: int = 640,
        det_thresh: float = 0.5,
        pack: ModelPackage = BUFFALO_L,
        store: ModelStore | None = None,
    ) -> InsightfaceAnalyzer:
        """Verify the pack's files, then load them with insightface's ``FaceAnalysis``.

        ``models_dir`` is laid out like ``~/.insightface/models`` (``buffalo_l/*.onnx``). ``providers``
        is ``auto``, ``cpu``, ``cuda`` or ``tensorrt`` (see :func:`likeness.onnx_runtime.choose_providers`).
        """
        started = time.perf_counter()
        store = store or ModelStore(Path(models_dir))
        files = store.require(pack)  # raises ModelMissing before insightface sees the folder
        choice = choose_providers(providers)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                from insightface.app import FaceAnalysis
        except ImportError as exc:
            raise ModelMissing(
                f"the insightface backend needs the insightface package, which cannot be imported ({exc})",
                hint="pip install 'likeness[insightface]'",
            ) from exc
        pack_dir = store.models_dir / (pack.folder or "")
        try:
            app = FaceAnalysis(
                name=str(pack_dir),
                root=str(store.models_dir.parent),  # only used by its downloader, which is never reached
                allowed_modules=list(KEPT_TASKS),
                providers=list(choice.providers),
            )
            app.prepare(
                ctx_id=0 if choice.device != "cpu" else -1,
                det_thresh=det_thresh,
                det_size=(det_size, det_size),
            )
        except Exception as exc:
            raise ModelMissing(
                f"insightface could not load the models in {pack_dir}: {type(exc).__name__}: {exc}",
                hint="run `likeness models verify buffalo_l`; if the files are fine, report this message",
            ) from exc
        missing = [task for task in (DETECTION, RECOGNITION) if task not in app.models]
        if missing:
            raise ModelMissing(
                f"insightface did not route any file in {pack_dir} to {', '.join(missing)}",
                hint="the files there lack the shapes insightface expects; run `likeness models verify`",
            )
        return cls(
            app,
            files,
            choice,
            det_size=det_size,
            det_thresh=det_thresh,
            load_seconds=time.perf_counter() - started,
        )

    # ------------------------------------------------------------------------------------------ analyze

    def analyze(self, pixels: np.ndarray, *, timer: StageTimer | None = None) -> list[Face]:
        """Faces in an RGB uint8 image, left to right. ``timer`` gets stages detect, landmarks, embed."""
        import cv2

        if (
            not isinstance(pixels, np.ndarray)
            or pixels.dtype != np.uint8
            or pixels.ndim != 3
            or pixels.shape[2] != 3
        ):
            raise BadInput(
                f"expected an H×W×3 uint8 RGB image, got {getattr(pixels, 'dtype', type(pixels))} "
                f"{getattr(pixels, 'shape', '')}"
            )
        height, width = pixels.shape[:2]
        bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
        with timed(timer, "detect"):
            scale = min(1.0, self.det_size / max(height, width))
            small = bgr
            if scale < 1.0:
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
                scale = size[0] / width
            boxes, kpss = self._detector.detect(small, max_num=0)
        if boxes.shape[0] == 0:
            return []
        from insightface.app.common import Face as InsightFace

        found = []
        boxes = boxes.astype(np.float64)
        boxes[:, :4] /= scale
        kpss = kpss.astype(np.float64) / scale
        for box, kps in zip(boxes, kpss, strict=True):
            found.append(InsightFace(bbox=box[:4], kps=kps, det_score=float(box[4])))
        for task, model in self._heads:
            stage = "embed" if task == RECOGNITION else "landmarks"
            with timed(timer, stage), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # scikit-image deprecation inside face_align
                for face in found:
                    model.get(bgr, face)
        faces = [self._to_face(face, width, height) for face in found]
        return sorted(faces, key=lambda face: face.center_x)

    def _to_face(self, face: object, width: int, height: int) -> Face:
        x1, y1, x2, y2 = (float(v) for v in face.bbox)  # type: ignore[attr-defined]
        box = (
            max(0, int(np.floor(x1))),
            max(0, int(np.floor(y1))),
            min(width, int(np.ceil(x2))),
            min(height, int(np.ceil(y2))),
        )
        dense = face.get("landmark_2d_106")  # type: ignore[attr-defined]
        landmarks = np.asarray(dense, dtype=np.float32) if dense is not None else np.empty((0, 2), np.float32)
        return Face(
            box=box,
            landmarks=landmarks,
            landmarks5=np.asarray(face.kps, dtype=np.float32),  # type: ignore[attr-defined]
            embedding=np.asarray(face.normed_embedding, dtype=np.float32),  # type: ignore[attr-defined]
            score=float(face.det_score),  # type: ignore[attr-defined]
            embedding_space=self.embedding_space,
        )

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """Cosine distance ``1 - cos(a, b)``: 0 for the same direction, up to 2 for opposite ones."""
        a = np.asarray(a, dtype=np.float64).ravel()
        b = np.asarray(b, dtype=np.float64).ravel()
        if a.shape != b.shape:
            raise UsageError(
                f"cannot compare embeddings of {a.size} and {b.size} dimensions: they come from different "
                f"face backends ({self.embedding_space} has 512)",
                hint="enrol the identity with this backend",
            )
        norm = np.linalg.norm(a) * np.linalg.norm(b)
        if norm == 0.0:
            return 1.0
        return float(1.0 - np.dot(a, b) / norm)

    def describe(self) -> dict[str, str]:
        import insightface

        info = {
            "backend": NAME,
            "insightface": insightface.__version__,
            "embedding_space": self.embedding_space,
            "det_size": str(self.det_size),
        }
        for task, status in sorted(self._files.items()):
            if task not in KEPT_TASKS:
                continue
            info[task] = f"{status.spec.filename} sha256:{status.sha256} ({status.state})"
            info[f"{task}_licence"] = status.spec.licence
        info.update(self.providers.describe())
        return info

    @property
    def has_dense_landmarks(self) -> bool:
        return LANDMARK_2D_106 in self._files

    def model_files(self) -> list[ModelUse]:
        """The verified files this analyzer runs (name, file, sha256, licence, commercial use).

        buffalo_l's gender/age and 3-D landmark files are verified when present but never run, so they
        are not listed.
        """
        return [
            ModelUse.from_status(status) for task, status in sorted(self._files.items()) if task in KEPT_TASKS
        ]
