"""File utilities every writer and reader shares: hashing, durable writes, same-file checks.

A leaf module (standard library only).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO

CHUNK = 1 << 20


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    return sha256_file_size(path)[0]


def sha256_file_size(path: Path | str) -> tuple[str, int]:
    """Hex sha256 and size in bytes of a file, read once."""
    digest = hashlib.sha256()
    size = 0
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fsync_file(path: Path | str) -> None:
    """Flush a file's data to disk."""
    with Path(path).open("rb+") as handle:
        os.fsync(handle.fileno())


def fsync_dir(folder: Path | str) -> None:
    """Make a rename or a new file in ``folder`` durable (a no-op where the platform cannot)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def created_file_mode() -> int:
    """The mode a new file gets under this process's umask (0o666 less the umask): what a user
    expects of a file they asked for. Work in progress stays private (0600) until then."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # no /proc (macOS, BSD): read it by setting it, then put it back
    os.umask(mask)
    return 0o666 & ~mask


def move_into_place(finished: Path | str, path: Path | str) -> None:
    """Rename a finished file onto ``path`` (atomic within one filesystem) with the mode a new file
    gets (:func:`created_file_mode`), and make the rename durable."""
    os.chmod(finished, created_file_mode())
    os.replace(finished, path)
    fsync_dir(Path(path).parent)


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether two paths name one file (hard links and symlinks included; also when neither exists)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def unwritable_reason(folder: Path | str) -> str | None:
    """Why no file can be created in ``folder`` (``None`` if one can): tried for real with a
    private temp file, so read-only mounts and ACLs count too, for every user including root."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def write_atomic(path: Path | str, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a
    part: a private temp file in the same folder, fsync, rename, fsync of the folder."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None  # type: ignore[assignment]
        fsync_dir(path.parent)
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def try_lock(path: Path | str) -> IO[str] | None:
    """Open ``path`` and take an exclusive advisory lock on it without waiting.

    Returns the open handle (the lock lasts until it is closed), or ``None`` when another process
    holds the lock. Where the platform has no ``fcntl`` the handle is returned unlocked.
    """
    handle = Path(path).open("a+")
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory lock
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle
