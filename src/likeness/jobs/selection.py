"""Which faces a job involves, and the transform applied to them.

Stills: the faces are chosen (``--face-index`` or every face) and gated together before anything is
transformed. Footage: faces are followed as tracks and each new person is gated as they appear,
and re-identified on the way (:mod:`likeness.jobs.tracks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from likeness.errors import BadInput, NoFace, UsageError
from likeness.faces.types import Face
from likeness.jobs.inputs import finished
from likeness.media.image import Picture
from likeness.swap.types import Swapper


def find_source_face(
    analyzer: Any, picture: Picture, what: str = "source photo", *, found: Any = None
) -> Face:
    """The one face of a swap's source photo (:func:`one_face`), found the portrait way when the
    analyzer has one (``analyze_portrait``: dlib detects without upsampling first, ~0.35 s less on a
    1000 px photo), else by ``analyze``. Targets and enrolment photos keep ``analyze``.

    ``found``: the portrait detection already done (``analyzer.find(pixels, portrait=True)``, see
    :mod:`likeness.jobs.inputs`), or that detection already finished by the reader
    (:class:`~likeness.jobs.inputs.Finished`); only what is left of the analysis is done here."""
    if found is not None:
        return one_face(finished(analyzer, found).faces, picture, what)
    analyze = getattr(analyzer, "analyze_portrait", None) or analyzer.analyze
    return one_face(analyze(picture.pixels), picture, what)


def one_face(faces: Sequence[Face], picture: Picture, what: str) -> Face:
    """The one face a source or reference photo must show, or :class:`BadInput`."""
    if not faces:
        raise NoFace(
            f"{picture.path}: no face found in the {what}",
            hint="use a sharp, well-lit, roughly frontal photo where the face is at least 80 px tall",
        )
    if len(faces) > 1:
        raise BadInput(
            f"{picture.path}: the {what} shows {len(faces)} faces; it must show exactly one person",
            hint="crop the photo to the one person",
        )
    return faces[0]


def chosen_targets(faces: Sequence[Face], picture: Picture, face_index: int | None) -> list[tuple[int, Face]]:
    """The still's faces to replace: the one at ``face_index``, or every face."""
    if not faces:
        raise NoFace(
            f"{picture.path}: no face found in the target image",
            hint="use an image where the face to replace is sharp, lit and at least 80 px tall",
        )
    if face_index is None:
        return list(enumerate(faces))
    if not 0 <= face_index < len(faces):
        raise UsageError(
            f"--face-index {face_index} is out of range: the target shows {len(faces)} face(s), "
            f"numbered 0 to {len(faces) - 1} from left to right",
            hint="run `likeness faces TARGET` to see them",
        )
    return [(face_index, faces[face_index])]


@runtime_checkable
class PreparingSwapper(Protocol):
    """A swapper that can measure what depends on the source alone once (see
    :meth:`likeness.swap.classical.ClassicalSwapper.prepare`) and reuse it for every frame."""

    def prepare(self, source: np.ndarray, source_face: Face) -> Any: ...

    def swap_prepared(self, target: np.ndarray, target_face: Face, prepared: Any) -> np.ndarray: ...


@dataclass(frozen=True)
class SwapTransform:
    """Puts the source likeness onto one face of a frame (today's only transform).

    A swapper that can (:class:`PreparingSwapper`) prepares the source once, here; every frame reuses it.
    """

    swapper: Swapper
    source_pixels: np.ndarray = field(repr=False)
    source_face: Face
    prepared: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.swapper, PreparingSwapper):
            object.__setattr__(self, "prepared", self.swapper.prepare(self.source_pixels, self.source_face))

    def __call__(self, pixels: np.ndarray, face: Face) -> np.ndarray:
        """The frame with ``face`` replaced; :class:`BadInput` when the face cannot be (e.g. turned
        too far)."""
        if self.prepared is not None and isinstance(self.swapper, PreparingSwapper):
            return self.swapper.swap_prepared(pixels, face, self.prepared)
        return self.swapper.swap(pixels, face, self.source_pixels, self.source_face)
