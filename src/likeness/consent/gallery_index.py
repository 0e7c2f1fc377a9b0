"""A gallery as one matrix: every reference of one embedding space, grouped by identity.

The gate needs the nearest identity and the runner-up. Ranking 100,000 identities one numpy call
each takes about a second; here one float32 matrix-vector product gives every reference's
approximate distance, ``np.minimum.reduceat`` the nearest per identity, and only the ``TOP``
closest identities are then measured exactly (float64, ``OperatingPoint.distances``, the same
numbers as before), so the decision is the one :func:`likeness.consent.gate.rank_gallery` gives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from likeness.consent.records import GalleryIdentity, OperatingPoint

TOP = 8
"""Identities measured exactly after the approximate pass (the gate needs the best two)."""


@dataclass(frozen=True)
class GalleryIndex:
    embedding_space: str
    identity_ids: tuple[str, ...]
    names: tuple[str, ...]
    starts: np.ndarray = field(repr=False)
    """Row where each identity's references start in ``matrix`` (rows are grouped by identity)."""
    matrix: np.ndarray = field(repr=False)
    """(references, dimensions) float32, exactly the stored embeddings."""
    squared_norms: np.ndarray = field(repr=False)
    built_at: int = 0
    """Ledger seq the gallery was verified at."""

    @classmethod
    def build(
        cls,
        embedding_space: str,
        owners: Sequence[str],
        names: Mapping[str, str],
        vectors: Sequence[np.ndarray],
        *,
        built_at: int,
    ) -> GalleryIndex:
        """From references in gallery order (an identity's references next to each other)."""
        order: dict[str, list[int]] = {}
        for row, owner in enumerate(owners):
            order.setdefault(owner, []).append(row)
        rows = [row for group in order.values() for row in group]
        starts = np.cumsum([0, *(len(group) for group in order.values())])[:-1]
        if rows:
            matrix = np.stack([np.asarray(vectors[row], dtype=np.float32) for row in rows])
        else:
            matrix = np.zeros((0, 0), dtype=np.float32)
        return cls(
            embedding_space,
            tuple(order),
            tuple(names[owner] for owner in order),
            np.asarray(starts, dtype=np.int64),
            matrix,
            np.einsum("ij,ij->i", matrix, matrix) if rows else np.zeros(0, dtype=np.float32),
            built_at,
        )

    def __len__(self) -> int:
        return len(self.identity_ids)

    def _members(self, index: int) -> np.ndarray:
        end = self.starts[index + 1] if index + 1 < len(self.starts) else self.matrix.shape[0]
        return self.matrix[self.starts[index] : end]

    def identity(self, index: int) -> GalleryIdentity:
        return GalleryIdentity(self.identity_ids[index], self.names[index], self._members(index))

    def identities(self) -> list[GalleryIdentity]:
        return [self.identity(index) for index in range(len(self))]

    def rank_top(self, probe: np.ndarray, point: OperatingPoint) -> list[tuple[float, GalleryIdentity]]:
        """The ``TOP`` nearest identities with their exact nearest-reference distance, nearest first."""
        if not len(self):
            return []
        vector = np.asarray(probe, dtype=np.float32).ravel()
        # einsum's own loop, not BLAS: a threaded sgemv costs ~6 ms of thread start-up here at any size
        dots = np.einsum("ij,j->i", self.matrix, vector, optimize=False)
        if point.metric == "euclidean":
            approx = self.squared_norms - 2.0 * dots  # + |probe|², the same for every row: ranks alike
        else:
            norms = np.sqrt(np.maximum(self.squared_norms, 1e-24)) * max(float(np.linalg.norm(vector)), 1e-12)
            approx = 1.0 - dots / norms
        single = len(self.starts) == len(approx)  # one reference per identity: nothing to reduce
        nearest = approx if single else np.minimum.reduceat(approx, self.starts)
        count = min(TOP, len(nearest))
        candidates = np.argpartition(nearest, count - 1)[:count] if count < len(nearest) else range(count)
        ranked = []
        for index in sorted(int(i) for i in candidates):
            entry = self.identity(index)
            ranked.append((float(point.distances(probe, entry.embeddings).min()), entry))
        return sorted(ranked, key=lambda pair: pair[0])
