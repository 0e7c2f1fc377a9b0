"""The embedded face backend: dlib's HOG detector, 68- and 5-point landmarks and 128-D ResNet embeddings.

Everything runs offline from the model files of the ``face_recognition_models`` wheel, each checked
against its sha256 in :mod:`likeness.models` before it is loaded (once per analyzer instance, ≈ 0.2 s).
The 68- and 5-point models run as numpy trees loaded from arrays (:mod:`likeness.faces.shape_trees`,
:mod:`likeness.faces.shape_cache`): on every test face the same landmarks as dlib's predictors, without
dlib's ≈ 0.45 s read of the 95 MB 68-point file, which holds the GIL. Where the arrays cannot be cached,
dlib reads the files.

Loading and threads (measured: a thread that sleeps 1 ms wakes on time while another runs the call,
or not): dlib holds the GIL for the whole time it reads a model file and while it computes
landmarks and embeddings, but releases it while the HOG detector runs. So an analysis is split in two:
:meth:`DlibAnalyzer.find` (HOG; needs no model file) and :meth:`DlibAnalyzer.finish` (landmarks,
embeddings). ``defer_models=True`` loads only the detector (≈ 1 ms), so a job detects in worker threads
while its own thread loads the rest (:mod:`likeness.jobs.inputs`); each thread gets its own copy of the
detector (one detector run from two threads at once corrupts memory). Where the 68-point model must be
read by dlib, ``likeness swap`` has it read in a forked process meanwhile
(:mod:`likeness.faces.landmark_helper`, the ``landmarks_helper`` argument).

How detection copes with image size (measured on ``testdata/faces``):

* Large images are detected on a copy whose longer side is at most ``detect_long_side`` (2048 px;
  HOG there takes ~0.2 s) and the boxes are mapped back. Landmarks and embeddings are then computed on
  the full-resolution pixels (dlib reads them in place, without a copy), so a 100-megapixel photo costs
  one small resized copy plus the detector's pyramid, not several full-size copies. The price: on a very
  large photo a face must be at least ~80 px *in the downscaled copy* to be found.
* Small images (longer side ≤ ``upsample_below``, 1024 px) are scanned with one 2× upsampling step, so
  faces down to ~40 px are found (HOG's window is 80 px). Upsampling large images is what finds false
  faces in textures, so it is never done there. A face found only thanks to upsampling (box under 80 px
  at detection scale) must score ≥ ``min_upsampled_score``: real small faces in the test photos scored
  0.22–3.1, every false detection seen (dogs, masks, profiles, screens) scored below 0.
* A swap's source photo (:meth:`DlibAnalyzer.analyze_portrait`) is detected without upsampling first
  and upsampled only when that finds no face or one under 1.5 windows (on the test photos: the same
  people as :meth:`DlibAnalyzer.analyze` on all 63 photos where the rules can differ, 43 of them
  without the upsampled pass; the demo source: ≈ 440 → 175 ms CPU). Targets keep the rule above.
* Faces smaller than ``min_face`` (40 px) are skipped and reported in :class:`Analysis.skipped`: their
  landmarks are too coarse for a swap and their embeddings too unreliable for the consent gate.

Footage (:class:`likeness.faces.types.LazyAnalyzer`): :meth:`DlibAnalyzer.detect` finds faces and their
landmarks without embeddings, on a copy scaled by a factor the caller picks from the faces it already
follows (no upsampling), and :meth:`DlibAnalyzer.embed` adds the embedding of one face when it is needed
(≈ 135 ms, most of a full analysis). ``embed(detect(x))`` gives exactly ``analyze(x)``'s embedding.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from likeness.errors import BadInput
from likeness.faces.landmark_helper import HelperGone, LandmarkHelper, shape_points
from likeness.faces.shape_cache import load_trees
from likeness.faces.shape_trees import ShapeTrees
from likeness.faces.types import Face
from likeness.fsutil import sha256_file
from likeness.home import Home
from likeness.models import ModelUse, VerifiedModel, locate_verified

EMBEDDING_SPACE = "dlib_resnet_v1"
HOG_WINDOW_PX = 80
PORTRAIT_MIN_PX = 1.5 * HOG_WINDOW_PX
"""Smallest face (box side at detection scale) that :meth:`DlibAnalyzer.analyze_portrait` keeps from
its pass without upsampling; a smaller one sends the photo through the upsampled analysis."""
FRONTAL_DETECTOR_SHA256 = {"20.0.1": "f3f7aa833fb4a14a46fc48689f45b98d85ef72d6dfaf8bdc012b7d3c522a5426"}
"""sha256 of dlib's built-in HOG face detector as its ``save()`` writes it, per dlib version."""


