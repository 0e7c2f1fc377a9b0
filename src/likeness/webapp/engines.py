"""Loaded face models shared by the app's jobs, one job at a time per copy.

Loading the dlib models (hash check + read, 0.7–1.7 s on the reference machine) used to happen in
every swap and every face-picker call. An :class:`EnginePool` keeps up to ``size`` loaded
:class:`~likeness.jobs.engines.Engines` and lends each to one job at a time: dlib's DNN recogniser keeps
per-call buffers in the network object, so two threads must never run the same copy at once.

``size`` is the app's concurrency for heavy jobs (Gradio runs at most that many of them at once), so
a borrower normally gets a copy at once; if a cancelled job's worker thread still holds one, the
next borrower waits for it rather than share it. Copies are loaded lazily, on first need, and kept
for the life of the app (the model files were verified when they were loaded; what runs is what
was verified). The pool belongs to one :class:`~likeness.webapp.studio.Studio`; nothing is global.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from likeness.home import Home

if TYPE_CHECKING:
    from likeness.jobs.engines import Engines


class EnginePool:
    """Up to ``size`` loaded copies of one backend's analyzer and swapper, lent one job at a time."""

    def __init__(self, backend: str, home: Home, size: int) -> None:
        if size < 1:
            raise ValueError(f"an engine pool needs at least one slot, not {size}")
        self.backend = backend
        self.home = home
        self.size = size
        self._idle: queue.LifoQueue[Engines] = queue.LifoQueue()
        self._loaded = 0
        self._lock = threading.Lock()

    @property
    def loaded(self) -> int:
        """How many copies have been loaded so far (at most ``size``)."""
        with self._lock:
            return self._loaded

    def _take(self) -> Engines:
        wait = 0.0
        while True:
            try:
                return self._idle.get(timeout=wait) if wait else self._idle.get_nowait()
            except queue.Empty:
                pass
            with self._lock:
                if self._loaded < self.size:
                    self._loaded += 1
                    break
            wait = 0.25  # every copy is lent (or being loaded): wait for one to come back
        from likeness.jobs.engines import load_engines

        try:
            return load_engines(self.backend, self.home)
        except BaseException:
            with self._lock:
                self._loaded -= 1
            raise

    @contextmanager
    def borrow(self) -> Iterator[Engines]:
        """A loaded copy for the caller alone until the ``with`` block ends."""
        engines = self._take()
        try:
            yield engines
        finally:
            self._idle.put(engines)
