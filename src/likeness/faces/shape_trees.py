"""dlib's shape predictor evaluated with numpy, from arrays that load in milliseconds.

dlib's landmark models are cascades of regression trees (Kazemi & Sullivan, "One millisecond face
alignment with an ensemble of regression trees", CVPR 2014). dlib reads its ``.dat`` format number by
number: ≈ 0.4–0.5 s of CPU for the 95 MB 68-point model, with the GIL held, on every start. The same
trees, converted once into plain arrays (:func:`from_dlib`, ≈ 65 MB), load in one read and one hash
(:mod:`likeness.faces.shape_cache` keeps them), and :meth:`ShapeTrees.points` evaluates them as dlib's
``shape_predictor::operator()`` does (dlib 19.x/20.x ``shape_predictor.h``):

* each cascade level maps the current shape onto the mean shape with a similarity transform (Umeyama,
  in double precision, then cast to float), places its feature pixels relative to their anchor
  landmarks (in float), maps them into the face box and reads each pixel's intensity, ``(r + g + b) / 3``
  in integers (0 outside the image);
* each tree compares two feature intensities per node (``a − b > threshold``: left child) down to a
  leaf, and the leaves' shape offsets are added to the shape one tree after the other, in float;
* the final shape is mapped into the box and rounded to whole pixels, as dlib's ``point`` rounds.

Tested equal, not proven equal: on every face of the test photos each landmark is the one dlib gives
(``tests/test_shape_trees.py``; a reviewer's 3,384 boxes at every edge, size and rotation too). dlib
maps the shape into the box through a least-squares fit (``Q·pinv(P)``) where this maps it exactly
(``left + width·x``), so a coordinate that falls exactly on a half pixel can round the other way;
none of the 2.3 million coordinates measured on the real 68-point model did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

import numpy as np

MAGIC = b"likeness shape trees 1\n"
"""First bytes of the array file :meth:`ShapeTrees.to_bytes` writes."""
_ALIGN = 64
_SPECIAL_EXPONENTS = (32000, 32001, 32002)
"""dlib's ``float_details`` exponents for +inf, −inf and NaN: never in a landmark model."""


class NotShapeTrees(ValueError):
    """The bytes are not a dlib shape predictor of the kind this module evaluates (or not our arrays)."""


@dataclass(frozen=True)
class ShapeTrees:
    """The parameters of one dlib shape predictor: ``C`` cascade levels of ``T`` trees of depth ``D``
    (``S = 2^D − 1`` splits, ``S + 1`` leaves), ``F`` feature pixels per level, ``P`` landmarks."""

    initial: np.ndarray
    """(P, 2) float32: the mean shape, in the box's unit square."""
    anchors: np.ndarray
    """(C, F) int32: the landmark each feature pixel is placed relative to."""
    deltas: np.ndarray
    """(C, F, 2) float32: each feature pixel's offset from its anchor, in the mean shape's frame."""
    split_a: np.ndarray
    """(C, T, S) int32: the first feature compared at each split (nodes in breadth-first order)."""
    split_b: np.ndarray
    """(C, T, S) int32: the second feature."""
    thresholds: np.ndarray
    """(C, T, S) float32: go to the left child when ``feature[a] − feature[b] > threshold``."""
    leaves: np.ndarray
    """(C, T, S + 1, P × 2) float32: the shape offset each leaf adds (x, y interleaved)."""

    @property
    def landmarks(self) -> int:
        return int(self.initial.shape[0])

    def points(self, pixels: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """The landmarks (P×2 float32, whole pixels) of the face in ``box`` (left, top, right, bottom,
        inclusive; may reach outside the image) of ``pixels`` (H×W×3 uint8, or H×W uint8)."""
        left, top, right, bottom = (float(v) for v in box)
        width, height = right - left, bottom - top
        rows, cols = pixels.shape[:2]
        levels, trees, splits = self.thresholds.shape
        depth = (splits + 1).bit_length() - 1
        first_split = np.arange(trees, dtype=np.intp) * splits
        first_leaf = np.arange(trees, dtype=np.intp) * (splits + 1) - splits
        leaves = self.leaves.reshape(levels, trees * (splits + 1), -1)
        mean = self.initial.astype(np.float64)
        mean_centred = mean - mean.sum(axis=0) / len(mean)
        shape = self.initial.reshape(-1).copy()
        stacked = np.empty((trees + 1, shape.size), dtype=np.float32)
        for level in range(levels):
            current = shape.reshape(-1, 2)
            tform = _similarity(mean_centred, current)
            deltas = self.deltas[level]
            anchor = current[self.anchors[level]]
            x = tform[0, 0] * deltas[:, 0] + tform[0, 1] * deltas[:, 1] + anchor[:, 0]
            y = tform[1, 0] * deltas[:, 0] + tform[1, 1] * deltas[:, 1] + anchor[:, 1]
            px = _round_half_up(left + width * x.astype(np.float64))
            py = _round_half_up(top + height * y.astype(np.float64))
            features = _intensities(pixels, px, py, rows, cols)
            split_a, split_b = self.split_a[level].reshape(-1), self.split_b[level].reshape(-1)
            thresholds = self.thresholds[level].reshape(-1)
            node = np.zeros(trees, dtype=np.intp)
            for _ in range(depth):
                at = first_split + node
                goes_left = features[split_a[at]] - features[split_b[at]] > thresholds[at]
                node = 2 * node + 2 - goes_left
            stacked[0] = shape
            np.take(leaves[level], first_leaf + node, axis=0, out=stacked[1:])
            shape = np.add.reduce(stacked, axis=0)  # row after row: dlib's order of float additions
        final = shape.reshape(-1, 2).astype(np.float64)
        out = np.empty((self.landmarks, 2), dtype=np.float32)
        out[:, 0] = _round_half_up(left + width * final[:, 0])
        out[:, 1] = _round_half_up(top + height * final[:, 1])
        return out

    # -- the array file ----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The arrays as one file: :data:`MAGIC`, a JSON line naming each array's dtype, shape and
        offset, then the arrays (little-endian, 64-byte aligned). The same trees give the same bytes."""
        layout: dict[str, object] = {}
        chunks: list[bytes] = []
        offset = 0
        for item in fields(self):
            array = np.ascontiguousarray(getattr(self, item.name))
            array = array.astype(array.dtype.newbyteorder("<"), copy=False)
            layout[item.name] = [array.dtype.str, list(array.shape), offset]
            data = array.tobytes()
            padding = -len(data) % _ALIGN
            chunks.append(data + b"\0" * padding)
            offset += len(data) + padding
        header = MAGIC + json.dumps(layout, sort_keys=True).encode("ascii") + b"\n"
        header += b" " * (-len(header) % _ALIGN)
        return header + b"".join(chunks)

    @classmethod
    def from_bytes(cls, data: bytes) -> ShapeTrees:
        """The trees :meth:`to_bytes` wrote (arrays are read-only views of ``data``)."""
        if not data.startswith(MAGIC):
            raise NotShapeTrees("not a likeness shape-trees file")
        try:
            end = data.index(b"\n", len(MAGIC))
            layout = json.loads(data[len(MAGIC) : end])
            base = end + 1 + (-(end + 1) % _ALIGN)
            arrays: dict[str, np.ndarray] = {}
            for item in fields(cls):
                dtype, shape, offset = layout[item.name]
                count = int(np.prod(shape, dtype=np.int64))
                array = np.frombuffer(data, dtype=np.dtype(dtype), count=count, offset=base + offset)
                arrays[item.name] = array.reshape(shape)
        except (ValueError, KeyError, TypeError) as exc:
            raise NotShapeTrees(f"unreadable shape-trees file: {exc}") from exc
        trees = cls(**arrays)
        trees.check()
        return trees

    def check(self) -> None:
        """Raise :class:`NotShapeTrees` unless the arrays fit together (shapes and index ranges)."""
        levels, features = self.anchors.shape
        _, trees, splits = self.thresholds.shape
        landmarks = self.initial.shape[0]
        expected = {
            "initial": (landmarks, 2),
            "deltas": (levels, features, 2),
            "split_a": (levels, trees, splits),
            "split_b": (levels, trees, splits),
            "thresholds": (levels, trees, splits),
            "leaves": (levels, trees, splits + 1, landmarks * 2),
        }
        for name, want in expected.items():
            if getattr(self, name).shape != want:
                raise NotShapeTrees(f"shape trees: {name} is {getattr(self, name).shape}, expected {want}")
        if (splits + 1) & splits:
            raise NotShapeTrees(f"shape trees: {splits} splits is not a complete binary tree")
        for name, bound in (("anchors", landmarks), ("split_a", features), ("split_b", features)):
            values = getattr(self, name)
            if values.size and (values.min() < 0 or values.max() >= bound):
                raise NotShapeTrees(f"shape trees: {name} indexes outside 0…{bound - 1}")


def from_dlib(data: bytes) -> ShapeTrees:
    """The trees of a dlib ``shape_predictor`` file (its bytes); :class:`NotShapeTrees` if it is not one.

    dlib writes every number as a packed integer (a byte holding the sign and the count of the
    little-endian bytes that follow) and a float as two of them, mantissa and power of two. The file
    is: version 1, the mean shape (a column matrix: −rows, −1, values), the forests (a count of levels,
    each a count of trees, each its splits — feature a, feature b, threshold — and its leaves, each a
    column matrix), then per level the anchor of each feature pixel and its offset (x, y).
    """
    numbers = _packed_integers(data)
    reader = _Reader(numbers)
    if reader.take(1)[0] != 1:
        raise NotShapeTrees("not a dlib shape predictor of version 1")
    initial = reader.column()
    landmarks2 = initial.size
    levels = reader.count()
    split_a, split_b, thresholds, leaves = [], [], [], []
    for _ in range(levels):
        trees = reader.count()
        splits = int(reader.peek(0))
        leaf_count = int(reader.peek(1 + 4 * splits))
        # One tree: count, splits × (a, b, mantissa, exponent), count, leaves × (−rows, −1, 2 × values).
        per_leaf = 2 + 2 * landmarks2
        per_tree = 2 + 4 * splits + leaf_count * per_leaf
        block = reader.take(trees * per_tree).reshape(trees, per_tree)
        if (block[:, 0] != splits).any() or (block[:, 1 + 4 * splits] != leaf_count).any():
            raise NotShapeTrees("dlib shape predictor: the trees of a level differ in size")
        split_part = block[:, 1 : 1 + 4 * splits].reshape(trees, splits, 4)
        split_a.append(split_part[:, :, 0])
        split_b.append(split_part[:, :, 1])
        thresholds.append(_floats(split_part[:, :, 2], split_part[:, :, 3]))
        leaf_part = block[:, 2 + 4 * splits :].reshape(trees, leaf_count, per_leaf)
        if (leaf_part[:, :, 0] != -landmarks2).any() or (leaf_part[:, :, 1] != -1).any():
            raise NotShapeTrees("dlib shape predictor: a leaf is not a shape offset")
        values = leaf_part[:, :, 2:].reshape(trees, leaf_count, landmarks2, 2)
        leaves.append(_floats(values[..., 0], values[..., 1]))
    anchors = [single[:, 0] for single in _vectors(reader, levels, 1)]
    deltas = [_floats(pair[:, 0::2], pair[:, 1::2]) for pair in _vectors(reader, levels, 4)]
    if not reader.done():
        raise NotShapeTrees("dlib shape predictor: unexpected data after the model")
    for indexes in (*anchors, *split_a, *split_b):
        if indexes.size and (indexes.min() < 0 or indexes.max() > np.iinfo(np.int32).max):
            raise NotShapeTrees("dlib shape predictor: an index out of range")
    try:
        trees_model = ShapeTrees(
            initial=initial.reshape(-1, 2),
            anchors=np.stack(anchors).astype(np.int32),
            deltas=np.stack(deltas).astype(np.float32),
            split_a=np.stack(split_a).astype(np.int32),
            split_b=np.stack(split_b).astype(np.int32),
            thresholds=np.stack(thresholds).astype(np.float32),
            leaves=np.stack(leaves).astype(np.float32),
        )
    except ValueError as exc:  # levels of different sizes
        raise NotShapeTrees(f"dlib shape predictor: levels differ in size ({exc})") from exc
    trees_model.check()
    return trees_model


class _Reader:
    """Walks the packed integers of a dlib file."""

    def __init__(self, numbers: np.ndarray) -> None:
        self._numbers = numbers
        self._at = 0

    def peek(self, ahead: int) -> int:
        if self._at + ahead >= self._numbers.size:
            raise NotShapeTrees("dlib shape predictor: the file ends early")
        return int(self._numbers[self._at + ahead])

    def take(self, count: int) -> np.ndarray:
        if count < 0 or self._at + count > self._numbers.size:
            raise NotShapeTrees("dlib shape predictor: the file ends early")
        out = self._numbers[self._at : self._at + count]
        self._at += count
        return out

    def count(self, expected: int | None = None) -> int:
        value = int(self.take(1)[0])
        if value < 0 or (expected is not None and value != expected):
            raise NotShapeTrees(f"dlib shape predictor: unexpected count {value}")
        return value

    def column(self) -> np.ndarray:
        rows, cols = (int(v) for v in self.take(2))
        if cols != -1 or rows >= 0:
            raise NotShapeTrees("dlib shape predictor: expected a column matrix")
        pairs = self.take(-2 * rows).reshape(-1, 2)
        return _floats(pairs[:, 0], pairs[:, 1])

    def vector(self, width: int) -> np.ndarray:
        size = self.count()
        return self.take(size * width).reshape(size, width)

    def done(self) -> bool:
        return self._at == self._numbers.size


def _vectors(reader: _Reader, levels: int, width: int) -> list[np.ndarray]:
    """Per level, a vector of ``width``-number items (a count of levels first, then each vector)."""
    return [reader.vector(width) for _ in range(reader.count(levels))]


def _packed_integers(data: bytes) -> np.ndarray:
    """Every packed integer of a dlib file, in order (int64). Decoded a block of integers at a time,
    so the temporaries stay small (the conversion of the 68-point model peaks near 0.8 GB)."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    starts = _integer_starts(buffer)
    padded = np.concatenate([buffer, np.zeros(8, dtype=np.uint8)])
    # words[k]: the 8 bytes after byte k, read as one little-endian number (an unaligned view).
    words = np.ndarray(shape=(buffer.size,), dtype="<u8", buffer=padded, offset=1, strides=(1,))
    masks = np.array([(1 << (8 * count)) - 1 for count in range(9)], dtype=np.uint64)
    out = np.empty(starts.size, dtype=np.int64)
    for low in range(0, starts.size, _BLOCK):
        at = starts[low : low + _BLOCK]
        control = buffer[at]
        lengths = control & 0x0F
        if (lengths > 8).any() or (control & 0x70).any():
            raise NotShapeTrees("not a dlib file: an integer of more than 8 bytes")
        magnitude = (words[at] & masks[lengths]).view(np.int64)
        out[low : low + at.size] = np.where(control & 0x80, -magnitude, magnitude)
    return out


_BLOCK = 1 << 20
"""Integers :func:`_packed_integers` decodes at once."""
_CHUNK = 8192
"""Bytes each speculative walk of :func:`_integer_starts` covers."""


def _integer_starts(buffer: np.ndarray) -> np.ndarray:
    """Where each packed integer starts: each is a control byte and ``control & 0x0F`` more bytes.

    The walk from byte 0 is sequential by nature (≈ 33 million steps for the 68-point model, ≈ 5 s in
    a Python loop), so it runs speculatively: one walk from the first byte of every 8 KB chunk, all in
    step with numpy, marking the bytes they land on. The walk from byte 0 enters each chunk a few
    bytes past where that chunk's walk began; a short Python loop follows it until it lands where the
    chunk's walk did (from there on they agree) and corrects the marks before that point. A walk that
    never meets it is followed to the chunk's end, so the result is the sequential walk's in every case.
    """
    size = buffer.size
    step = (buffer & 0x0F) + np.uint8(1)
    begins = np.arange(0, size, _CHUNK, dtype=np.int64)
    ends = np.minimum(begins + _CHUNK, size)
    marks = np.zeros(size + 1, dtype=bool)  # the last one: where finished walks mark
    at = begins.copy()
    walking = at < ends
    while walking.any():
        marks[np.where(walking, at, size)] = True
        at = np.where(walking, at + step[np.minimum(at, size - 1)], at)
        walking = at < ends
    exit_ = int(at[0]) if begins.size else 0  # the first chunk's walk is the walk from byte 0
    for chunk in range(1, begins.size):
        guess, true, end = int(begins[chunk]), exit_, int(ends[chunk])
        while guess != true and true < end:  # advance the one behind until they meet
            if guess < true:
                marks[guess] = False
                guess += int(step[guess])
            else:
                marks[true] = True
                true += int(step[true])
        if guess == true and true < end:
            exit_ = int(at[chunk])
            continue
        while guess < end:  # they never met in this chunk: none of its guessed marks stand
            marks[guess] = False
            guess += int(step[guess])
        exit_ = true
    if exit_ != size:
        raise NotShapeTrees("not a dlib file: the last integer runs past the end")
    return np.flatnonzero(marks[:size])


def _floats(mantissa: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """dlib's ``float_details`` (mantissa × 2^exponent) as float32; exact for values that were floats."""
    if np.isin(exponent, _SPECIAL_EXPONENTS).any():
        raise NotShapeTrees("dlib shape predictor holds an infinite or NaN value")
    if (np.abs(exponent) > 1100).any() or (np.abs(mantissa) >= 1 << 53).any():
        raise NotShapeTrees("dlib shape predictor holds a value that is not a float")
    values = np.ldexp(mantissa.astype(np.float64), exponent.astype(np.int32))
    with np.errstate(over="ignore"):
        out = values.astype(np.float32)
    if not np.isfinite(out).all() or not np.array_equal(out.astype(np.float64), values):
        raise NotShapeTrees("dlib shape predictor holds a value that is not a finite float")
    return out


def _similarity(source_centred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """dlib's ``find_similarity_transform`` (Umeyama) from the source points (centred, float64) to
    ``target``: its 2×2 scaled rotation, in double precision, returned as float32 as dlib casts it.

    In 2-D a similarity without reflection has a closed form, [[a, −b], [b, a]] with
    ``a = Σ s·t / Σ |s|²`` and ``b = Σ s × t / Σ |s|²`` over the centred points, which is Umeyama's
    solution whenever the points are not mirrored (their covariance has a positive determinant, as a
    face's landmarks and the mean face's always do); the mirrored case is solved as Umeyama does."""
    dst = target.astype(np.float64)
    dst_centred = dst - dst.sum(axis=0) / len(dst)
    cov = dst_centred.T @ source_centred
    determinant = cov[0, 0] * cov[1, 1] - cov[0, 1] * cov[1, 0]
    sigma = float((source_centred**2).sum())
    if sigma == 0:
        return np.eye(2, dtype=np.float32)
    if determinant > 0:
        a = (cov[0, 0] + cov[1, 1]) / sigma
        b = (cov[1, 0] - cov[0, 1]) / sigma
        return np.array([[a, -b], [b, a]], dtype=np.float32)
    u, singular, vt = np.linalg.svd(cov / len(dst))
    flip = np.ones(2)
    if determinant < 0 or np.linalg.det(u) * np.linalg.det(vt) < 0:
        flip[1] = -1.0  # numpy sorts the singular values: the smaller one is the second
    scale = float((singular * flip).sum()) / (sigma / len(dst))
    return (scale * ((u * flip) @ vt)).astype(np.float32)


def _round_half_up(values: np.ndarray) -> np.ndarray:
    """dlib's conversion of a double point to an integer one: ``floor(v + 0.5)``."""
    return np.floor(values + 0.5)


def _intensities(pixels: np.ndarray, px: np.ndarray, py: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """dlib's pixel intensity at each (px, py): ``(r + g + b) / 3`` in integers, 0 outside the image."""
    inside = (px >= 0) & (px < cols) & (py >= 0) & (py < rows)
    xs = np.where(inside, px, 0).astype(np.intp)
    ys = np.where(inside, py, 0).astype(np.intp)
    values = pixels[ys, xs]
    if values.ndim == 2:
        values = values.astype(np.int32).sum(axis=1) // 3
    return np.where(inside, values, 0).astype(np.float32)
