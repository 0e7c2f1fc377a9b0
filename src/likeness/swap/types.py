"""What every swapper promises."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from likeness.faces.types import Face

if TYPE_CHECKING:
    from likeness.models import ModelUse


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

    def model_files(self) -> list[ModelUse]: ...
