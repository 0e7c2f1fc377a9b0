"""What every swapper promises."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from likeness.faces.types import Face


@runtime_checkable
class Swapper(Protocol):
    """Puts the likeness of ``source_face`` (found in ``source``) onto ``target_face`` in ``target``.

    Returns a new H×W×3 uint8 RGB array the size of ``target``; the inputs are not modified.
    """

    name: str

    def swap(
        self, target: np.ndarray, target_face: Face, source: np.ndarray, source_face: Face
    ) -> np.ndarray: ...

    def describe(self) -> dict[str, str]: ...
