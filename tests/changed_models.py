"""A model file with one bit flipped, where a data home looks for its own copy (what an attacker or a
bad disk leaves): the tests of the fail-closed model check use it."""

from __future__ import annotations

from pathlib import Path

from likeness.home import Home
from likeness.models import face_recognition_models_dir, model


def write_changed_dlib_model(home: Home, key: str, *, at: float = 1 / 3) -> Path:
    """Copy the packaged dlib model ``key`` into ``home``'s models folder with the bit at ``at`` of
    its length flipped; the copy's path (same name and size, another sha256)."""
    entry = model(key)
    package = face_recognition_models_dir()
    assert package is not None
    folder = home.models_dir / "dlib"
    folder.mkdir(parents=True, exist_ok=True)
    data = bytearray((package / entry.filename).read_bytes())
    data[int(len(data) * at)] ^= 0x01
    changed = folder / entry.filename
    changed.write_bytes(bytes(data))
    return changed
