"""Step 3 of the road (:mod:`likeness.jobs.road`): read a swap's inputs in two worker threads while the
models load.

dlib releases the GIL while its HOG detector runs (and PIL while it decodes) but holds it while it
reads its model files (≈ 0.6 s), so on two cores the threads that decode the inputs and detect their
faces (≈ 0.3 s for a 1080p still and a source photo) run during the loading instead of after it (see
:class:`InputReader` for the one condition: each thread must be inside its detection first), and the
target's detection goes on while the job's thread finishes the source's faces. Only the detection
runs here (:meth:`~likeness.faces.types.DetectFirstAnalyzer.find`); landmarks and embeddings follow in
the job's thread once the models are there (a reader started early also finishes them here: see
below). An analyzer that cannot detect before its models are loaded gets only the decoding done
here. Footage: its probe and first frame are read here, and that
frame is scanned (:class:`FirstScan`) for the job's first detection (a 1080p full-scale scan takes
≈ 0.17 s, which then runs beside the loading instead of after it).

``likeness swap`` starts the reader before it imports the rest of the job (:func:`start_early`): the
two threads decode and detect, and a third loads the models once both inputs are decoded, on the core
the imports leave idle (≈ 0.25 s of a still's start). Each still's thread then waits for the models and
finishes its analysis (:class:`Finished`: landmarks and embeddings, ≈ 80 ms a face with dlib's GIL
held), beside the imports instead of after them. The job then takes that reader over
(:meth:`InputReader.serves`) instead of starting one; a reader nobody takes over is closed unused.

Errors keep their order: a decoding error (the source's, then the target's) is raised when the job
asks for the source, before any face is analysed; a detection that fails here (a target too small to
hold a face) is simply not done here, and the job's own analysis raises the same error at the step
where it would have been raised without the threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from likeness.faces.types import Analyzer, DetectFirstAnalyzer, SplitDetectAnalyzer
from likeness.jobs.requests import SwapRequest, VideoSwapRequest
from likeness.media.background import close_pool
from likeness.media.image import Picture, load_image
from likeness.media.video_probe import VideoInfo, looks_like_video, probe_video

T = TypeVar("T")


class InputReader:
    """Reads a swap's inputs in two worker threads, one for the source photo and one for the target:
    each decodes (or probes footage), then detects the faces when the analyzer can without its other
    models. Use it as a context manager: leaving the block waits for both threads, so none outlives
    the job (an error one raised is seen only through :meth:`source` and :meth:`target`).

    A thread that waits for the GIL cannot start its next call while dlib reads a model file with the
    GIL held, so the job starts loading only once both threads have decoded (:meth:`wait_decoded`) and
    are inside their detection, which releases it.
    """

    def __init__(
        self, request: SwapRequest, analyzer: Analyzer, *, footage: bool, load_models: bool = False
    ) -> None:
        self._request = request
        self._analyzer = analyzer
        self._footage = footage
        self._load_models = load_models
        """Also load the analyzer's models, in a third thread, once both inputs are decoded."""
        self._decoded = (threading.Event(), threading.Event())
        self._closing = threading.Event()
        """Set by :meth:`close`: the steps not yet begun are skipped (a reader the job never took over,
        or a job that failed, waits only for the step each thread is in)."""
        self._failed: list[BaseException | None] = [None, None]
        self._pool = ThreadPoolExecutor(3 if load_models else 2, thread_name_prefix="read-inputs")
        self._source: Future[tuple[Picture, Any]] | None = None
        self._target: Future[tuple[Picture | VideoInfo, Any]] | None = None
        self._loading: Future[bool] | None = None

    def __enter__(self) -> InputReader:
        return self.start()

    def start(self) -> InputReader:
        """Start the threads (once: a reader started early is entered again by the job)."""
        if self._source is not None:
            return self
        request = self._request
        self._source = self._pool.submit(
            self._read, lambda: load_image(request.source, max_pixels=request.max_pixels), True, 0
        )
        if self._footage:
            self._target = self._pool.submit(self._read_footage)
        else:
            self._target = self._pool.submit(
                self._read, lambda: load_image(request.target, max_pixels=request.max_pixels), False, 1
            )
        if self._load_models:
            self._loading = self._pool.submit(self._load_when_decoded)
        return self

    def serves(self, request: SwapRequest, analyzer: Analyzer, *, footage: bool) -> bool:
        """Whether this reader reads ``request``'s inputs for ``analyzer`` as the job would."""
        return self._request is request and self._analyzer is analyzer and self._footage == footage

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        self.close(reraise=exc_type is None)

    def close(self, *, reraise: bool = True) -> None:
        """Wait for the threads (through a Ctrl-C too: see :func:`wait_out`); no thread outlives it.
        Steps not yet begun are skipped: a detection or model loading nobody will use is not waited
        for (the job's own calls do them when it needs them)."""
        self._closing.set()
        futures = [future for future in (self._source, self._target, self._loading) if future is not None]
        close_pool(self._pool, futures, reraise=reraise)

    def _load_when_decoded(self) -> bool:
        """Whether the models are loaded (a failure is not raised here: the job's own
        :func:`finish_loading` raises it again, at its step)."""
        self.wait_decoded()
        if self._closing.is_set():
            return False
        try:
            finish_loading(self._analyzer)
        except Exception:  # noqa: BLE001
            return False
        return True

    def _read(self, decode: Callable[[], T], portrait: bool | None, index: int) -> tuple[T, Any]:
        try:
            item = decode()
        except BaseException as error:
            self._failed[index] = error
            raise
        finally:
            self._decoded[index].set()
        if portrait is None or self._closing.is_set():
            return item, None
        found = _find(self._analyzer, item, portrait)  # type: ignore[arg-type]
        if found is None or self._loading is None:
            return item, found
        return item, self._finish_when_loaded(found)

    def _finish_when_loaded(self, found: Any) -> Any:
        """Early start: ``found`` finished here (landmarks and embeddings, :class:`Finished`) once the
        models are loaded, beside the job's imports instead of after them; ``found`` itself when the
        reader is closing, the models failed to load or the finishing fails (the job's own calls
        raise the error at their step)."""
        assert self._loading is not None
        if not self._loading.result() or self._closing.is_set():  # not loaded: not tried again here
            return found
        try:
            return Finished(found, self._analyzer.finish(found))  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001
            return found

    def _read_footage(self) -> tuple[VideoInfo, FirstScan | None]:
        """Footage: the probe and the first frame (decoded before the job loads its models), then that
        frame's detector scan (:class:`FirstScan`), made while they load."""
        # Decoded only for an analyzer that can scan it before its models are loaded.
        scanner = self._analyzer if isinstance(self._analyzer, SplitDetectAnalyzer) else None
        try:
            info = probe_video(self._request.target)
            first = _first_frame(info) if scanner is not None else None
        except BaseException as error:
            self._failed[1] = error
            raise
        finally:
            self._decoded[1].set()
        if first is None or scanner is None or self._closing.is_set():
            return info, None
        try:
            return info, FirstScan(first.index, first.pixels, scanner.find(first.pixels, scale=None))
        except Exception:  # noqa: BLE001 # the job's own detection raises it again, at its step
            return info, None

    def wait_decoded(self) -> None:
        """Return once both inputs are decoded (or failed to be)."""
        for event in self._decoded:
            event.wait()

    def source(self) -> tuple[Picture, Any]:
        """The source photo and its detection. Raises the error decoding either input raised first
        (the source's, then the target's: as without threads, no face is analysed before both inputs
        are read), so the source's faces can be finished while the target's detection still runs."""
        assert self._source is not None
        self.wait_decoded()
        for error in self._failed:
            if error is not None:
                raise error
        return self._source.result()

    def target(self) -> tuple[Picture | VideoInfo, Any]:
        """The target (a still, or footage's probe) and its detection (footage: its first frame's
        :class:`FirstScan`, or ``None``)."""
        assert self._target is not None
        return self._target.result()