@dataclass(frozen=True)
class SkippedFace:
    """A detection that was not turned into a :class:`Face`, and why."""

    box: tuple[int, int, int, int]
    score: float
    reason: str


@dataclass(frozen=True)
class Analysis:
    """Everything one detection pass found: the faces kept (left to right) and the detections skipped."""

    faces: list[Face]
    skipped: list[SkippedFace] = field(default_factory=list)
    detect_scale: float = 1.0
    """Factor from the original image to the image the detector saw (≤ 1)."""
    upsample: int = 0


_Candidate = tuple[tuple[int, int, int, int], tuple[int, int, int, int], float, int, str]
"""One HOG detection: (unclipped box, box clipped to the image, score, the kept face's size, why it is
skipped or "")."""


@dataclass(frozen=True)
class Found:
    """What :meth:`DlibAnalyzer.find` detected in ``pixels``; :meth:`DlibAnalyzer.finish` completes it."""

    pixels: np.ndarray = field(repr=False)
    candidates: list[_Candidate]
    detect_scale: float
    upsample: int

    def kept(self) -> list[_Candidate]:
        """The detections that become faces (not skipped)."""
        return [candidate for candidate in self.candidates if not candidate[4]]


@dataclass
class _Models:
    """The loaded landmark and recognition models and their verified files."""

    landmarks68: Any
    """The 68-point model: its trees as arrays (:class:`ShapeTrees`), dlib's predictor, a
    :class:`LandmarkHelper` (another process) that holds it, or ``None`` (not loaded: faces get no 68
    landmarks). A helper that dies is replaced by the model loaded here."""
    landmarks5: Any
    """The 5-point model: its trees (:class:`ShapeTrees`) or dlib's predictor."""
    recogniser: Any
    verified: dict[str, VerifiedModel]
    home: Home | None = None

    def points68(self, pixels: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
        """The 68 landmarks of each box (unclipped: the predictor normalises by the box)."""
        import dlib

        if self.landmarks68 is None:
            return [np.empty((0, 2), dtype=np.float32) for _ in boxes]
        helper = self.landmarks68
        if isinstance(helper, LandmarkHelper):
            try:
                return helper.points(pixels, boxes)
            except HelperGone:  # verified again, then read here: the same file gives the same points
                self.landmarks68, _ = _landmark_model("dlib_landmarks_68", self.home)
        if isinstance(self.landmarks68, ShapeTrees):
            return [self.landmarks68.points(pixels, box) for box in boxes]
        return [shape_points(self.landmarks68(pixels, dlib.rectangle(*box))) for box in boxes]

    def shape5(self, pixels: np.ndarray, box: tuple[int, int, int, int]) -> Any:
        """The 5 landmarks of the face in ``box`` (unclipped) as the dlib shape the recogniser takes."""
        import dlib

        rect = dlib.rectangle(*box)
        if isinstance(self.landmarks5, ShapeTrees):
            points = self.landmarks5.points(pixels, box)
            return dlib.full_object_detection(rect, [dlib.point(int(x), int(y)) for x, y in points])
        return self.landmarks5(pixels, rect)


def _load_models(
    home: Home | None, helper: LandmarkHelper | None = None, *, landmarks68: bool = True
) -> _Models:
    """Verify every file, then load it. The 68-point model (its file's hash and its arrays' read and
    hash, ≈ 0.1 s, or its conversion the first time) runs in a thread, mostly without the GIL, while
    the small files, checked first, load (dlib holds the GIL while it reads).
    With a ``helper`` that process verifies and loads the 68-point model (unless it is gone: then it is
    loaded here); without ``landmarks68`` it is not loaded at all."""
    import dlib

    if not landmarks68:
        shape5, landmarks5 = _landmark_model("dlib_landmarks_5", home)
        resnet = locate_verified("dlib_resnet_v1", home)
        return _Models(
            landmarks68=None,
            landmarks5=shape5,
            recogniser=dlib.face_recognition_model_v1(str(resnet.path)),
            verified={"dlib_landmarks_5": landmarks5, "dlib_resnet_v1": resnet},
        )

    with ThreadPoolExecutor(1, thread_name_prefix="verify-model") as pool:
        # arrays: one read and a sha256 (no GIL) while the small files load; else the file's hash
        landmarks68 = None if helper is not None else pool.submit(_trees_or_file, "dlib_landmarks_68", home)
        shape5, landmarks5 = _landmark_model("dlib_landmarks_5", home)
        resnet = locate_verified("dlib_resnet_v1", home)
        recogniser = dlib.face_recognition_model_v1(str(resnet.path))
        shape68: Any = helper
        if helper is not None:
            try:
                verified68 = helper.ready()  # raises ModelMissing: the helper did not read the file
            except HelperGone:
                shape68, verified68 = _trees_or_file("dlib_landmarks_68", home)
        else:
            assert landmarks68 is not None
            shape68, verified68 = landmarks68.result()  # raises ModelMissing: the file is not read
    if shape68 is None:
        shape68 = dlib.shape_predictor(str(verified68.path))
    verified = {"dlib_landmarks_68": verified68, "dlib_landmarks_5": landmarks5, "dlib_resnet_v1": resnet}
    return _Models(
        landmarks68=shape68, landmarks5=shape5, recogniser=recogniser, verified=verified, home=home
    )


def _trees_or_file(name: str, home: Home | None) -> tuple[ShapeTrees | None, VerifiedModel]:
    """Landmark model ``name`` as arrays (:mod:`likeness.faces.shape_cache`) and its verified file, or
    ``None`` and the verified file, for dlib to read, where it cannot be had as arrays."""
    loaded = load_trees(name, home)
    if loaded is None:
        return None, locate_verified(name, home)
    return loaded.trees, loaded.verified


def _landmark_model(name: str, home: Home | None) -> tuple[Any, VerifiedModel]:
    """Landmark model ``name`` loaded: its trees, else dlib's predictor; and its verified file."""
    import dlib

    trees, verified = _trees_or_file(name, home)
    return (trees if trees is not None else dlib.shape_predictor(str(verified.path))), verified


def check_pixels(pixels: np.ndarray) -> np.ndarray:
    """Return ``pixels`` as a C-contiguous H×W×3 uint8 array, or raise :class:`BadInput`."""
    if (
        not isinstance(pixels, np.ndarray)
        or pixels.dtype != np.uint8
        or pixels.ndim != 3
        or pixels.shape[2] != 3
    ):
        shape = getattr(pixels, "shape", None)
        dtype = getattr(pixels, "dtype", type(pixels).__name__)
        raise BadInput(
            f"face analysis needs an H×W×3 uint8 RGB array, got shape {shape} dtype {dtype}",
            hint="decode images with likeness.media.image.load_image",
        )
    if pixels.shape[0] < 16 or pixels.shape[1] < 16:
        raise BadInput(f"image of {pixels.shape[1]}×{pixels.shape[0]} px is too small to hold a face")
    return np.ascontiguousarray(pixels)


class DlibAnalyzer:
    """dlib backend implementing :class:`likeness.faces.types.Analyzer`.

    Load once and reuse: constructing it verifies and loads the model files (≈ 0.2 s), or with
    ``defer_models=True`` only the detector (~1 ms), the rest at :meth:`load_models` or first use.
    """

    name = "dlib"
    embedding_space = EMBEDDING_SPACE

    def __init__(
        self,
        home: Home | None = None,
        *,
        min_face: int = 40,
        detect_long_side: int = 2048,
        upsample_below: int = 1024,
        min_upsampled_score: float = 0.2,
        num_jitters: int = 0,
        defer_models: bool = False,
        landmarks_helper: LandmarkHelper | None = None,
        landmarks68: bool = True,
    ) -> None:
        import dlib

        self.min_face = min_face
        self.detect_long_side = detect_long_side
        self.upsample_below = upsample_below
        self.min_upsampled_score = min_upsampled_score
        self.num_jitters = num_jitters
        self._dlib_version = str(dlib.__version__)
        self._home = home
        self._helper = landmarks_helper
        self.landmarks68 = landmarks68
        """False: the 68-point model is neither loaded nor run and faces carry no 68
        landmarks (an empty 0×2 array): enough to find and identify faces, not to swap them."""
        self._detector_template = frontal_face_detector(home)
        """Never run: the copies in :attr:`_detectors` are made from it."""
        self._detectors: list[Any] = []
        """Idle HOG detectors. One runs in one thread at a time: two threads in the same one corrupt memory
        (dlib runs it without the GIL); :meth:`_detector` copies another (≈ 1 ms) when all are busy."""
        self._detectors_lock = threading.Lock()
        self._loaded: _Models | None = None
        self._loading = threading.Lock()
        if not defer_models:
            self.load_models()

    def load_models(self) -> None:
        """Verify and load the landmark and recognition models (≈ 0.2 s), once; later calls return at once.

        ``defer_models=True`` leaves this to the caller (or to the first method that needs them): the
        HOG detector is ready without them (:meth:`find`), and dlib releases the GIL while it detects but
        not while it reads model files, so detection run in another thread overlaps the loading.
        """
        with self._loading:
            if self._loaded is None:
                self._loaded = _load_models(self._home, self._helper, landmarks68=self.landmarks68)

    def _models(self) -> _Models:
        if self._loaded is None:
            self.load_models()
        assert self._loaded is not None
        return self._loaded

    @property
    def models(self) -> dict[str, VerifiedModel]:
        """The verified model files (loading them first if that was deferred)."""
        return self._models().verified

    # -- the Analyzer protocol -------------------------------------------------------------------

    def analyze(self, pixels: np.ndarray) -> list[Face]:
        """Faces in ``pixels`` (H×W×3 uint8 RGB), sorted left to right by box centre."""
        return self.analyze_detailed(pixels).faces

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """Euclidean distance between two 128-D embeddings (smaller is more alike)."""
        a = np.asarray(a, dtype=np.float64).ravel()
        b = np.asarray(b, dtype=np.float64).ravel()
        if a.shape != b.shape:
            raise ValueError(f"embeddings of different lengths: {a.shape[0]} and {b.shape[0]}")
        return float(np.linalg.norm(a - b))

    def describe(self) -> dict[str, str]:
        return {
            "backend": self.name,
            "library": f"dlib {self._dlib_version}",
            "embedding_space": self.embedding_space,
            "detector": "dlib HOG frontal_face_detector (built in)",
            "landmarks_68": (
                self.models["dlib_landmarks_68"].describe() if self.landmarks68 else "not loaded (not needed)"
            ),
            "landmarks_5": self.models["dlib_landmarks_5"].describe(),
            "recognition": self.models["dlib_resnet_v1"].describe(),
            "settings": (
                f"min_face={self.min_face} detect_long_side={self.detect_long_side} "
                f"upsample_below={self.upsample_below} num_jitters={self.num_jitters}"
            ),
        }

    def model_files(self) -> list[ModelUse]:
        """The verified files this analyzer runs (name, file, sha256, licence, commercial use)."""
        return [verified.use() for verified in self.models.values()]

    # -- details -----------------------------------------------------------------------------------

    def detect(self, pixels: np.ndarray, *, scale: float | None = None) -> list[Face]:
        """Faces with box and landmarks but no embedding (an empty array), left to right.

        ``scale``: detect on a copy resized by this factor (< 1), without upsampling: a face is found
        when it is at least 80 px at that scale. ``None``: the analyzer's own choice (as :meth:`analyze`).
        """
        return self.analyze_detailed(pixels, scale=scale, embed=False).faces

    def embed(self, pixels: np.ndarray, face: Face) -> Face:
        """``face`` (found in ``pixels`` by :meth:`detect`) with its embedding."""
        import dlib

        pixels = check_pixels(pixels)
        points = np.asarray(face.landmarks5, dtype=np.float64).reshape(-1, 2)
        if points.shape != (5, 2):
            raise ValueError(f"embed needs the face's 5 landmarks, got shape {points.shape}")
        shape5 = dlib.full_object_detection(
            dlib.rectangle(*(int(v) for v in face.box)),
            [dlib.point(round(x), round(y)) for x, y in points],
        )
        descriptor = self._models().recogniser.compute_face_descriptor(pixels, shape5, self.num_jitters)
        return replace(face, embedding=np.asarray(descriptor, dtype=np.float32))

    def analyze_portrait(self, pixels: np.ndarray) -> list[Face]:
        """Faces of a photo that must show one person (a source or reference photo), left to right.

        Detected without upsampling first (≈ 4× less HOG work on a photo under ``upsample_below``).
        That result stands when it found faces and each is at least :data:`PORTRAIT_MIN_PX` (1.5× the
        80 px window) at detection scale; otherwise the photo is analysed as :meth:`analyze` does
        (upsampled, so faces down to ``min_face`` are found). Near the window size the boxes found
        without upsampling are coarse (on ``_hard/small_faces_voc_2008_002079`` a 52 px face got a
        72 px box and an embedding 0.6 away from the upsampled one), hence the margin. What this skips:
        a second face under ~80 px next to a large one, which :meth:`analyze` would report too. Boxes,
        landmarks and embeddings differ slightly from :meth:`analyze`'s (the detector's pyramid steps
        differ; ≤ 0.12 embedding distance on the test photos). Targets are never analysed this way:
        every face there must be found.
        """
        return self.finish(self.find(pixels, portrait=True)).faces

    def analyze_detailed(
        self, pixels: np.ndarray, *, scale: float | None = None, embed: bool = True, upsample: bool = True
    ) -> Analysis:
        """Like :meth:`analyze`, also reporting skipped detections and the detection scale used.

        ``scale`` and ``embed=False``: see :meth:`detect`. ``upsample=False``: never upsample (small
        photos included), as :meth:`analyze_portrait`'s first pass.
        """
        return self.finish(self.find(pixels, scale=scale, upsample=upsample), embed=embed)

    def find(
        self, pixels: np.ndarray, *, scale: float | None = None, upsample: bool = True, portrait: bool = False
    ) -> Found:
        """The detection half of an analysis (HOG only): what :meth:`finish` turns into faces.

        Needs none of the model files, and dlib releases the GIL while it detects, so a thread can run
        this while another loads the models (:meth:`load_models`). ``portrait=True``: the source-photo
        rule of :meth:`analyze_portrait`; else the arguments of :meth:`analyze_detailed`.
        """
        pixels = check_pixels(pixels)
        if portrait:
            first = self._found(pixels, None, upsample=False)
            large = [candidate[3] * first.detect_scale >= PORTRAIT_MIN_PX for candidate in first.kept()]
            if large and all(large):
                return first
            if self._plan(pixels.shape[:2], scale, upsample=upsample) == self._plan(
                pixels.shape[:2], None, upsample=False
            ):
                return first  # a photo too large to upsample: the full pass would be this one again
        return self._found(pixels, scale, upsample=upsample)

    def finish(self, found: Found, *, embed: bool = True) -> Analysis:
        """Landmarks (and, with ``embed``, embeddings) of what :meth:`find` detected: the faces kept,
        left to right, and the detections skipped."""

        models = self._models()
        pixels = found.pixels
        kept = found.kept()
        points68 = models.points68(pixels, [raw for raw, *_ in kept])
        faces: list[Face] = []
        for (raw, box, score, _, _), landmarks in zip(kept, points68, strict=True):
            shape5 = models.shape5(pixels, raw)  # unclipped: the predictors normalise by the box
            embedding = (
                np.asarray(models.recogniser.compute_face_descriptor(pixels, shape5, self.num_jitters))
                if embed
                else ()
            )
            faces.append(
                Face(
                    box=box,
                    landmarks=landmarks,
                    landmarks5=shape_points(shape5),
                    embedding=np.asarray(embedding, dtype=np.float32),
                    score=float(score),
                    embedding_space=self.embedding_space,
                )
            )
        faces.sort(key=lambda face: face.center_x)
        skipped = [SkippedFace(box, score, reason) for _, box, score, _, reason in found.candidates if reason]
        return Analysis(
            faces=faces, skipped=skipped, detect_scale=found.detect_scale, upsample=found.upsample
        )

    def _found(self, pixels: np.ndarray, scale: float | None, *, upsample: bool) -> Found:
        """HOG detections of ``pixels`` (checked), each with its box in image pixels and, for one that
        is not kept, the reason."""
        detections, scale, upsample_used = self._detect(pixels, scale, upsample=upsample)
        candidates: list[_Candidate] = []
        height, width = pixels.shape[:2]
        for rect, score in detections:
            small_at_detection = min(rect.width(), rect.height()) < HOG_WINDOW_PX  # type: ignore[attr-defined]
            raw = _scaled_box(rect, 1.0 / scale)
            box = (max(0, raw[0]), max(0, raw[1]), min(width - 1, raw[2]), min(height - 1, raw[3]))
            size = min(raw[2] - raw[0], raw[3] - raw[1])
            reason = ""
            if size < self.min_face:
                reason = f"face of {size} px is under the {self.min_face} px minimum"
            elif upsample_used and small_at_detection and score < self.min_upsampled_score:
                reason = f"small detection scored {score:.2f} < {self.min_upsampled_score}"
            kept_size = min(box[2] - box[0], box[3] - box[1])  # Face.size of the face it becomes
            candidates.append((raw, box, score, kept_size, reason))
        return Found(pixels=pixels, candidates=candidates, detect_scale=scale, upsample=upsample_used)

    @contextlib.contextmanager
    def _detector(self) -> Iterator[Any]:
        """A HOG detector for the calling thread alone until the block ends."""
        with self._detectors_lock:
            detector = self._detectors.pop() if self._detectors else None
            if detector is None:
                detector = copy.deepcopy(self._detector_template)  # ≈ 1 ms
        try:
            yield detector
        finally:
            with self._detectors_lock:
                self._detectors.append(detector)

    def _detect(
        self, pixels: np.ndarray, chosen: float | None = None, *, upsample: bool = True
    ) -> tuple[list[tuple[object, float]], float, int]:
        """HOG detections on a bounded-size copy: (rect at detection scale, score), scale, upsample.

        ``chosen``: the caller's scale (no upsampling); else the bounded size and upsampling rules
        (``upsample=False``: never upsample)."""
        import cv2

        size, steps = self._plan(pixels.shape[:2], chosen, upsample=upsample)
        work = pixels if size is None else cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        scale = 1.0 if size is None else size[0] / pixels.shape[1]
        with self._detector() as detector:
            rects, scores, _ = detector.run(work, steps, 0.0)
        return list(zip(rects, (float(s) for s in scores), strict=True)), scale, steps

    def _plan(
        self, shape: tuple[int, ...], chosen: float | None, *, upsample: bool
    ) -> tuple[tuple[int, int] | None, int]:
        """How :meth:`_detect` works on a picture of ``shape``: the (width, height) it is resized to
        (``None``: as it is) and the upsampling steps."""
        height, width = shape[:2]
        scale = min(1.0, self.detect_long_side / max(height, width))
        if chosen is not None:
            scale = min(scale, max(float(chosen), 16.0 / min(height, width)))
        size = (max(1, round(width * scale)), max(1, round(height * scale))) if scale < 1.0 else None
        longest = max(size) if size is not None else max(height, width)
        steps = 1 if upsample and chosen is None and longest <= self.upsample_below else 0
        return size, steps


def frontal_face_detector(home: Home | None) -> Any:
    """dlib's built-in HOG face detector, loaded from a copy saved in the data home.

    dlib builds it from a text copy compiled into the library, which takes ≈ 0.3 s (≈ 0.9 s on a busy
    machine); loading the saved binary copy takes ≈ 1 ms. The saved copy is used only when its sha256
    is the one pinned for the installed dlib version (:data:`FRONTAL_DETECTOR_SHA256`); a missing or
    changed copy is written again from the built-in one (and an unknown dlib version just uses that).
    """
    import dlib

    version = str(dlib.__version__)
    expected = FRONTAL_DETECTOR_SHA256.get(version)
    path = None
    if home is not None and expected is not None:
        path = home.root / "cache" / f"dlib-{version}-frontal_face_detector.svm"
        if path.is_file() and sha256_file(path) == expected:
            return dlib.fhog_object_detector(str(path))
    detector = dlib.get_frontal_face_detector()
    if path is not None and expected is not None:
        with contextlib.suppress(OSError):  # a read-only data home: build it each time
            _save_detector(detector, path, expected)
    return detector


def _save_detector(detector: Any, path: Path, expected: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        detector.save(name)
        if sha256_file(Path(name)) == expected:
            os.replace(name, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def _scaled_box(rect: object, factor: float) -> tuple[int, int, int, int]:
    """A dlib rectangle (inclusive corners) scaled by ``factor``; may reach outside the image."""
    left = round(rect.left() * factor)  # type: ignore[attr-defined]
    top = round(rect.top() * factor)  # type: ignore[attr-defined]
    right = round((rect.right() + 1) * factor) - 1  # type: ignore[attr-defined]
    bottom = round((rect.bottom() + 1) * factor) - 1  # type: ignore[attr-defined]
    return (int(left), int(top), int(right), int(bottom))
