"""What every face backend produces (``Face``) and promises (``Analyzer``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from likeness.models import ModelUse


@dataclass(frozen=True)
class Face:
    """One detected face in one image.

    ``box`` is (left, top, right, bottom) in image pixels. ``landmarks`` is an (N, 2) float array in
    image pixels (68 points for dlib, 106 for insightface; empty when the backend has none);
    ``landmarks5`` the five-point set (eye corners/centres, nose, mouth) used for alignment.
    ``embedding`` is a 1-D float32 vector in ``embedding_space``; vectors from different spaces
    are never compared.
    """

    box: tuple[int, int, int, int]
    landmarks: np.ndarray = field(repr=False)
    landmarks5: np.ndarray = field(repr=False)
    embedding: np.ndarray = field(repr=False)
    score: float
    embedding_space: str

    @property
    def center_x(self) -> float:
        return (self.box[0] + self.box[2]) / 2.0

    @property
    def size(self) -> int:
        """The shorter side of the box, in pixels."""
        return int(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@runtime_checkable
class Analyzer(Protocol):
    """A face backend: detects faces, finds landmarks, computes embeddings.

    ``analyze`` returns faces sorted left to right by box centre (the documented ``--face-index``
    order). ``distance`` compares two embeddings of this backend's ``embedding_space``;
    smaller is more alike.
    """

    name: str
    embedding_space: str

    def analyze(self, pixels: np.ndarray) -> list[Face]: ...

    def distance(self, a: np.ndarray, b: np.ndarray) -> float: ...

    def describe(self) -> dict[str, str]:
        """Model names and versions, for ledger entries and C2PA manifests."""
        ...

    def model_files(self) -> list[ModelUse]:
        """Every model file this analyzer loaded, with its hash and licence (licence checks, manifests)."""
        ...


@runtime_checkable
class LazyAnalyzer(Analyzer, Protocol):
    """An analyzer that can detect without embedding, at a scale the caller picks (footage).

    Embeddings are most of an analysis' cost and footage needs one only when a face is gated or its
    identity re-checked; between those, finding the face again is enough.
    """

    def detect(self, pixels: np.ndarray, *, scale: float | None = None) -> list[Face]:
        """Faces with box and landmarks and an empty embedding, left to right. ``scale`` (< 1):
        detect on a copy resized by it, without upsampling; ``None``: the analyzer's own choice."""
        ...

    def embed(self, pixels: np.ndarray, face: Face) -> Face:
        """``face``, found in ``pixels`` by :meth:`detect`, with its embedding."""
        ...


@runtime_checkable
class SplitDetectAnalyzer(LazyAnalyzer, Protocol):
    """A :class:`LazyAnalyzer` whose :meth:`~LazyAnalyzer.detect` splits in two:
    ``finish(find(x, scale=s), embed=False).faces`` is ``detect(x, scale=s)``. :meth:`find` (the
    detector's scan) needs no model file, releases the GIL and may run in any thread (dlib: each
    thread gets its own detector); :meth:`finish` (landmarks) runs in the job's thread, or in a
    still's input reader started early (:mod:`likeness.jobs.inputs`), two at once. Footage scans
    the next frame in a thread of its own while the frames before it are sealed
    (:class:`likeness.faces.dlib_backend.DlibAnalyzer`)."""

    def find(self, pixels: np.ndarray, *, scale: float | None = None) -> Any:
        """The detection half of :meth:`~LazyAnalyzer.detect` at ``scale``."""
        ...

    def finish(self, found: Any, *, embed: bool = True) -> Any:
        """The rest (landmarks; embeddings with ``embed``): an object with ``faces``."""
        ...


@runtime_checkable
class DetectFirstAnalyzer(Analyzer, Protocol):
    """An analyzer whose detection needs none of its other models and runs without the GIL (dlib), so a
    job detects in one thread while the other models load in another
    (:class:`likeness.faces.dlib_backend.DlibAnalyzer`, built with ``defer_models=True``).

    ``finish(find(x)).faces`` is ``analyze(x)``; with ``portrait=True``, ``analyze_portrait(x)``.
    """

    def load_models(self) -> None:
        """Load what detection does not need (once; later calls return at once)."""
        ...

    def find(self, pixels: np.ndarray, *, portrait: bool = False) -> Any:
        """The detection half of an analysis (no model file needed)."""
        ...

    def finish(self, found: Any) -> Any:
        """The rest of the analysis of what :meth:`find` returned: an object with ``faces``."""
        ...


def has_embedding(face: Face) -> bool:
    """Whether ``face`` carries an embedding (:meth:`LazyAnalyzer.detect` leaves it empty)."""
    return face.embedding is not None and np.size(face.embedding) > 0
