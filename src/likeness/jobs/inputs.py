"""Step 3 of the road (:mod:`likeness.jobs.road`): read a swap's inputs in a worker thread while the
models load.

dlib releases the GIL while its HOG detector runs (and PIL while it decodes) but holds it while it
reads its model files (≈ 0.6 s), so on two cores a thread that decodes the inputs and detects their
faces (≈ 0.3 s for a 1080p still and a source photo) runs during the loading instead of after it.
Only the detection runs here (:meth:`~likeness.faces.types.DetectFirstAnalyzer.find`); landmarks and
embeddings follow in the job's thread once the models are there. An analyzer that cannot detect
before its models are loaded gets only the decoding done here.

Errors keep their order: a decoding error is raised when the job asks for the inputs; a detection that
fails here (a target too small to hold a face) is simply not done here, and the job's own analysis
raises the same error at the step where it would have been raised without the thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from likeness.faces.types import Analyzer, DetectFirstAnalyzer
from likeness.jobs.requests import SwapRequest
from likeness.media.image import Picture, load_image
from likeness.media.video_probe import VideoInfo, probe_video

T = TypeVar("T")


@dataclass(frozen=True)
class Inputs:
    """A swap's decoded inputs: the source photo, and the target (a still, or footage's probe), with
    what the analyzer's detection found in each (``None``: not detected here)."""

    source: Picture
    still: Picture | None = None
    footage: VideoInfo | None = None
    source_found: Any = None
    still_found: Any = None


def read_inputs(request: SwapRequest, analyzer: Analyzer, *, footage: bool) -> Inputs:
    """Decode the source and the target (a still, or probe footage), then detect their faces when the
    analyzer can without its other models."""
    source = load_image(request.source, max_pixels=request.max_pixels)
    if footage:
        return Inputs(source, footage=probe_video(request.target), source_found=_find(analyzer, source, True))
    still = load_image(request.target, max_pixels=request.max_pixels)
    return Inputs(
        source,
        still=still,
        source_found=_find(analyzer, source, True),
        still_found=_find(analyzer, still, False),
    )


def _find(analyzer: Analyzer, picture: Picture, portrait: bool) -> Any:
    if not isinstance(analyzer, DetectFirstAnalyzer):
        return None
    try:
        return analyzer.find(picture.pixels, portrait=portrait)
    except Exception:  # noqa: BLE001 # the job's own analysis raises it again, at its step
        return None


@contextmanager
def in_background(work: Callable[[], T], *, name: str = "read-inputs") -> Iterator[Future[T]]:
    """``work()`` running in a thread; leaving the block waits for it, so no thread outlives the job
    (an error it raised is seen only through the future)."""
    with ThreadPoolExecutor(1, thread_name_prefix=name) as pool:
        yield pool.submit(work)


def finish_loading(analyzer: Analyzer) -> None:
    """Load what the analyzer deferred (a no-op for one that loaded everything already)."""
    if isinstance(analyzer, DetectFirstAnalyzer):
        analyzer.load_models()
