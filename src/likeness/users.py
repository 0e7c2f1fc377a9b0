"""App users: names, roles and scrypt-hashed passwords, kept in one private JSON file in the data home.

Two roles. ``admin`` (a registry administrator) enrols people, records, revokes and erases
consent, and may also do everything an operator does. ``operator`` swaps and verifies, and may
read the registry and the audit ledger. Which role may do what is the table ``PERMISSIONS``;
the app checks it on the server in every handler, whatever the page shows.

The file (``<home>/app_users.json``) is written atomically with mode 0600 and refused when
anyone but its owner can read it, the way ssh treats a private key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from likeness.errors import LikenessError, RegistryError, UsageError
from likeness.home import Home

USERS_FILE = "app_users.json"
ROLES = ("admin", "operator")
MIN_PASSWORD_CHARS = 10
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")

# scrypt cost: 2**15 × 8 × 128 bytes = 32 MiB and about 0.1 s per check on this CPU. Stored per
# user, so raising it later only affects new or changed passwords.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_SCRYPT_MAXMEM = 128 * 1024 * 1024

PERMISSIONS: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {
        "swap": frozenset({"admin", "operator"}),
        "generate": frozenset({"admin", "operator"}),
        "verify": frozenset({"admin", "operator"}),
        "view": frozenset({"admin", "operator"}),
        "audit": frozenset({"admin", "operator"}),
        "enrol": frozenset({"admin"}),
        "grant": frozenset({"admin"}),
        "revoke": frozenset({"admin"}),
        "erase": frozenset({"admin"}),
        "view_biometrics": frozenset({"admin"}),
        "view_installation": frozenset({"admin"}),
    }
)
"""Action → roles allowed to do it."""

ACTION_WORDS: MappingProxyType[str, str] = MappingProxyType(
    {
        "swap": "run swaps",
        "generate": "generate images",
        "verify": "verify files",
        "view": "see the registry",
        "audit": "read the audit ledger",
        "enrol": "enrol people",
        "grant": "record consents",
        "revoke": "revoke consents",
        "erase": "erase people",
        "view_biometrics": "see enrolled reference faces",
    }
)


class NotAllowed(LikenessError):
    """The signed-in user's role does not allow this action."""

    exit_code = 1
    kind = "not_allowed"


@dataclass(frozen=True)
class AppUser:
    name: str
    role: str
    created_at: str
    password_changed_at: str

    def can(self, action: str) -> bool:
        return can(self.role, action)

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at,
            "password_changed_at": self.password_changed_at,
        }


def can(role: str, action: str) -> bool:
    """Whether ``role`` may do ``action`` (an unknown action is allowed to nobody)."""
    return role in PERMISSIONS.get(action, frozenset())


def require(user: AppUser | None, action: str) -> AppUser:
    """Return ``user`` if their role allows ``action``, else raise :class:`NotAllowed`."""
    if user is None:
        raise NotAllowed(
            f"you must sign in to {ACTION_WORDS.get(action, action)}",
            hint="sign in with an app user (`likeness users add NAME --role ...`)",
        )
    if not user.can(action):
        allowed = " or ".join(sorted(PERMISSIONS.get(action, ())))
        raise NotAllowed(
            f"{user.name!r} is signed in as {user.role}; only {allowed or 'nobody'} may "
            f"{ACTION_WORDS.get(action, action)}",
            hint="ask a registry administrator to do it, or to give you that role",
        )
    return user


def check_name(name: str) -> str:
    clean = name.strip()
    if not _NAME.match(clean):
        raise UsageError(
            f"{name!r} is not a valid user name",
            hint="use 1-64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit",
        )
    return clean


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}", hint=f"choose one of: {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise UsageError(
            f"the password is shorter than {MIN_PASSWORD_CHARS} characters",
            hint="choose a longer passphrase",
        )
    if password != password.strip():
        raise UsageError("the password starts or ends with a space", hint="remove the spaces")
    return password


def _hash(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32)


def _new_secret(password: str) -> dict[str, Any]:
    salt = secrets.token_bytes(16)
    digest = _hash(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return {
        "scheme": "scrypt",
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "salt": salt.hex(),
        "hash": digest.hex(),
    }


def _matches(secret: dict[str, Any], password: str) -> bool:
    if secret.get("scheme") != "scrypt":
        return False
    digest = _hash(
        password, bytes.fromhex(secret["salt"]), int(secret["n"]), int(secret["r"]), int(secret["p"])
    )
    return hmac.compare_digest(digest, bytes.fromhex(secret["hash"]))


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


class UserStore:
    """The app's users, read from disk on every call so changes apply to a running app at once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # a fixed secret to hash against for unknown names, so a wrong name costs as long as a wrong password
        self._decoy = _new_secret(secrets.token_hex(16))

    @classmethod
    def for_home(cls, home: Home) -> UserStore:
        return cls(home.root / USERS_FILE)

    # -- reading ---------------------------------------------------------------------------
    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return {}
        if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise RegistryError(
                f"{self.path} can be read by other users of this machine "
                f"(mode {stat.filemode(info.st_mode)})",
                hint=f"run: chmod 600 {self.path}",
            )
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            users = data["users"]
            if not isinstance(users, dict):
                raise TypeError("'users' is not an object")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RegistryError(
                f"{self.path}: the app user file cannot be read ({type(exc).__name__}: {exc})",
                hint="restore it from a backup, or delete it and add the users again",
            ) from exc
        return users

    def _user(self, name: str, entry: dict[str, Any]) -> AppUser:
        return AppUser(
            name=name,
            role=str(entry["role"]),
            created_at=str(entry.get("created_at", "")),
            password_changed_at=str(entry.get("password_changed_at", "")),
        )

    def list(self) -> list[AppUser]:
        return [self._user(name, entry) for name, entry in sorted(self._load().items())]

    def get(self, name: str) -> AppUser | None:
        entry = self._load().get(name)
        return None if entry is None else self._user(name, entry)

    def has_users(self) -> bool:
        return bool(self._load())

    def authenticate(self, name: str, password: str) -> AppUser | None:
        """The user if ``password`` is theirs, else None (same cost for unknown names)."""
        entry = self._load().get(name.strip())
        if entry is None:
            _matches(self._decoy, password)
            return None
        if entry.get("role") not in ROLES or not _matches(entry.get("secret", {}), password):
            return None
        return self._user(name.strip(), entry)

    # -- writing ---------------------------------------------------------------------------
    @contextmanager
    def _editing(self) -> Iterator[dict[str, dict[str, Any]]]:
        """Read-modify-write under an exclusive lock; the file is replaced atomically, mode 0600."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _lock(fd)
            users = self._load()
            yield users
            handle, tmp = tempfile.mkstemp(prefix=".app_users.", dir=self.path.parent)
            try:  # mkstemp creates the file with mode 0600
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    json.dump({"version": 1, "users": users}, out, indent=2, sort_keys=True)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        finally:
            os.close(fd)

    def add(self, name: str, password: str, role: str) -> AppUser:
        name, role = check_name(name), check_role(role)
        check_password(password)
        with self._editing() as users:
            if name in users:
                raise UsageError(
                    f"app user {name!r} already exists",
                    hint="use `likeness users passwd` or `likeness users role` to change them",
                )
            now = _now()
            users[name] = {
                "role": role,
                "secret": _new_secret(password),
                "created_at": now,
                "password_changed_at": now,
            }
            return self._user(name, users[name])

    def set_password(self, name: str, password: str) -> AppUser:
        check_password(password)
        with self._editing() as users:
            entry = self._existing(users, name)
            entry.update(secret=_new_secret(password), password_changed_at=_now())
            return self._user(name, entry)

    def set_role(self, name: str, role: str) -> AppUser:
        role = check_role(role)
        with self._editing() as users:
            entry = self._existing(users, name)
            entry["role"] = role
            return self._user(name, entry)

    def remove(self, name: str) -> None:
        with self._editing() as users:
            self._existing(users, name)
            del users[name]

    @staticmethod
    def _existing(users: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
        if name not in users:
            raise UsageError(f"no app user named {name!r}", hint="`likeness users list` shows them")
        return users[name]


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: single-writer use is assumed
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
