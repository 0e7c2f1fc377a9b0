"""The registry's core: its engine, read and write transactions, the ledger append, the schema.

Every concern's mixin (``calibrations``, ``identities``, ``consents``, ``outputs``, ``ledger_keys``)
builds on :class:`RegistryCore`: reads go through ``_read``, every mutation through one ``_write``
transaction that also appends its ledger entry with ``_log``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Self

from sqlalchemy import Connection, Engine, insert, select, update

from likeness import ledger
from likeness.consent import schema
from likeness.consent.keys import InstallationKeys
from likeness.consent.policy import Policy
from likeness.consent.store import describe, make_engine, write_transaction
from likeness.errors import RegistryError
from likeness.home import Home


class RegistryCore:
    """The engine, the installation's keys and policy; transactions and the ledger append."""

    def __init__(self, engine: Engine, *, home: Home, policy: Policy, keys: InstallationKeys) -> None:
        self._engine = engine
        self.home = home
        self.policy = policy
        self.keys = keys
        self._signer = keys.signer()

    @classmethod
    @contextmanager
    def open(cls, home: Home, *, policy: Policy | None = None) -> Iterator[Self]:
        home.ensure()
        engine = make_engine(home.db_url)
        try:
            registry = cls(
                engine, home=home, policy=policy or Policy.load(home), keys=InstallationKeys(home.keys_dir)
            )
            registry._create_schema()
            yield registry
        finally:
            engine.dispose()

    # -- transactions ------------------------------------------------------------------------
    def _write(self, *, creating: bool = False) -> contextlib.AbstractContextManager[Connection]:
        """One serialised write transaction (see ``store.write_transaction``)."""
        return write_transaction(self._engine, creating=creating)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn

    def _checkpoint_wal(self) -> None:
        """On SQLite, move committed pages out of the WAL file (so overwritten data leaves it too)."""
        if self._engine.dialect.name != "sqlite":
            return
        raw = self._engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()

    @property
    def location(self) -> str:
        """The database URL, password hidden."""
        return describe(self._engine)

    def _log(self, conn: Connection, kind: str, actor: str, payload: Mapping[str, Any]) -> ledger.Entry:
        return ledger.append(conn, kind=kind, actor=actor, payload=payload, signer=self._signer)

    def _create_schema(self) -> None:
        with self._write(creating=True) as conn:
            schema.metadata.create_all(conn)
            ledger.LEDGER_METADATA.create_all(conn)
            version = conn.execute(
                select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
            ).scalar()
            if version is None:
                conn.execute(
                    insert(schema.meta).values(key="schema_version", value=str(schema.SCHEMA_VERSION))
                )
                return
            found = int(version) if str(version).isdecimal() else 0
            if found < 1:
                raise RegistryError(
                    f"the registry at {self.location} has schema version {version}, "
                    "which no likeness version wrote",
                    hint="restore the registry from a backup",
                )
            if found > schema.SCHEMA_VERSION:
                raise RegistryError(
                    f"the registry at {self.location} has schema version {version}, "
                    f"newer than this likeness understands ({schema.SCHEMA_VERSION})",
                    hint="upgrade likeness",
                )
            if found < schema.SCHEMA_VERSION:
                applied = schema.upgrade(conn, found)
                conn.execute(
                    update(schema.meta)
                    .where(schema.meta.c.key == "schema_version")
                    .values(value=str(schema.SCHEMA_VERSION))
                )
                self._log(
                    conn,
                    "schema_upgrade",
                    "likeness",
                    {"from": found, "to": schema.SCHEMA_VERSION, "steps": applied},
                )
