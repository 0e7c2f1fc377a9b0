"""Choosing onnxruntime execution providers that really work, and saying why.

``onnxruntime.get_available_providers()`` lists what a build was compiled with, not what runs: a
CUDA build on a machine with a missing cuDNN, the wrong driver or no GPU still lists
``CUDAExecutionProvider``, and onnxruntime then quietly runs on the CPU (users of the peer tools call
this "CUDA setup pain"). :func:`choose_providers` therefore builds a one-node model in memory, opens a
session on the candidate provider, checks the provider actually bound to it and runs it. The result is
a :class:`ProviderChoice` with the providers to pass to sessions and a sentence saying why, which the
backends put into ``describe()`` (and so into the ledger and the C2PA manifest).

The request comes from the caller, else from the environment variable ``LIKENESS_PROVIDERS``
(``auto`` | ``cpu`` | ``cuda`` | ``tensorrt``; :func:`requested_providers`), which the CLI, the app and
``likeness.faces.backends.load_analyzer`` / ``likeness.swap.backends.load_swapper`` read.

onnxruntime is imported inside the functions: the embedded dlib path never pays for it.
"""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from likeness.errors import ModelMissing, UsageError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

REQUESTS = ("auto", "cpu", "cuda", "tensorrt")
"""``auto``: CUDA when it really works, else CPU. ``cuda`` / ``tensorrt``: try that, fall back to the CPU
with the reason. ``cpu``: CPU only. TensorRT is never chosen by ``auto``: it builds an engine per model
on first use, which takes minutes."""

PROVIDERS_ENV = "LIKENESS_PROVIDERS"
"""Environment variable holding the request (one of :data:`REQUESTS`; default ``auto``)."""

_GPU_REPAIR = "pip install --force-reinstall --no-deps onnxruntime-gpu"


def requested_providers(environ: Mapping[str, str] | None = None) -> str:
    """The provider request set in ``LIKENESS_PROVIDERS`` (``auto`` when unset or empty).

    ``environ`` defaults to ``os.environ``. An unknown value is a :class:`UsageError`, not a silent ``auto``.
    """
    value = (os.environ if environ is None else environ).get(PROVIDERS_ENV, "").strip().lower()
    if not value:
        return "auto"
    if value not in REQUESTS:
        raise UsageError(
            f"{PROVIDERS_ENV}={value!r} is not an execution provider request",
            hint=f"set it to one of: {', '.join(REQUESTS)} (or unset it for auto)",
        )
    return value


@dataclass(frozen=True)
class ProviderChoice:
    """The execution providers to open sessions with, and why these."""

    requested: str
    providers: tuple[str, ...]
    reason: str
    runtime: str
    """``onnxruntime <version> (<distribution>)``."""

    @property
    def device(self) -> str:
        """``cuda``, ``tensorrt`` or ``cpu``: what the first provider runs on."""
        return {CUDA: "cuda", TENSORRT: "tensorrt"}.get(self.providers[0], "cpu")

    def describe(self) -> dict[str, str]:
        return {
            "onnxruntime": self.runtime,
            "providers": ",".join(self.providers),
            "provider_reason": self.reason,
        }


def import_onnxruntime():
    """Import onnxruntime or raise :class:`ModelMissing` saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelMissing(
            f"the insightface backend needs onnxruntime, which cannot be imported ({exc})",
            hint="pip install 'likeness[insightface]'  (or onnxruntime-gpu for CUDA, see README)",
        ) from exc
    return onnxruntime


def installed_runtimes() -> list[str]:
    """Which onnxruntime distributions pip has installed (more than one means they overwrite each other)."""
    names = []
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        names.append(dist)
    return names


def probe_model_bytes() -> bytes:
    """A one-node model (``y = x + x`` on a [1, 4] float tensor), serialised."""
    import onnx

    node = onnx.helper.make_node("Add", ["x", "x"], ["y"], name="probe_add")
    graph = onnx.helper.make_graph(
        [node],
        "likeness_provider_probe",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def probe_provider(provider: str) -> tuple[bool, str]:
    """Open and run a tiny session on ``provider`` alone; ``(works, what happened)``."""
    ort = import_onnxruntime()
    if provider != CPU:
        preload = getattr(ort, "preload_dlls", None)
        if callable(preload):
            try:
                preload()  # loads CUDA/cuDNN from the nvidia-* wheels where they are installed
            except Exception as exc:  # noqa: BLE001 - a failed preload is a reason, not a crash
                return False, f"onnxruntime.preload_dlls() failed: {exc}"
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "provider not in available provider names"
            session = ort.InferenceSession(probe_model_bytes(), sess_options=options, providers=[provider])
        bound = list(session.get_providers())
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        (y,) = session.run(None, {"x": x})
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own and RuntimeErrors
        return False, f"a test session on {provider} failed: {str(exc).strip().splitlines()[0]}"
    if not bound or bound[0] != provider:
        return False, f"onnxruntime did not bind {provider} to a test session (it bound {', '.join(bound)})"
    if not np.allclose(y, 2 * x):
        return False, f"a test session on {provider} computed a wrong result"
    return True, f"a test session ran on {provider}"


def choose_providers(request: str = "auto", *, available: Sequence[str] | None = None) -> ProviderChoice:
    """The providers to use for ``request`` (see :data:`REQUESTS`), each GPU one tried before it is chosen.

    ``available`` overrides what onnxruntime says it was built with (to test the fallback when a
    listed provider does not actually work); by default it is ``onnxruntime.get_available_providers()``.
    """
    if request not in REQUESTS:
        raise UsageError(
            f"unknown execution provider request {request!r}", hint=f"use one of: {', '.join(REQUESTS)}"
        )
    ort = import_onnxruntime()
    dists = installed_runtimes()
    runtime = f"onnxruntime {ort.__version__} ({'+'.join(dists) or 'unknown distribution'})"
    listed = list(ort.get_available_providers() if available is None else available)
    clash = ""
    if len(dists) > 1:
        clash = (
            f"; note: {' and '.join(dists)} are both installed and share one module folder, the last one "
            f"installed wins (repair: {_GPU_REPAIR})"
        )
    if request == "cpu":
        return ProviderChoice(request, (CPU,), "CPU requested" + clash, runtime)

    wanted = TENSORRT if request == "tensorrt" else CUDA
    if wanted not in listed:
        if "onnxruntime-gpu" in dists:
            why = f"this onnxruntime build does not list {wanted} ({_GPU_REPAIR} may repair it)"
        else:
            why = (
                f"this onnxruntime build has no {wanted} "
                "(the 'onnxruntime' package is CPU-only; install onnxruntime-gpu)"
            )
        return _on_cpu(request, why + clash, runtime)
    works, what = probe_provider(wanted)
    if not works:
        return _on_cpu(request, what + clash, runtime)
    chain = (TENSORRT, CUDA, CPU) if wanted == TENSORRT and CUDA in listed else (wanted, CPU)
    return ProviderChoice(request, chain, f"{wanted}: {what}{clash}", runtime)


def _on_cpu(request: str, why: str, runtime: str) -> ProviderChoice:
    if request == "auto":
        return ProviderChoice(request, (CPU,), f"CPU: {why}", runtime)
    return ProviderChoice(request, (CPU,), f"{request} was requested, but {why}; running on the CPU", runtime)
