"""dlib's landmark models kept as arrays: the 68-point one loads in ≈ 0.1 s instead of dlib's ≈ 0.4–0.5 s.

dlib reads its 95 MB ``shape_predictor_68_face_landmarks.dat`` number by number, holding the GIL, on
every start: the largest single cost of a ``likeness swap`` on a still. The same trees, converted once
(:func:`likeness.faces.shape_trees.from_dlib`, 2–4 s, the first time a machine needs them) and written
to a cache folder, load in one read plus a sha256.

Trust:

* the ``.dat`` is located and checked on every load: a changed file is refused, never silently
  replaced by its cached arrays. It is hashed unless a stamp next to the arrays says it is the very
  file hashed before (same path, device, inode, size, modification and change times): any write to
  it or a file put in its place changes those, and it is not read anyway (:func:`_checked_source`);
* the arrays are used only when their sha256 is the one pinned here for that file's pinned sha256
  (:data:`TREES_SHA256`). The conversion is deterministic, so the pin holds on every machine. A
  conversion that gives other bytes is not used (dlib loads the ``.dat``, as before); a cached file
  that fails its check is converted again;
* the hashes run without the GIL, in the thread that :mod:`likeness.faces.dlib_backend` verifies
  models in (the 68-point arrays' ≈ 0.05 s; the ``.dat``'s ≈ 0.07 s more when it is hashed);
* the model a job reports (the manifest's model list) is the ``.dat``: the arrays are its trees,
  number for number, and give the same landmarks (``tests/test_shape_trees.py``).

The folder: ``LIKENESS_CACHE`` if set, else the per-user cache folder (``~/.cache/likeness`` on
Linux). It is shared by every data home of the user: it holds only what the pinned models give. Where the
arrays are not there and cannot be written, dlib reads the ``.dat`` each time (:func:`cache_usable` says
so in advance).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from likeness.faces.shape_trees import NotShapeTrees, ShapeTrees, from_dlib
from likeness.fsutil import unwritable_reason, write_atomic
from likeness.home import Home
from likeness.models import VerifiedModel, locate, model, verify

CACHE_ENV = "LIKENESS_CACHE"
TREES_SHA256 = {
    # shape_predictor_68_face_landmarks.dat → its trees as ShapeTrees.to_bytes() writes them
    "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f": (
        "e52acf787c8bf4f9529ab539937c8b794ad266e7cba3f26bab45de9ae9ce4550"
    ),
    # shape_predictor_5_face_landmarks.dat (dlib: 0.05 s to read; arrays: 6 MB, a few ms)
    "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888": (
        "5d05905dadb6529d6c8de3e7ab7b2369cd1a91d7dfb18f45b08975715288f608"
    ),
}
"""sha256 of a pinned dlib ``.dat`` → sha256 of its trees' array file."""
LANDMARK_MODELS = ("dlib_landmarks_68", "dlib_landmarks_5")
"""The models kept as arrays (``likeness models prepare`` converts them)."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedTrees:
    """A landmark model loaded from its arrays, and the verified ``.dat`` they are the trees of."""

    trees: ShapeTrees
    verified: VerifiedModel
    converted_now: bool
    """True: the arrays were made from the ``.dat`` by this call (the first use on this machine)."""


def cache_dir() -> Path:
    """Where converted models are kept: ``LIKENESS_CACHE``, else the per-user cache folder."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser().resolve()  # a relative one: from where the command started
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("likeness", appauthor=False))


def trees_path(name: str) -> Path | None:
    """The array file of model ``name`` (``None``: no pinned conversion for it)."""
    entry = model(name)
    if entry.sha256 not in TREES_SHA256:
        return None
    return cache_dir() / f"{entry.name}-{entry.sha256[:16]}.trees"


def cache_usable(name: str) -> bool:
    """True when :func:`load_trees` will load ``name`` from arrays: they are cached, or can be."""
    path = trees_path(name)
    return path is not None and (path.is_file() or _writable(path.parent))


