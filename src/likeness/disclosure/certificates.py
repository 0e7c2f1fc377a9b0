"""The certificate chain that signs this installation's content credentials (C2PA).

Two sources, checked in this order:

1. **A studio's own certificate** (one issued by a CA that viewers already trust):
   - environment: ``LIKENESS_C2PA_CERT`` (PEM file: the signing certificate first, then any
     intermediates; not the root) and ``LIKENESS_C2PA_KEY`` (PEM private key, unencrypted PKCS#8
     or traditional); optional ``LIKENESS_C2PA_ALG`` (``es256``, ``es384``, ``es512``, ``ps256``,
     ``ps384``, ``ps512``, ``ed25519``; default: from the key type) and ``LIKENESS_C2PA_TSA_URL``
     (an RFC 3161 time-stamp authority; without one a signature is checked against the
     certificate's validity at reading time);
   - or files in the data home: ``<home>/keys/c2pa/studio-chain.pem`` and
     ``<home>/keys/c2pa/studio-key.pem`` (the environment wins when both are set).
   Setting only one of the two (certificate, key) is an error, never a silent fallback.
2. **The installation's own chain**, generated with ``cryptography`` on first use and reused
   afterwards, in ``<home>/keys/c2pa/installation/`` (folder 0700, files 0600):
   ``root-ca.pem`` / ``root-ca.key`` (a local root CA: EC P-256, CA:TRUE pathlen 0,
   keyCertSign + cRLSign, 25 years) and ``signer.pem`` (the signing key and its certificate: EC
   P-256 / ES256, CA:FALSE, keyUsage digitalSignature (critical), extendedKeyUsage
   emailProtection + documentSigning — what c2pa-rs requires of a C2PA signer — 5 years,
   renewed from the root when under 30 days are left). Subject names say only "likeness
   installation" and a random installation tag: no host or user names.

Trust anchors used when *reading* (:func:`trust_anchors_pem`): this installation's root (if it
exists; reading never creates keys), plus any roots listed in ``LIKENESS_C2PA_TRUST_ANCHORS``
(a PEM file) or ``<home>/keys/c2pa/trust-anchors.pem`` — put a studio's root there. A file
signed elsewhere with a chain to none of these reads as ``valid-untrusted``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from likeness.errors import DisclosureError
from likeness.home import Home

CERT_ENV = "LIKENESS_C2PA_CERT"
KEY_ENV = "LIKENESS_C2PA_KEY"
ALG_ENV = "LIKENESS_C2PA_ALG"
TSA_ENV = "LIKENESS_C2PA_TSA_URL"
ANCHORS_ENV = "LIKENESS_C2PA_TRUST_ANCHORS"

C2PA_DIR = "c2pa"
INSTALLATION_DIR = "installation"
STUDIO_CHAIN_FILE = "studio-chain.pem"
STUDIO_KEY_FILE = "studio-key.pem"
ANCHORS_FILE = "trust-anchors.pem"
ROOT_CERT_FILE = "root-ca.pem"
ROOT_KEY_FILE = "root-ca.key"
SIGNER_FILE = "signer.pem"

ALGORITHMS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")
ROOT_DAYS = 25 * 365
SIGNER_DAYS = 5 * 365
RENEW_DAYS = 30
EKU_DOCUMENT_SIGNING = "1.3.6.1.5.5.7.3.36"
ORGANIZATION = "likeness installation (self-issued)"

Source = Literal["installation", "studio"]


@dataclass(frozen=True)
class SigningCredentials:
    """What signs a manifest: the certificate chain (leaf first), its private key, the algorithm."""

    chain_pem: bytes
    key_pem: bytes = field(repr=False)
    alg: str
    source: Source
    chain_path: Path
    key_path: Path
    tsa_url: str | None = None

    def describe(self) -> dict[str, str | None]:
        from cryptography import x509

        leaf = x509.load_pem_x509_certificates(self.chain_pem)[0]
        return {
            "source": self.source,
            "alg": self.alg,
            "subject": leaf.subject.rfc4514_string(),
            "issuer": leaf.issuer.rfc4514_string(),
            "not_after": leaf.not_valid_after_utc.isoformat(),
            "chain": str(self.chain_path),
            "tsa_url": self.tsa_url,
        }


def c2pa_dir(home: Home) -> Path:
    return home.keys_dir / C2PA_DIR


def installation_dir(home: Home) -> Path:
    return c2pa_dir(home) / INSTALLATION_DIR


# -- reading files ------------------------------------------------------------------------------
def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DisclosureError(
            f"{path}: the C2PA {what} cannot be read ({exc.strerror or exc})",
            hint=f"check the file and its permissions, or unset {CERT_ENV}/{KEY_ENV} to use the "
            "installation's own certificate",
        ) from exc


def _load_key(data: bytes, path: Path):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        return load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise DisclosureError(
            f"{path}: not an unencrypted PEM private key ({exc})",
            hint="export the signing key as unencrypted PEM (PKCS#8), readable only by this user",
        ) from exc


def _load_chain(data: bytes, path: Path) -> list:
    from cryptography import x509

    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise DisclosureError(
            f"{path}: not a PEM certificate chain ({exc})",
            hint="give the signing certificate first, then its intermediates, all as PEM",
        ) from exc
    return chain


def _alg_for(key) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in by_curve:
            return by_curve[key.curve.name]
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    elif isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise DisclosureError(
        f"the C2PA signing key ({type(key).__name__}) is not a kind C2PA signs with",
        hint="use an EC P-256/P-384/P-521, Ed25519 or RSA (PSS) key",
    )


def _public_bytes(public_key) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _checked(chain_pem: bytes, key_pem: bytes, chain_path: Path, key_path: Path, alg: str | None) -> str:
    """Check the key matches the chain's first certificate and the chain is in date; the algorithm."""
    chain = _load_chain(chain_pem, chain_path)
    key = _load_key(key_pem, key_path)
    if not chain:
        raise DisclosureError(f"{chain_path}: holds no certificate")
    leaf = chain[0]
    if _public_bytes(leaf.public_key()) != _public_bytes(key.public_key()):
        raise DisclosureError(
            f"{key_path}: this key does not belong to the first certificate in {chain_path}",
            hint="the chain file must start with the signing certificate of this key",
        )
    now = dt.datetime.now(dt.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise DisclosureError(
            f"{chain_path}: the signing certificate is valid only from {leaf.not_valid_before_utc:%Y-%m-%d} "
            f"to {leaf.not_valid_after_utc:%Y-%m-%d}",
            hint="renew the certificate",
        )
    chosen = (alg or _alg_for(key)).lower()
    if chosen not in ALGORITHMS:
        raise DisclosureError(
            f"{ALG_ENV}={alg!r} is not a C2PA signing algorithm", hint=f"use one of: {', '.join(ALGORITHMS)}"
        )
    return chosen


# -- the studio's certificate ---------------------------------------------------------------------
def _studio_paths(home: Home) -> tuple[Path, Path] | None:
    env_cert, env_key = os.environ.get(CERT_ENV), os.environ.get(KEY_ENV)
    if env_cert or env_key:
        if not (env_cert and env_key):
            missing = KEY_ENV if env_cert else CERT_ENV
            raise DisclosureError(
                f"{CERT_ENV if env_cert else KEY_ENV} is set but {missing} is not",
                hint="set both the certificate chain and its private key, or neither",
            )
        return Path(env_cert).expanduser(), Path(env_key).expanduser()
    chain, key = c2pa_dir(home) / STUDIO_CHAIN_FILE, c2pa_dir(home) / STUDIO_KEY_FILE
    if chain.exists() or key.exists():
        if not (chain.exists() and key.exists()):
            raise DisclosureError(
                f"{chain if chain.exists() else key} exists but {key if chain.exists() else chain} does not",
                hint="a studio certificate needs both its chain and its private key",
            )
        return chain, key
    return None


def _studio_credentials(home: Home) -> SigningCredentials | None:
    paths = _studio_paths(home)
    if paths is None:
        return None
    chain_path, key_path = paths
    chain_pem, key_pem = _read(chain_path, "certificate chain"), _read(key_path, "signing key")
    alg = _checked(chain_pem, key_pem, chain_path, key_path, os.environ.get(ALG_ENV) or None)
    return SigningCredentials(
        chain_pem=chain_pem,
        key_pem=key_pem,
        alg=alg,
        source="studio",
        chain_path=chain_path,
        key_path=key_path,
        tsa_url=os.environ.get(TSA_ENV) or None,
    )


# -- the installation's own chain -----------------------------------------------------------------
def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _replace_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        _write_private(tmp, data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _pem_cert(cert) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.PEM)


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _new_root(tag: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = _name(f"likeness root CA {tag}")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=ROOT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _new_signer(root_key, root_cert, tag: str) -> bytes:
    """A fresh signing key and certificate issued by the root, as one PEM (key, then certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=SIGNER_DAYS), root_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"likeness content credentials signer {tag}"))
        .issuer_name(root_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.EMAIL_PROTECTION, ObjectIdentifier(EKU_DOCUMENT_SIGNING)]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )
    return _pem_key(key) + _pem_cert(cert)


def _create_installation_chain(home: Home) -> None:
    """Generate root + signer in a private temp folder, then rename it into place (atomic).

    If another process got there first the rename fails and its chain is kept.
    """
    parent = c2pa_dir(home)
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = parent / f".installation.{secrets.token_hex(6)}.tmp"
    tmp.mkdir(mode=0o700)
    try:
        tag = secrets.token_hex(4)
        root_key, root_cert = _new_root(tag)
        _write_private(tmp / ROOT_KEY_FILE, _pem_key(root_key))
        _write_private(tmp / ROOT_CERT_FILE, _pem_cert(root_cert))
        _write_private(tmp / SIGNER_FILE, _new_signer(root_key, root_cert, tag))
        with contextlib.suppress(FileExistsError, OSError):
            os.rename(tmp, installation_dir(home))
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if not (installation_dir(home) / SIGNER_FILE).is_file():
        raise DisclosureError(
            f"{installation_dir(home)}: could not create the installation's C2PA certificate chain",
            hint="check that the data home's keys/ folder is writable",
        )


def _common_name(cert) -> str:
    from cryptography.x509.oid import NameOID

    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _split_signer(data: bytes, path: Path) -> tuple[bytes, bytes]:
    marker = b"-----BEGIN CERTIFICATE-----"
    at = data.find(marker)
    if at <= 0:
        raise DisclosureError(
            f"{path}: does not hold a key followed by a certificate",
            hint=f"delete {path.parent} to generate a new installation chain (older outputs then read "
            "as valid-untrusted unless the old root-ca.pem is kept in trust-anchors.pem)",
        )
    return data[at:], data[:at]


def _installation_credentials(home: Home) -> SigningCredentials:
    folder = installation_dir(home)
    signer_path = folder / SIGNER_FILE
    if not signer_path.exists():
        _create_installation_chain(home)
    chain_pem, key_pem = _split_signer(_read(signer_path, "installation signing key"), signer_path)
    leaf = _load_chain(chain_pem, signer_path)[0]
    left = leaf.not_valid_after_utc - dt.datetime.now(dt.UTC)
    if left < dt.timedelta(days=RENEW_DAYS):
        root_key = _load_key(_read(folder / ROOT_KEY_FILE, "installation root key"), folder / ROOT_KEY_FILE)
        root_cert = _load_chain(_read(folder / ROOT_CERT_FILE, "installation root"), folder / ROOT_CERT_FILE)[
            0
        ]
        tag = _common_name(leaf).rsplit(" ", 1)[-1]
        _replace_private(signer_path, _new_signer(root_key, root_cert, tag))
        chain_pem, key_pem = _split_signer(_read(signer_path, "installation signing key"), signer_path)
    alg = _checked(chain_pem, key_pem, signer_path, signer_path, None)
    return SigningCredentials(
        chain_pem=chain_pem,
        key_pem=key_pem,
        alg=alg,
        source="installation",
        chain_path=signer_path,
        key_path=signer_path,
        tsa_url=os.environ.get(TSA_ENV) or None,
    )


def signing_credentials(home: Home) -> SigningCredentials:
    """The studio's certificate if one is configured, else this installation's (created on first use).

    Raises :class:`DisclosureError` for anything unusable: a half-configured studio certificate,
    an unreadable or mismatched key, an expired certificate.
    """
    return _studio_credentials(home) or _installation_credentials(home)


def installation_root_pem(home: Home) -> bytes | None:
    """This installation's root certificate, if it has one (never creates it)."""
    path = installation_dir(home) / ROOT_CERT_FILE
    try:
        return path.read_bytes()
    except OSError:
        return None


def trust_anchors_pem(home: Home | None) -> str:
    """The roots to trust when reading: this installation's root and the configured ones (PEM)."""
    parts: list[bytes] = []
    if home is not None:
        root = installation_root_pem(home)
        if root:
            parts.append(root)
        configured = c2pa_dir(home) / ANCHORS_FILE
        if configured.is_file():
            parts.append(_read(configured, "trust anchors"))
    env = os.environ.get(ANCHORS_ENV)
    if env:
        parts.append(_read(Path(env).expanduser(), "trust anchors"))
    text = b"\n".join(part.strip() for part in parts if part.strip())
    return text.decode("ascii", errors="replace") + ("\n" if text else "")
