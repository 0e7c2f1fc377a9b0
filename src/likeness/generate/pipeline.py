"""Load a local diffusers pipeline (offline only) and run it, timing each stage.

``load_generator`` finds the model folder (:func:`likeness.generation_models.locate_model`), hashes it,
decides its licence, and loads it with ``local_files_only=True`` (``HF_HUB_OFFLINE=1`` is set for the
load, so nothing can be fetched). ``Generator.run`` returns the image as H×W×3 uint8 RGB and the time
spent encoding the prompt, denoising and decoding (measured by wrapping the pipeline's own
``encode_prompt`` and ``vae.decode`` for the call, so diffusers' post-processing — e.g. SDXL's
invisible watermark — still runs as diffusers made it).

A pipeline whose safety checker flags the image raises :class:`GenerationFiltered` instead of
returning the black image it would otherwise hand back silently.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from likeness.errors import BadInput, ModelMissing, UsageError
from likeness.generation_models import ModelLicence, folder_sha256, locate_model, model_licence
from likeness.home import Home
from likeness.models import ModelUse

Task = Literal["text-to-image", "inpainting"]
TASKS = ("text-to-image", "inpainting")
HASHED = "hashed"
""":class:`ModelUse` state of a generation model: its folder's sha256 was computed at load (upstream
publishes no hash to pin)."""


class GenerationFiltered(UsageError):
    """The model's own safety checker flagged the image; nothing is written."""

    kind = "safety_filter"


@dataclass(frozen=True)
class GenerationSettings:
    """What one image is made from (everything but the identity)."""

    prompt: str
    negative: str | None = None
    steps: int = 30
    guidance: float = 7.0
    seed: int | None = None
    width: int = 512
    height: int = 512
    strength: float = 1.0
    """Inpainting only: how much of the masked area is re-made (1.0: all of it)."""

    def check(self) -> None:
        if not self.prompt.strip():
            raise UsageError("--prompt is empty", hint="describe the image to generate")
        if self.steps < 1:
            raise UsageError(f"--steps must be at least 1, not {self.steps}")
        if self.guidance < 0:
            raise UsageError(f"--guidance must not be negative, not {self.guidance}")
        if self.width < 64 or self.height < 64 or self.width % 8 or self.height % 8:
            raise UsageError(
                f"--size {self.width}x{self.height}: each side must be a multiple of 8 and at least 64",
                hint="e.g. --size 512x512 (SD 1.5) or --size 1024x1024 (SDXL)",
            )
        if not 0.0 < self.strength <= 1.0:
            raise UsageError(f"strength must be in (0, 1], not {self.strength}")


