"""The data home: where the registry database, keys, ledger and model files live.

Chosen by ``--home DIR``, else ``LIKENESS_HOME``, else a per-user data directory.
A studio can point the registry at PostgreSQL with ``LIKENESS_DB_URL``, and keep the ledger head
file (``likeness.consent.head_file``) elsewhere with ``LIKENESS_LEDGER_HEAD``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "LIKENESS_HOME"
DB_URL_ENV = "LIKENESS_DB_URL"
LEDGER_HEAD_ENV = "LIKENESS_LEDGER_HEAD"


@dataclass(frozen=True)
class Home:
    root: Path
    db_url_override: str | None = None
    ledger_head_override: Path | None = None

    @property
    def db_path(self) -> Path:
        return self.root / "registry.sqlite"

    @property
    def db_url(self) -> str:
        return self.db_url_override or f"sqlite:///{self.db_path}"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def ledger_head_path(self) -> Path:
        """Where the ledger head is kept outside the database (see ``consent.head_file``)."""
        return self.ledger_head_override or self.keys_dir / "ledger-head.json"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def ensure(self) -> Home:
        """Create the folders (private to the user) and return self."""
        for folder in (self.root, self.keys_dir, self.models_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self


def resolve_home(explicit: str | os.PathLike[str] | None = None) -> Home:
    if explicit is not None:
        root = Path(explicit)
    elif os.environ.get(HOME_ENV):
        root = Path(os.environ[HOME_ENV])
    else:
        from platformdirs import user_data_dir

        root = Path(user_data_dir("likeness", appauthor=False))
    head = os.environ.get(LEDGER_HEAD_ENV)
    return Home(
        root=root.expanduser().resolve(),
        db_url_override=os.environ.get(DB_URL_ENV) or None,
        ledger_head_override=Path(head).expanduser().resolve() if head else None,
    )
