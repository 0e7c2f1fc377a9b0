"""The ledger head kept outside the database: a witness against removing the newest entries.

The chain alone cannot show that its newest entries were cut off. After every committed append
the registry writes the new head (seq and hash) to this small JSON file, atomically
(``fsutil.write_atomic``) and only forwards (a higher seq replaces a lower one, under a file
lock, so concurrent writers never move it back). The gate and ``likeness audit verify`` require
the database's chain to contain the entry the file names: a database that ends before it, or
holds another entry there, was truncated or replaced.

The file is a lower bound, not the exact head: another process (or, with PostgreSQL, another
host with its own file) may have appended since. Location: ``LIKENESS_LEDGER_HEAD`` or
``Home.ledger_head_path`` (default ``<home>/keys/ledger-head.json``); put it on storage the
registry's database users cannot write to get the most out of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from likeness.errors import RegistryTampered
from likeness.fsutil import write_atomic


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str

    def to_dict(self) -> dict[str, object]:
        return {"seq": self.seq, "hash": self.hash}


@dataclass(frozen=True)
class HeadFile:
    path: Path

    def read(self) -> Head | None:
        """The recorded head, ``None`` if there is no file yet; RegistryError if it is unreadable."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return Head(int(data["seq"]), str(data["hash"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RegistryTampered(
                f"registry tampered: the ledger head file {self.path} cannot be read ({exc})",
                hint="restore it from a backup; never edit it by hand",
            ) from exc

    def advance(self, head: Head) -> None:
        """Record ``head`` unless the file already names a later entry."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        with lock_path.open("a+") as lock:
            try:
                import fcntl

                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            except ImportError:  # not POSIX: no advisory lock; forwards-only still holds per process
                pass
            current = self.read()
            if current is not None and current.seq >= head.seq:
                return
            body = json.dumps(head.to_dict(), sort_keys=True) + "\n"
            write_atomic(self.path, body.encode("utf-8"), mode=0o600)