def parse_size(text: str) -> tuple[int, int]:
    """``"512x768"`` → ``(512, 768)`` (width, height)."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.strip().isdigit() or not height.strip().isdigit():
        raise UsageError(f"--size {text!r} is not WIDTHxHEIGHT", hint="e.g. --size 512x512")
    return int(width), int(height)


@dataclass(frozen=True)
class StageSeconds:
    encode: float
    denoise: float
    decode: float


@dataclass
class Generator:
    """A loaded pipeline and the facts the ledger and manifest state about it."""

    pipe: Any = field(repr=False)
    task: Task
    folder: Path
    pipeline_class: str
    licence: ModelLicence
    sha256: str
    faceid: ModelUse | None = None
    """The IP-Adapter FaceID weights attached with :meth:`attach_faceid`, if any."""
    diffusers_watermark: bool = False
    """diffusers' own invisible watermark is active (SDXL with invisible-watermark installed)."""

    def model_use(self) -> ModelUse:
        return ModelUse(
            name=self.licence.name,
            file=self.folder.name,
            sha256=self.sha256,
            licence=self.licence.licence,
            commercial_use=self.licence.commercial_use,
            state=HASHED,
        )

    def model_files(self) -> list[ModelUse]:
        return [self.model_use(), *([self.faceid] if self.faceid is not None else [])]

    def describe(self) -> dict[str, str]:
        data = {
            "pipeline": self.pipeline_class,
            "task": self.task,
            "model": self.licence.name,
            "model_sha256": self.sha256,
            "licence": self.licence.licence,
            "licence_decided_by": self.licence.decided_by,
            "diffusers_watermark": "active" if self.diffusers_watermark else "none",
        }
        if self.faceid is not None:
            data["identity_adapter"] = f"{self.faceid.file} sha256:{self.faceid.sha256}"
        return data

    def attach_faceid(self, weights: Path, use: ModelUse) -> None:
        """Load IP-Adapter FaceID weights through diffusers' public loader (no image encoder)."""
        if not hasattr(self.pipe, "load_ip_adapter"):
            raise UsageError(
                f"{self.pipeline_class} cannot take an IP-Adapter; --identity needs a Stable Diffusion "
                "1.5 or SDXL pipeline",
            )
        try:
            with _offline():
                self.pipe.load_ip_adapter(
                    str(weights.parent),
                    subfolder="",
                    weight_name=weights.name,
                    image_encoder_folder=None,
                    local_files_only=True,
                )
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelMissing(
                f"{weights}: not IP-Adapter FaceID weights this pipeline can load "
                f"({type(exc).__name__}: {exc})",
                hint="use ip-adapter-faceid_sd15.bin with an SD 1.5 model (h94/IP-Adapter-FaceID)",
            ) from exc
        self.faceid = use

    def run(
        self,
        settings: GenerationSettings,
        *,
        face_embedding: np.ndarray | None = None,
        image: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, StageSeconds]:
        """One image (H×W×3 uint8) and the seconds each stage took."""
        import torch

        kwargs: dict[str, Any] = {
            "prompt": settings.prompt,
            "negative_prompt": settings.negative,
            "num_inference_steps": settings.steps,
            "guidance_scale": settings.guidance,
            "output_type": "np",
        }
        if settings.seed is not None:
            kwargs["generator"] = torch.Generator(device="cpu").manual_seed(settings.seed)
        if self.task == "inpainting":
            from PIL import Image

            assert image is not None and mask is not None
            kwargs["image"] = Image.fromarray(image)
            kwargs["mask_image"] = Image.fromarray(mask)
            kwargs["height"], kwargs["width"] = image.shape[0], image.shape[1]
            kwargs["strength"] = settings.strength
        else:
            kwargs["height"], kwargs["width"] = settings.height, settings.width
        if face_embedding is not None:
            if self.faceid is None:
                raise UsageError("an identity embedding was given but no FaceID adapter is attached")
            emb = torch.from_numpy(np.asarray(face_embedding, dtype=np.float32).reshape(1, 1, -1))
            emb = emb.to(device=self.pipe.device, dtype=self.pipe.unet.dtype)
            kwargs["ip_adapter_image_embeds"] = [torch.cat([torch.zeros_like(emb), emb])]
        spent = {"encode": 0.0, "decode": 0.0}
        start = time.perf_counter()
        with (
            _timing(self.pipe, "encode_prompt", spent, "encode"),
            _timing(getattr(self.pipe, "vae", None), "decode", spent, "decode"),
            torch.inference_mode(),
        ):
            result = self.pipe(**kwargs)
        total = time.perf_counter() - start
        flagged = getattr(result, "nsfw_content_detected", None)
        if flagged and any(bool(f) for f in flagged):
            raise GenerationFiltered(
                "the model's safety checker flagged the generated image; nothing was written",
                hint="change the prompt (the checker is part of the model folder you chose)",
            )
        pixels = np.asarray(result.images[0])
        if pixels.dtype != np.uint8:
            pixels = (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if pixels.ndim != 3 or pixels.shape[2] != 3:
            raise BadInput(f"the pipeline returned an image of shape {pixels.shape}; expected H×W×3")
        denoise = max(0.0, total - spent["encode"] - spent["decode"])
        return np.ascontiguousarray(pixels), StageSeconds(spent["encode"], denoise, spent["decode"])


@contextlib.contextmanager
def _timing(owner: Any, method: str, spent: dict[str, float], key: str) -> Iterator[None]:
    """Add the time of every ``owner.method`` call during the block to ``spent[key]``."""
    original: Callable[..., Any] | None = getattr(owner, method, None) if owner is not None else None
    if original is None:
        yield
        return

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - start

    setattr(owner, method, timed)
    try:
        yield
    finally:
        with contextlib.suppress(AttributeError):
            delattr(owner, method)  # back to the class's method


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """``HF_HUB_OFFLINE=1`` for the block: a load can never reach the network."""
    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before


def pipeline_class_name(folder: Path) -> str:
    """``_class_name`` from ``model_index.json``; :class:`ModelMissing` when the folder is no pipeline."""
    index = folder / "model_index.json"
    try:
        return str(json.loads(index.read_text(encoding="utf-8"))["_class_name"])
    except FileNotFoundError as exc:
        raise ModelMissing(
            f"{folder}: no model_index.json, so not a diffusers pipeline folder",
            hint="pass the folder that holds model_index.json (and unet/, vae/, text_encoder/ …)",
        ) from exc
    except (OSError, ValueError, KeyError) as exc:
        raise ModelMissing(f"{index}: cannot be read as a diffusers model index ({exc})") from exc


def load_generator(home: Home, model: str, *, task: Task = "text-to-image") -> Generator:
    """Find, hash and load the model called ``model`` for ``task`` (offline only)."""
    if task not in TASKS:
        raise UsageError(f"unknown generation task {task!r}")
    folder = locate_model(home, model)
    class_name = pipeline_class_name(folder)
    licence = model_licence(folder, requested=model)
    sha256 = folder_sha256(folder)
    try:
        import diffusers
    except ImportError as exc:
        raise ModelMissing(
            "generation needs diffusers, transformers and safetensors, which are not installed",
            hint="pip install 'likeness[generate]'",
        ) from exc
    loader = diffusers.AutoPipelineForInpainting if task == "inpainting" else diffusers.DiffusionPipeline
    try:
        with _offline():
            pipe = loader.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelMissing(
            f"{folder}: the {class_name} pipeline cannot be loaded for {task} ({type(exc).__name__}: {exc})",
            hint="check that the folder is complete (every component's weights and configs), and that "
            "an edit uses an inpainting model",
        ) from exc
    if task == "inpainting" and "Inpaint" not in type(pipe).__name__:
        raise UsageError(f"{folder}: {class_name} is not an inpainting pipeline; an edit needs one")
    pipe.set_progress_bar_config(disable=True)
    watermark = getattr(pipe, "watermark", None) is not None
    return Generator(
        pipe=pipe,
        task=task,
        folder=folder,
        pipeline_class=type(pipe).__name__,
        licence=licence,
        sha256=sha256,
        diffusers_watermark=watermark,
    )
