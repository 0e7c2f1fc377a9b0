"""The installation's keys, kept in ``home.keys_dir`` (folder 0700, files 0600).

- ``data.keys``: Fernet keys (AES-128-CBC + HMAC-SHA256), one per line, newest first. Reference
  photos (face crops), embeddings and consent evidence are encrypted with the newest key; every
  key listed can decrypt. Rotation (``Registry.rotate_data_key``): a new key is put first,
  every stored blob is re-encrypted with it in one transaction, then the old keys are dropped.
- ``ledger-signing.pem``: the Ed25519 key that signs ledger entries (PKCS#8). Unencrypted by
  default; with ``LIKENESS_KEY_PASSPHRASE`` set it is encrypted at rest (``BestAvailableEncryption``)
  — a new key is written encrypted, an existing unencrypted one is re-written encrypted on first
  use — and every process that signs (enrols, grants, revokes, records outputs, logs refusals)
  needs the passphrase. Verifying needs only the public keys.
  ``ledger-<key_id>.pub``: the public half of every signing key this installation has used, so
  entries signed before a rotation still verify. To verify on another machine copy the ``.pub``
  files; to share a PostgreSQL registry between hosts copy the whole folder.

Erasure and backups: ``Registry.erase`` deletes a person's crops and embeddings from the live
database only; backups, dumps, snapshots and (PostgreSQL) dead rows made before it still hold them,
encrypted. ``likeness keys rotate --data`` after an erasure destroys the key those copies need, so
they become unreadable — every person's biometric data and consent documents in them, not only the
erased person's. Back up this folder apart from the database, and take a fresh backup after rotating.
consent/README.md ("Erasure, backups and the data key") says what erasure keeps and reaches.

Keys are created on first use. Creation is atomic (written to a temporary file, then linked into
place), so two processes starting at once end up with the same key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    KeySerializationEncryption,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from likeness.errors import RegistryError
from likeness.ledger import Signer, key_id_of

DATA_KEYS_FILE = "data.keys"
SIGNING_KEY_FILE = "ledger-signing.pem"
PASSPHRASE_ENV = "LIKENESS_KEY_PASSPHRASE"


def passphrase_from_env() -> bytes | None:
    """``LIKENESS_KEY_PASSPHRASE`` as bytes, or None when unset or empty."""
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None


def _write_private(path: Path, data: bytes, *, replace: bool) -> None:
    """Write ``data`` to ``path`` (mode 0600) atomically; if not ``replace``, keep an existing file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RegistryError(
            f"{path}: key file cannot be read ({exc.strerror})",
            hint="check the data home's keys/ folder and its permissions",
        ) from exc


@dataclass(frozen=True)
class InstallationKeys:
    keys_dir: Path
    passphrase: bytes | None = field(default=None, repr=False)
    """Encrypts the ledger signing key at rest (see the module docstring)."""

    # -- data encryption -------------------------------------------------------------------
    @property
    def data_keys_path(self) -> Path:
        return self.keys_dir / DATA_KEYS_FILE

    def _data_keys(self) -> list[bytes]:
        self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.data_keys_path.exists():
            _write_private(self.data_keys_path, Fernet.generate_key() + b"\n", replace=False)
        keys = [line.strip() for line in _read(self.data_keys_path).splitlines() if line.strip()]
        if not keys:
            raise RegistryError(f"{self.data_keys_path}: holds no key", hint="restore it from a backup")
        return keys

    def cipher(self) -> MultiFernet:
        return MultiFernet([Fernet(key) for key in self._data_keys()])

    def encrypt(self, data: bytes) -> bytes:
        return self.cipher().encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self.cipher().decrypt(token)
        except InvalidToken as exc:
            raise RegistryError(
                "stored biometric data cannot be decrypted with the keys in " + str(self.keys_dir),
                hint="restore keys/data.keys from a backup of this data home",
            ) from exc

    def add_data_key(self) -> MultiFernet:
        """Put a new key first (old ones kept for decryption) and return the cipher."""
        keys = [Fernet.generate_key(), *self._data_keys()]
        _write_private(self.data_keys_path, b"\n".join(keys) + b"\n", replace=True)
        return self.cipher()

    def drop_old_data_keys(self) -> None:
        """Keep only the newest key (call once everything is re-encrypted with it)."""
        _write_private(self.data_keys_path, self._data_keys()[0] + b"\n", replace=True)

    # -- ledger signing ---------------------------------------------------------------------
    @property
    def signing_key_path(self) -> Path:
        return self.keys_dir / SIGNING_KEY_FILE

    def _write_public(self, public_key: Ed25519PublicKey) -> None:
        path = self.keys_dir / f"ledger-{key_id_of(public_key)}.pub"
        if not path.exists():
            pem = public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            _write_private(path, pem, replace=False)

    def _encryption(self) -> KeySerializationEncryption:
        return BestAvailableEncryption(self.passphrase) if self.passphrase else NoEncryption()

    def _new_signing_pem(self) -> bytes:
        return Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, self._encryption()
        )

    def _load_signing_key(self) -> Ed25519PrivateKey:
        data = _read(self.signing_key_path)
        encrypted = b"ENCRYPTED" in data.split(b"\n", 1)[0]
        if encrypted and not self.passphrase:
            raise RegistryError(
                f"{self.signing_key_path}: the ledger signing key is encrypted",
                hint=f"set {PASSPHRASE_ENV} to its passphrase",
            )
        try:
            key = load_pem_private_key(data, password=self.passphrase if encrypted else None)
        except (ValueError, TypeError) as exc:
            raise RegistryError(
                f"{self.signing_key_path}: the ledger signing key cannot be opened ({exc})",
                hint=f"check {PASSPHRASE_ENV}, or restore the key from a backup",
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise RegistryError(
                f"{self.signing_key_path}: not an Ed25519 key", hint="restore it from a backup"
            )
        if self.passphrase and not encrypted:  # protect a key written before the passphrase was set
            pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, self._encryption())
            _write_private(self.signing_key_path, pem, replace=True)
        return key

    def signer(self) -> Signer:
        self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.signing_key_path.exists():
            _write_private(self.signing_key_path, self._new_signing_pem(), replace=False)
        key = self._load_signing_key()
        self._write_public(key.public_key())
        return Signer(key)

    def rotate_signer(self) -> Signer:
        """Start signing with a new key; the old public key stays for verification."""
        self.signer()  # make sure the current key's .pub exists before replacing it
        _write_private(self.signing_key_path, self._new_signing_pem(), replace=True)
        return self.signer()

    def verify_keys(self) -> dict[str, Ed25519PublicKey]:
        """Every public signing key of this installation, by key id."""
        found: dict[str, Ed25519PublicKey] = {}
        for path in sorted(self.keys_dir.glob("ledger-*.pub")):
            key = load_pem_public_key(_read(path))
            if isinstance(key, Ed25519PublicKey):
                found[key_id_of(key)] = key
        return found
