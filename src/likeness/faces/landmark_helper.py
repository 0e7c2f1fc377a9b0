"""The 68-point landmark model in a helper process, for a one-shot command (``likeness swap`` on a still
or on footage).

dlib holds the GIL for the whole ≈ 0.5 s it takes to read the 95 MB 68-point model, so in one process
nothing else runs Python meanwhile: not the command's imports, not the other models' loading. A process
forked at the start of the command reads it while the command imports its modules and loads the other
models, then computes the 68 landmarks of the faces the command finds (one message per picture, with a
crop around each face). The same model file and the same pixels give the same points.

The helper verifies the file's sha256 before dlib reads it, as the analyzer does, and reports the file
it verified (:meth:`LandmarkHelper.ready`). It ignores Ctrl-C: the command stops it when it ends
(:meth:`LandmarkHelper.close`), and it exits by itself when its socket closes, so it never outlives the
command, even one killed with ``kill -9``. It is started only
where forking is safe: on a POSIX system, from a process running one thread.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import socket
import struct
import threading
from typing import Any

import numpy as np

from likeness.errors import LikenessError, ModelMissing
from likeness.home import Home
from likeness.models import VerifiedModel, locate_verified

_LENGTH = struct.Struct("<Q")
MODEL = "dlib_landmarks_68"
CROP_MARGIN = 1.0
"""Margin around a face's box, in box sizes, of the crop sent to the helper. The 68 points found in the
crop are those found in the whole picture: on every face of the test photos (135) already with 0.5."""


class HelperGone(LikenessError):
    """The helper process ended or answered out of turn (the caller loads the model itself)."""


class LandmarkHelper:
    """A forked process holding the 68-point predictor; see the module docstring."""

    def __init__(self, pid: int, channel: socket.socket) -> None:
        self._pid = pid
        self._channel = channel
        self._verified: VerifiedModel | None = None
        self._turn = threading.Lock()
        """One request and its answer at a time on the channel: two threads may ask at once (a still
        swap's two input readers), and interleaved messages would scramble both answers."""

    @classmethod
    def start(cls, home: Home | None) -> LandmarkHelper | None:
        """Fork the helper, which starts reading the model at once; ``None`` where forking is unsafe."""
        if not hasattr(os, "fork") or threading.active_count() != 1:
            return None
        import dlib  # noqa: F401 # imported before the fork: the helper does not import it again

        parent, child = socket.socketpair()
        gc.freeze()  # the objects both processes share: no collection writes to them (copy-on-write)
        pid = os.fork()
        if pid == 0:  # the helper: never returns
            parent.close()
            _serve(child, home)
        child.close()
        return cls(pid, parent)

    def ready(self) -> VerifiedModel:
        """The verified model file, once the helper has loaded it; :class:`ModelMissing` when the file
        failed its check (dlib never read it), :class:`HelperGone` when the helper is gone."""
        with self._turn:
            if self._verified is None:
                kind, *value = self._receive()
                if kind == "error":
                    raise ModelMissing(value[0], hint=value[1])
                if kind != "ready":
                    raise HelperGone(f"the landmark helper answered {kind!r} before it was ready")
                self._verified = value[0]
            return self._verified

    def points(self, pixels: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
        """The 68 landmarks (68×2 float32, image pixels) of each box (left, top, right, bottom).

        Each face travels as the crop :func:`crop_around` cuts (the box and :data:`CROP_MARGIN` of its
        size on every side, within the image), not the whole picture: the predictor reads pixels
        near the face only, and pixels outside the image read as 0 either way."""
        self.ready()
        if not boxes:
            return []
        crops = [crop_around(pixels, box) for box in boxes]
        with self._turn:
            try:
                _send(self._channel, [(crop, shifted) for crop, shifted, _ in crops])
            except OSError as exc:  # the helper died since it was ready (a broken pipe)
                raise HelperGone(f"the landmark helper is gone ({exc})") from exc
            kind, *value = self._receive()
        if kind != "points" or len(value[0]) != len(boxes):
            raise HelperGone(f"the landmark helper answered {kind!r} to a request for landmarks")
        return [points + offset for points, (_, _, offset) in zip(value[0], crops, strict=True)]

    def close(self) -> None:
        """Stop the helper now (it holds nothing that needs cleaning up) and reap it."""
        if self._pid == 0:
            return
        self._channel.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        os.waitpid(self._pid, 0)
        self._pid = 0

    def __enter__(self) -> LandmarkHelper:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _receive(self) -> tuple[Any, ...]:
        try:
            message = _receive(self._channel)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            raise HelperGone(f"the landmark helper is gone ({exc})") from exc
        if not isinstance(message, tuple) or not message:
            raise HelperGone("the landmark helper sent something that is not an answer")
        return message


def _serve(channel: socket.socket, home: Home | None) -> None:
    """The helper's whole life: verify and load the model, then answer requests until the socket closes."""
    status = 0
    try:
        gc.disable()  # a collection would write to every shared object's page (copy-on-write)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        import dlib

        try:
            verified = locate_verified(MODEL, home)
        except ModelMissing as exc:
            _send(channel, ("error", exc.reason, exc.hint))
            return
        predictor = dlib.shape_predictor(str(verified.path))
        _send(channel, ("ready", verified))
        while True:
            try:
                faces = _receive(channel)
            except EOFError:
                return
            shapes = [predictor(crop, dlib.rectangle(*box)) for crop, box in faces]
            _send(channel, ("points", [shape_points(shape) for shape in shapes]))
    except BaseException:  # noqa: BLE001 # the command sees the helper gone and loads the model itself
        status = 1
    finally:
        os._exit(status)  # never the parent's exit handlers


def crop_around(
    pixels: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[np.ndarray, tuple[int, int, int, int], np.ndarray]:
    """The part of ``pixels`` a face's landmarks are found in: (crop, the box in the crop's pixels, the
    crop's top-left corner as an offset to add to points found in it)."""
    left, top, right, bottom = box
    margin_x, margin_y = CROP_MARGIN * (right - left + 1), CROP_MARGIN * (bottom - top + 1)
    height, width = pixels.shape[:2]
    x0, y0 = max(0, int(left - margin_x)), max(0, int(top - margin_y))
    x1, y1 = min(width, int(right + margin_x) + 1), min(height, int(bottom + margin_y) + 1)
    crop = np.ascontiguousarray(pixels[y0:y1, x0:x1])
    return crop, (left - x0, top - y0, right - x0, bottom - y0), np.array([x0, y0], dtype=np.float32)


def shape_points(shape: Any) -> np.ndarray:
    """A dlib shape's points as an N×2 float32 array."""
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


def _send(channel: socket.socket, message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    channel.sendall(_LENGTH.pack(len(data)))
    channel.sendall(data)


def _receive(channel: socket.socket) -> Any:
    (length,) = _LENGTH.unpack(_exactly(channel, _LENGTH.size))
    return pickle.loads(_exactly(channel, length))  # our own forked child's answers


def _exactly(channel: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    done = 0
    while done < size:
        got = channel.recv_into(view[done:])
        if got == 0:
            raise EOFError("the other end closed the connection")
        done += got
    return bytes(buffer)
