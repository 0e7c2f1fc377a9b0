"""The production swapper: insightface's inswapper_128 run with onnxruntime, pasted back softly.

Steps for one target face:

1. align the target face onto the ArcFace template in a 128×128 crop (its five keypoints);
2. ``latent = normalise(source_embedding @ emap)``, where ``emap`` is the model file's **last
   initializer** (how insightface's INSwapper reads it) and the source embedding is the source face's
   ArcFace ``normed_embedding`` from the insightface analyzer;
3. run the model on the crop (RGB in [0, 1]) and the latent: a 128×128 face with the source's identity
   and the target's pose, expression and light;
4. colour-match it to the target crop (Lab mean, bounded contrast) inside the face mask;
5. paste it back through a feathered mask that follows the target's 106-point face outline (see
   :mod:`likeness.swap.paste_back`), bicubically upsampled in one warp;
6. optionally restore the pasted face with GFPGAN or CodeFormer (ONNX) when such a file is in the
   models directory — the 128 px limit is what users of the peer tools complain about most.

The model file is read once, its sha256 taken over exactly the bytes that onnxruntime then loads
(:meth:`ModelStore.read_verified`), so a file changed between check and load cannot slip through.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from likeness.errors import BadInput, ModelMissing, UsageError
from likeness.faces.insightface_backend import StageTimer, timed
from likeness.faces.types import Face
from likeness.model_store import INSWAPPER_128, MISSING, RESTORERS, FileStatus, ModelPackage, ModelStore
from likeness.models import ModelUse
from likeness.onnx_runtime import ProviderChoice, choose_providers, import_onnxruntime
from likeness.swap import paste_back

NAME = "inswapper"
CROP = 128
RESTORE_SIZE = 512
COLOUR_MODES = ("lab", "none")
RESTORE_REQUESTS = ("auto", "none", *(entry.name for entry in RESTORERS))


def _session(data: bytes, providers: ProviderChoice):
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(data, sess_options=options, providers=list(providers.providers))


def _check_image(pixels: np.ndarray, what: str) -> None:
    if (
        not isinstance(pixels, np.ndarray)
        or pixels.dtype != np.uint8
        or pixels.ndim != 3
        or pixels.shape[2] != 3
    ):
        raise BadInput(
            f"the {what} must be an H×W×3 uint8 RGB image, got {getattr(pixels, 'shape', type(pixels))}"
        )


class FaceRestorer:
    """A GFPGAN- or CodeFormer-style ONNX model run on an FFHQ-aligned 512×512 crop of a face.

    Input and output are RGB in [-1, 1]; a second model input (CodeFormer's fidelity weight) gets
    ``fidelity``.
    """

    def __init__(self, session: object, status: FileStatus, *, fidelity: float = 0.7) -> None:
        self._session = session
        self.status = status
        self.fidelity = fidelity
        inputs = session.get_inputs()  # type: ignore[attr-defined]
        self._image_input = inputs[0].name
        self._weight_input = inputs[1] if len(inputs) > 1 else None
        self._output = session.get_outputs()[0].name  # type: ignore[attr-defined]

    @classmethod
    def load(cls, store: ModelStore, entry: ModelPackage, providers: ProviderChoice) -> FaceRestorer:
        data, status = store.read_verified(entry.files[0])
        return cls(_session(data, providers), status)

    def restore(self, image: np.ndarray, face: Face) -> np.ndarray:
        """``image`` with ``face`` (found at its current place) restored; other pixels unchanged."""
        crop, matrix = paste_back.align_crop(image, face.landmarks5, paste_back.FFHQ_512, RESTORE_SIZE)
        blob = (crop.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
        feed = {self._image_input: np.ascontiguousarray(blob)}
        if self._weight_input is not None:
            dtype = np.float64 if "double" in self._weight_input.type else np.float32
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in (self._weight_input.shape or [1])]
            feed[self._weight_input.name] = np.full(shape, self.fidelity, dtype=dtype)
        (out,) = self._session.run([self._output], feed)  # type: ignore[attr-defined]
        restored = (np.clip(out[0].transpose(1, 2, 0), -1.0, 1.0) + 1.0) * 127.5
        mask = paste_back.face_mask(RESTORE_SIZE, matrix, face.landmarks, face.landmarks5)
        return paste_back.paste(image, restored, mask, matrix)

    def describe(self) -> str:
        return f"{self.status.spec.filename} sha256:{self.status.sha256} ({self.status.state})"


def find_restorer(
    store: ModelStore, request: str, providers: ProviderChoice
) -> tuple[FaceRestorer | None, str]:
    """The restorer for ``request`` (``auto``, ``none`` or a package name) and a note saying what was chosen.

    ``auto`` uses the first restorer file present; a present file that fails its hash check is an error,
    never silently skipped. A named restorer must be present.
    """
    if request not in RESTORE_REQUESTS:
        raise UsageError(
            f"unknown face restoration {request!r}", hint=f"use one of: {', '.join(RESTORE_REQUESTS)}"
        )
    if request == "none":
        return None, "none (turned off)"
    candidates = [entry for entry in RESTORERS if request in ("auto", entry.name)]
    for entry in candidates:
        status = store.check(entry.files[0])
        if status.state == MISSING:
            if request != "auto":
                raise store.missing_error(status)
            continue
        restorer = FaceRestorer.load(store, entry, providers)
        return restorer, restorer.describe()
    where = ", ".join(str(store.path(entry.files[0])) for entry in RESTORERS)
    return (
        None,
        f"none (no restoration model present; looked for {where}): "
        "the swapped face is the 128 px output, upsampled",
    )


class InswapperSwapper:
    """Swapper on inswapper_128 (see the module docstring).

    Build it with :meth:`load`; the pipeline does so through ``load_swapper("insightface", home)``.
    """

    name = NAME

    def __init__(
        self,
        session: object,
        emap: np.ndarray,
        status: FileStatus,
        providers: ProviderChoice,
        *,
        restorer: FaceRestorer | None = None,
        restorer_note: str = "none",
        colour: str = "lab",
        load_seconds: float = 0.0,
    ) -> None:
        if colour not in COLOUR_MODES:
            raise UsageError(
                f"unknown colour matching {colour!r}", hint=f"use one of: {', '.join(COLOUR_MODES)}"
            )
        self._session = session
        self.emap = emap
        self.status = status
        self.providers = providers
        self.restorer = restorer
        self.restorer_note = restorer_note
        self.colour = colour
        self.load_seconds = load_seconds
        inputs = session.get_inputs()  # type: ignore[attr-defined]
        self._target_input, self._source_input = inputs[0].name, inputs[1].name
        self._output = session.get_outputs()[0].name  # type: ignore[attr-defined]

    @classmethod
    def load(
        cls,
        models_dir: Path,
        *,
        providers: str = "auto",
        restore: str = "auto",
        colour: str = "lab",
        store: ModelStore | None = None,
    ) -> InswapperSwapper:
        """Verify and load ``<models_dir>/inswapper_128.onnx`` and a restorer (see find_restorer)."""
        started = time.perf_counter()
        store = store or ModelStore(Path(models_dir))
        data, status = store.read_verified(INSWAPPER_128.files[0])  # raises ModelMissing
        choice = choose_providers(providers)
        try:
            import onnx
            from onnx import numpy_helper

            model = onnx.load_model_from_string(data)
            emap = numpy_helper.to_array(model.graph.initializer[-1]).astype(np.float32)
            del model
            session = _session(data, choice)
        except Exception as exc:
            raise ModelMissing(
                f"{status.path} passed its hash check but onnxruntime could not load it: "
                f"{type(exc).__name__}: {exc}",
                hint="run `likeness models verify inswapper_128`; if it is fine, report this message",
            ) from exc
        del data
        restorer, note = find_restorer(store, restore, choice)
        return cls(
            session,
            emap,
            status,
            choice,
            restorer=restorer,
            restorer_note=note,
            colour=colour,
            load_seconds=time.perf_counter() - started,
        )

    # --------------------------------------------------------------------------------------------- swap

    def latent(self, source_face: Face) -> np.ndarray:
        """The model's ``source`` input: the source's ArcFace embedding through ``emap``, unit length."""
        embedding = np.asarray(source_face.embedding, dtype=np.float32).ravel()
        if embedding.size != self.emap.shape[0] or not source_face.embedding_space.startswith("arcface_"):
            raise UsageError(
                f"the inswapper swapper needs the source face analysed by the insightface backend (a 512-D "
                f"ArcFace embedding); this one is {embedding.size}-D from '{source_face.embedding_space}'",
                hint="use --backend insightface for both analysis and swapping",
            )
        embedding = embedding / max(float(np.linalg.norm(embedding)), 1e-12)
        latent = embedding.reshape(1, -1) @ self.emap
        return (latent / max(float(np.linalg.norm(latent)), 1e-12)).astype(np.float32)

    def generate(
        self, target: np.ndarray, target_face: Face, source_face: Face
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the model: ``(swapped crop, float RGB 0..255; the aligned target crop; the 2×3 alignment)``."""
        points = np.asarray(target_face.landmarks5, dtype=np.float64)
        if points.shape != (5, 2):
            raise UsageError(
                f"the target face has no five-point landmarks (shape {points.shape}); inswapper needs them",
                hint="analyse the target with the insightface backend",
            )
        crop, matrix = paste_back.align_crop(target, points, paste_back.arcface_template(CROP), CROP)
        blob = np.ascontiguousarray((crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None])
        (out,) = self._session.run(  # type: ignore[attr-defined]
            [self._output], {self._target_input: blob, self._source_input: self.latent(source_face)}
        )
        swapped = np.clip(out[0].transpose(1, 2, 0), 0.0, 1.0) * 255.0
        return swapped.astype(np.float32), crop, matrix

    def swap(
        self,
        target: np.ndarray,
        target_face: Face,
        source: np.ndarray,
        source_face: Face,
        *,
        timer: StageTimer | None = None,
    ) -> np.ndarray:
        """A new image: ``target`` with ``target_face`` replaced by ``source_face``'s likeness.

        ``source`` (the source image) is not needed beyond ``source_face``'s embedding; it is part of the
        Swapper protocol. ``timer`` gets stages swap, paste-back and restore.
        """
        _check_image(target, "target")
        _check_image(source, "source")
        with timed(timer, "swap"):
            swapped, crop, matrix = self.generate(target, target_face, source_face)
        with timed(timer, "paste-back"):
            mask = paste_back.face_mask(CROP, matrix, target_face.landmarks, target_face.landmarks5)
            if self.colour == "lab":
                swapped = paste_back.match_colours(swapped, crop, mask)
            result = paste_back.paste(target, swapped, mask, matrix)
        if self.restorer is not None:
            with timed(timer, "restore"):
                result = self.restorer.restore(result, target_face)
        return result

    def model_files(self) -> list[ModelUse]:
        """The verified files this swapper runs (name, file, sha256, licence, commercial use)."""
        statuses = [self.status] + ([self.restorer.status] if self.restorer is not None else [])
        return [ModelUse.from_status(status) for status in statuses]

    def describe(self) -> dict[str, str]:
        info = {
            "swapper": NAME,
            "model": f"{self.status.spec.filename} sha256:{self.status.sha256} ({self.status.state})",
            "model_licence": self.status.spec.licence,
            "colour_matching": self.colour,
            "mask": "feathered convex hull of the target's 106 landmarks (5-point ellipse without them); "
            "occluders in front of the face are not excluded",
            "restoration": self.restorer_note,
        }
        info.update(self.providers.describe())
        return info