@dataclass(frozen=True)
class Finished:
    """A still's detection (``found``) that the reader also finished: ``analysis`` is
    ``analyzer.finish(found)`` (see :func:`finished`)."""

    found: Any = field(repr=False)
    analysis: Any = field(repr=False)


def finished(analyzer: Any, found: Any) -> Any:
    """``analyzer.finish(found)``, or the analysis the reader already made of it (:class:`Finished`)."""
    return found.analysis if isinstance(found, Finished) else analyzer.finish(found)


@dataclass(frozen=True)
class FirstScan:
    """Footage: the detector scan of the target's first frame (index ``index``, ``pixels``), made
    while the models load (:meth:`SplitDetectAnalyzer.find` at full scale, as the job's first detection
    scans); the job finishes it when it reaches that frame with the same pixels."""

    index: int
    pixels: np.ndarray = field(repr=False)
    found: Any = field(repr=False)


def _first_frame(info: VideoInfo) -> Any:
    """The first frame of the footage, or ``None`` when it cannot be decoded here (the job's own
    reader raises the error at its step)."""
    from likeness.media.video import open_frames

    try:
        with open_frames(info.path, info=info) as reader:
            return next(iter(reader), None)
    except Exception:  # noqa: BLE001
        return None


def _find(analyzer: Analyzer, picture: Picture, portrait: bool) -> Any:
    if not isinstance(analyzer, DetectFirstAnalyzer):
        return None
    try:
        return analyzer.find(picture.pixels, portrait=portrait)
    except Exception:  # noqa: BLE001 # the job's own analysis raises it again, at its step
        return None


def finish_loading(analyzer: Analyzer) -> None:
    """Load what the analyzer deferred (a no-op for one that loaded everything already)."""
    if isinstance(analyzer, DetectFirstAnalyzer):
        analyzer.load_models()


def start_early(request: SwapRequest, analyzer: Analyzer) -> InputReader:
    """A started reader of ``request``'s inputs that also loads ``analyzer``'s models, for a command to
    start before it imports the rest of the job (:func:`likeness.jobs.road.run_job` takes it over)."""
    return InputReader(request, analyzer, footage=is_footage(request), load_models=True).start()


def is_footage(request: SwapRequest) -> bool:
    """Whether the swap's target is footage: a footage request, or a target that looks like a video."""
    return isinstance(request, VideoSwapRequest) or looks_like_video(request.target)