def load_trees(name: str, home: Home | None = None) -> LoadedTrees | None:
    """Model ``name`` as trees: from the cache (checked against its pin), else converted from the
    verified ``.dat`` and cached. ``None`` (the caller loads the ``.dat`` with dlib) where there is no
    pinned conversion, where the arrays are not cached and cannot be (converting on every load would
    cost 2–4 s), or where the conversion did not give the pinned bytes. Raises
    :class:`likeness.errors.ModelMissing` as :func:`likeness.models.locate_verified` does."""
    path = trees_path(name)
    if path is None or not cache_usable(name):
        return None
    verified = _checked_source(name, home, path.parent)
    expected = TREES_SHA256[verified.sha256]
    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    if data and hashlib.sha256(data).hexdigest() == expected:
        return LoadedTrees(trees=ShapeTrees.from_bytes(data), verified=verified, converted_now=False)
    if not _writable(path.parent):  # a damaged cached copy that cannot be replaced
        _log.warning(
            "%s: its cached arrays %s are damaged and cannot be rewritten; dlib loads it", name, path
        )
        return None
    try:
        trees = from_dlib(verified.path.read_bytes())
    except (NotShapeTrees, OSError) as exc:
        _log.warning("%s: cannot convert %s to arrays (%s); dlib loads it", name, verified.path, exc)
        return None
    data = trees.to_bytes()
    if hashlib.sha256(data).hexdigest() != expected:
        _log.warning("%s: its arrays are not the pinned ones; dlib loads the file", name)
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _sweep_stale(path)
        write_atomic(path, data, mode=0o644)
    except OSError as exc:  # a full disk: converted again next time, until the write succeeds
        _log.warning("%s: cannot cache its arrays in %s (%s)", name, path.parent, exc)
    return LoadedTrees(trees=trees, verified=verified, converted_now=True)


def _checked_source(name: str, home: Home | None, folder: Path) -> VerifiedModel:
    """The model's ``.dat``, located and checked: hashed (:func:`likeness.models.verify`, which raises
    :class:`~likeness.errors.ModelMissing` for a changed file), unless it is the very file hashed
    before, as its stamp in ``folder`` says (path, device, inode, size, modification and change times
    in ns). Any write to the file, or a file put in its place, changes the change time or the inode,
    so it is hashed again. The stamp only spares the hash of a file that is not read: its arrays
    are, and they are checked against their pin on every load."""
    entry = model(name)
    path = locate(entry, home)
    stamp_path = folder / f"{entry.name}-{hashlib.sha256(str(path).encode()).hexdigest()[:16]}.stamp"
    try:
        before = _stamp(path)
    except OSError:
        return verify(entry, path, home)  # raises ModelMissing, saying why the file cannot be read
    known = {**before, "sha256": entry.sha256}
    with contextlib.suppress(OSError, ValueError):
        if json.loads(stamp_path.read_text()) == known:
            return VerifiedModel(entry=entry, path=path, sha256=entry.sha256, hash_known=True)
    verified = verify(entry, path, home)  # raises ModelMissing for a changed file
    with contextlib.suppress(OSError):
        if _stamp(path) == before:  # not changed while it was hashed
            stamp_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(stamp_path, json.dumps(known, sort_keys=True).encode(), mode=0o644)
    return verified


def _stamp(path: Path) -> dict[str, object]:
    info = path.stat()
    return {
        "path": str(path),
        "device": info.st_dev,
        "inode": info.st_ino,
        "size": info.st_size,
        "modified_ns": info.st_mtime_ns,
        "changed_ns": info.st_ctime_ns,
    }


def _sweep_stale(path: Path) -> None:
    """Remove what an interrupted write of ``path`` left (write_atomic's temp files, an hour old)."""
    import time

    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > 3600:
                stale.unlink()


_ROOM = 128 * 1024 * 1024
"""Free bytes a cache folder needs before a conversion is worth doing (the largest file is 65 MB)."""


def _writable(folder: Path) -> bool:
    """Whether the arrays can be written in ``folder`` (or in the folder that would be created there):
    a file can be created, and the disk has room for them (a full disk would otherwise convert on
    every load, 2–4 s each, and fail to write each time)."""
    import shutil

    existing = _nearest_existing(folder)
    if existing is None or unwritable_reason(existing) is not None:
        return False
    try:
        return shutil.disk_usage(existing).free >= _ROOM
    except OSError:
        return False


def _nearest_existing(folder: Path) -> Path | None:
    """``folder`` or its nearest existing parent (where the cache folder would be created)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate if candidate.is_dir() else None
    return None
