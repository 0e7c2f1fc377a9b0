"""A real PostgreSQL server for the registry tests, or a clean skip that says why.

``postgres_server`` (session): the server named by ``$LIKENESS_TEST_POSTGRES_URL`` (an admin URL,
e.g. ``postgresql+psycopg://USER@/postgres?host=/run/postgresql``), else a throwaway cluster started
in a temporary folder from the installed server binaries (Debian: ``/usr/lib/postgresql/*/bin``;
``apt-get install postgresql``). PostgreSQL refuses to run as root, so as root the cluster runs as
the ``postgres`` user through ``runuser`` or ``setpriv``. It listens on a Unix socket only, with
fsync off (the tests kill clients, never the server) and is stopped at the end of the session.

``postgres_home``: a data home whose registry lives in a fresh schema on that server, dropped after.

A test module uses them with ``from postgres import postgres_home, postgres_server  # noqa: F401``
(pytest puts tests/ on sys.path, as for ``standin_models``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_ENV = "LIKENESS_TEST_POSTGRES_URL"
SERVER_USER = "postgres"
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class PostgresServer:
    admin_url: str
    """SQLAlchemy URL of a database the tests may CREATE DATABASE from."""
    origin: str
    """Where it came from, for messages: the environment variable or the cluster folder."""

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """The URL of a fresh, empty schema (first on the search path), dropped afterwards.

        A schema isolates the registry's tables as well as a database would, and takes
        milliseconds to create where CREATE DATABASE takes a third of a second.
        """
        from sqlalchemy import create_engine, make_url

        name = f"likeness_test_{secrets.token_hex(4)}"
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
            url = make_url(self.admin_url)
            url = url.update_query_dict({"options": f"-c search_path={name}"})
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            admin.dispose()


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL ``bin`` folder that has initdb and pg_ctl."""
    candidates = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda folder: int(folder.parent.name) if folder.parent.name.isdigit() else 0,
    )
    for folder in reversed(candidates):
        if (folder / "pg_ctl").exists():
            return folder
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    return None


def _as_server_user() -> list[str] | None:
    """The command prefix that runs a program as a non-root user ([] when not root; None: impossible)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        return None
    if shutil.which("runuser"):
        return ["runuser", "-u", SERVER_USER, "--"]
    if shutil.which("setpriv"):
        entry = pwd.getpwnam(SERVER_USER)
        return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups"]
    return None


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")


def _skip_reason() -> str | None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install 'psycopg[binary]' (the `postgres` extra)"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    url = os.environ.get(PG_ENV)
    if url:
        yield PostgresServer(url, f"${PG_ENV}")
        return
    binaries = server_binaries()
    if binaries is None:
        pytest.skip(
            f"no PostgreSQL server installed (no /usr/lib/postgresql/*/bin/initdb): "
            f"apt-get install postgresql, or set {PG_ENV} to an admin URL"
        )
    prefix = _as_server_user()
    if prefix is None:
        pytest.skip(f"running as root and cannot switch to a '{SERVER_USER}' user to start PostgreSQL")
    root = Path(tempfile.mkdtemp(prefix="likeness-pg-"))
    data, socket_dir, log = root / "data", root / "run", root / "server.log"
    socket_dir.mkdir()
    if prefix:
        entry = pwd.getpwnam(SERVER_USER)
        for path in (root, socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    pg_ctl = str(binaries / "pg_ctl")
    try:
        _run(
            [*prefix, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", SERVER_USER],
            "initdb",
        )
        options = f"-k {socket_dir} -c listen_addresses='' -c fsync=off -c full_page_writes=off -p 5432"
        _run([*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start"], "pg_ctl start")
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start a throwaway PostgreSQL from {binaries}: {exc}")
    try:
        yield PostgresServer(
            f"postgresql+psycopg://{SERVER_USER}@/postgres?host={socket_dir}&port=5432", str(root)
        )
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def postgres_home(postgres_server: PostgresServer, tmp_path: Path):
    """A data home (keys in tmp) whose registry is a fresh, empty PostgreSQL schema."""
    from likeness.home import Home

    with postgres_server.database() as url:
        yield Home(root=tmp_path / "pg-home", db_url_override=url).ensure()
