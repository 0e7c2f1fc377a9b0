"""C2PA content credentials on real outputs: every output signed, trusted with this installation's
root (valid-untrusted without it), invalid after a flipped byte, a certificate chain made once and
reused, a studio's own certificate, and no output at all when signing fails."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import socket
import stat
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from likeness.disclosure.certificates import (
    ANCHORS_ENV,
    CERT_ENV,
    KEY_ENV,
    ROOT_CERT_FILE,
    SIGNER_FILE,
    installation_dir,
)
from likeness.disclosure.credentials import (
    DIGITAL_SOURCE_TYPES,
    CredentialFacts,
    read_credentials,
    sign_content_credentials,
)
from likeness.disclosure.output_id import new_output_id
from likeness.disclosure.read import read_disclosure
from likeness.disclosure.still_sink import encode
from likeness.disclosure.types import Ingredient, SealedOutput, Unsealed
from likeness.disclosure.write import seal
from likeness.errors import DisclosureError
from likeness.media import load_image

COMPOSITE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


@pytest.fixture(autouse=True)
def _no_studio_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (CERT_ENV, KEY_ENV, ANCHORS_ENV, "LIKENESS_C2PA_ALG", "LIKENESS_C2PA_TSA_URL"):
        monkeypatch.delenv(name, raising=False)


def _unsealed(faces_dir: Path, *, kind: str = "swap", operator: str = "tester", source: Path | None = None):
    target = faces_dir / "obama" / "4.jpg"
    source = source or faces_dir / "biden" / "1.jpg"
    picture = load_image(target)
    source_sha = hashlib.sha256(source.read_bytes()).hexdigest()
    ingredients = [Ingredient(role="source", path=source, sha256=source_sha, format="JPEG")]
    if kind == "swap":
        ingredients.append(Ingredient(role="target", path=target, sha256=picture.sha256, format="JPEG"))
    return Unsealed(
        pixels=picture.pixels,
        kind=kind,
        purpose="research",
        consent_ids=["consent-aaa", "consent-bbb"],
        ingredients=ingredients,
        tools={"analyzer": {"backend": "dlib"}, "swapper": {"swapper": "classical", "model_licence": "none"}},
        operator=operator,
        consent_hashes={"consent-aaa": "ab" * 32},
    )


def _seal(unsealed: Unsealed, out: Path, home) -> SealedOutput:
    return seal(unsealed, out, home=home, record=lambda sealed: None)


def _by_role(report) -> dict[str, dict]:
    return {item["role"]: item for item in report.ingredients}


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name or p.name.endswith(".c2pa"))


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_every_output_is_signed_and_reads_back_trusted(
    faces_dir: Path, tmp_path: Path, home, suffix: str
) -> None:
    unsealed = _unsealed(faces_dir)
    out = tmp_path / f"out{suffix}"
    sealed = _seal(unsealed, out, home)
    assert sealed.c2pa is True
    assert sealed.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()

    report = read_credentials(out, home)
    assert report.state == "trusted" and report.reasons == ()
    assert report.output_id == sealed.output_id
    assert report.consent_ids == ("consent-aaa", "consent-bbb")
    assert report.consent_hashes == {"consent-aaa": "ab" * 32}
    assert report.kind == "swap" and report.digital_source_type == COMPOSITE and report.ai_generated
    assert report.actions == ("c2pa.placed", "c2pa.opened", "c2pa.edited", "c2pa.watermarked") or (
        report.actions == ("c2pa.opened", "c2pa.placed", "c2pa.edited", "c2pa.watermarked")
    )
    ingredients = _by_role(report)
    assert ingredients["target"]["relationship"] == "parentOf"
    assert ingredients["target"]["sha256"] == unsealed.ingredients[1].sha256
    assert ingredients["source"]["relationship"] == "componentOf"
    assert ingredients["source"]["format"] == "image/jpeg"
    assert report.tools["swapper"]["swapper"] == "classical"
    assert report.claim_generator and report.claim_generator.startswith("likeness")

    # Without this installation's root the signature still holds, but nobody vouches for the signer.
    untrusted = read_credentials(out)
    assert untrusted.state == "valid-untrusted"
    assert untrusted.reasons == ("signingCredential.untrusted",)
    assert untrusted.output_id == sealed.output_id

    disclosure = read_disclosure(out, home=home)
    assert disclosure.c2pa.state == "trusted"
    assert disclosure.watermark.output_id == sealed.output_id and disclosure.label_detected
    assert disclosure.to_dict()["c2pa"]["state"] == "trusted"


def test_no_thumbnails_and_no_personal_data(faces_dir: Path, tmp_path: Path, home) -> None:
    import c2pa

    source = tmp_path / "jane_doe_private_headshot.jpg"
    source.write_bytes((faces_dir / "biden" / "1.jpg").read_bytes())
    unsealed = _unsealed(faces_dir, operator="Jane Q. Operator", source=source)
    out = tmp_path / "out.jpg"
    _seal(unsealed, out, home)

    data = out.read_bytes()
    for secret in (b"Jane", b"jane_doe", b"Operator", b"obama", b"biden", str(tmp_path).encode()):
        assert secret not in data, secret
    with c2pa.Reader(str(out)) as reader:
        store = json.loads(reader.json())
    assert "thumbnail" not in json.dumps(store)
    unsigned = encode(load_image(out).pixels, "JPEG")  # what the file would be without a manifest
    assert len(data) - len(unsigned) < 12_000


def test_generated_media_is_declared_created_by_a_trained_algorithm(
    faces_dir: Path, tmp_path: Path, home
) -> None:
    out = tmp_path / "generated.png"
    sealed = _seal(_unsealed(faces_dir, kind="generated"), out, home)
    report = read_credentials(out, home)
    assert report.state == "trusted" and report.output_id == sealed.output_id
    assert report.digital_source_type == TRAINED == DIGITAL_SOURCE_TYPES["generated"]
    assert report.actions == ("c2pa.created", "c2pa.placed", "c2pa.watermarked")
    assert [item["relationship"] for item in report.ingredients] == ["componentOf"]


def _flip_in_image_data(path: Path) -> None:
    data = bytearray(path.read_bytes())
    if data.startswith(b"\xff\xd8"):
        start = data.rindex(b"\xff\xda") + 64  # inside the entropy-coded scan
    elif data.startswith(b"\x89PNG"):
        start = data.index(b"IDAT") + 64
    else:
        start = data.index(b"mdat") + 64
    index = next(i for i in range(start, len(data)) if data[i] < 0xF0)
    data[index] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_flipped_byte_in_the_image_data_reads_invalid(
    faces_dir: Path, tmp_path: Path, home, suffix: str
) -> None:
    out = tmp_path / f"out{suffix}"
    sealed = _seal(_unsealed(faces_dir), out, home)
    _flip_in_image_data(out)
    report = read_credentials(out, home)
    assert report.state == "invalid"
    assert "assertion.dataHash.mismatch" in report.reasons
    assert report.output_id == sealed.output_id  # the manifest itself still names it
    assert "INVALID" in report.describe()


def _clip(path: Path) -> Path:
    import av

    rng = np.random.default_rng(3)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for _ in range(10):
            frame = av.VideoFrame.from_ndarray(
                rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), format="rgb24"
            )
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.video
def test_mp4_is_signed_through_the_same_api(tmp_path: Path, home) -> None:
    clip = _clip(tmp_path / "clip.mp4")
    target = _clip(tmp_path / "footage.mp4")
    facts = CredentialFacts(
        output_id=new_output_id(),
        kind="swap",
        media_type="video/mp4",
        purpose="research",
        consent_ids=["consent-aaa"],
        ingredients=[
            Ingredient("target", target, hashlib.sha256(target.read_bytes()).hexdigest(), "video/mp4"),
            Ingredient("source", None, "cd" * 32, "JPEG"),  # a photo no longer on disk
        ],
        tools={"swapper": {"swapper": "test"}},
    )
    result = sign_content_credentials(clip, facts=facts, home=home)
    assert result.state == "trusted" and result.media_type == "video/mp4"
    assert _leftovers(tmp_path) == []
    report = read_credentials(clip, home)
    assert report.state == "trusted" and report.output_id == facts.output_id
    assert _by_role(report)["target"]["relationship"] == "parentOf"
    assert _by_role(report)["source"]["sha256"] == "cd" * 32
    _flip_in_image_data(clip)
    assert read_credentials(clip, home).state == "invalid"


def test_the_installation_chain_is_made_once_and_reused(faces_dir: Path, tmp_path: Path, home) -> None:
    folder = installation_dir(home)
    assert not folder.exists()
    first = _seal(_unsealed(faces_dir), tmp_path / "a.jpg", home)
    root = (folder / ROOT_CERT_FILE).read_bytes()
    signer = (folder / SIGNER_FILE).read_bytes()
    second = _seal(_unsealed(faces_dir), tmp_path / "b.jpg", home)
    assert (folder / ROOT_CERT_FILE).read_bytes() == root and (folder / SIGNER_FILE).read_bytes() == signer
    assert sorted(p.name for p in folder.iterdir()) == ["root-ca.key", "root-ca.pem", "signer.pem"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in folder.iterdir())

    a, b = read_credentials(first.path, home), read_credentials(second.path, home)
    assert a.signer["cert_serial_number"] == b.signer["cert_serial_number"]
    assert a.output_id != b.output_id

    leaf = x509.load_pem_x509_certificates(signer[signer.index(b"-----BEGIN CERTIFICATE") :])[0]
    ca = x509.load_pem_x509_certificate(root)
    assert leaf.issuer == ca.subject
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in eku and x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36") in eku
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    # The names say what signs, not who or where: no user or host names.
    for cert, what in ((leaf, "content credentials signer"), (ca, "root CA")):
        attributes = {a.oid: a.value for a in cert.subject}
        assert set(attributes) == {NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME}
        assert attributes[NameOID.ORGANIZATION_NAME] == "likeness installation (self-issued)"
        assert re.fullmatch(rf"likeness {what} [0-9a-f]{{8}}", attributes[NameOID.COMMON_NAME])
    assert socket.gethostname() not in leaf.subject.rfc4514_string()


def _studio_chain(folder: Path, key_type: str) -> tuple[Path, Path, Path]:
    """A studio's CA and signing certificate, made here independently of likeness's own code."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Harbour Films Test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    key = (
        ec.generate_private_key(ec.SECP256R1()) if key_type == "ec" else ed25519.Ed25519PrivateKey.generate()
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Harbour Films"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "Harbour Films content credentials"),
                ]
            )
        )
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA384())
    )
    pem = serialization.Encoding.PEM
    chain, key_file, root = folder / "studio-chain.pem", folder / "studio-key.pem", folder / "studio-root.pem"
    chain.write_bytes(leaf.public_bytes(pem))
    key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    root.write_bytes(ca.public_bytes(pem))
    return chain, key_file, root


@pytest.mark.parametrize(("where", "key_type"), [("env", "ec"), ("home", "ed25519")])
def test_a_studio_certificate_is_used_when_configured(
    faces_dir: Path, tmp_path: Path, home, monkeypatch: pytest.MonkeyPatch, where: str, key_type: str
) -> None:
    studio = tmp_path / "studio"
    studio.mkdir()
    chain, key, root = _studio_chain(studio, key_type)
    if where == "env":
        monkeypatch.setenv(CERT_ENV, str(chain))
        monkeypatch.setenv(KEY_ENV, str(key))
    else:
        (home.keys_dir / "c2pa").mkdir(parents=True)
        for made in (chain, key):
            (home.keys_dir / "c2pa" / made.name).write_bytes(made.read_bytes())
    out = tmp_path / "out.jpg"
    sealed = _seal(_unsealed(faces_dir), out, home)

    report = read_credentials(out, home)
    assert report.state == "valid-untrusted" and report.reasons == ("signingCredential.untrusted",)
    assert report.signer["issuer"] == "Harbour Films" and report.output_id == sealed.output_id
    assert report.signer["alg"].lower() == ("es256" if key_type == "ec" else "ed25519")
    assert not installation_dir(home).exists()  # the installation's own chain was not needed

    monkeypatch.setenv(ANCHORS_ENV, str(root))  # the studio's root as a trust anchor
    assert read_credentials(out, home).state == "trusted"


@pytest.mark.parametrize(
    "problem",
    [
        "garbage key",
        "missing key file",
        "key of another certificate",
        "only the certificate",
        "corrupt installation key",
    ],
)
def test_a_signing_failure_is_an_error_and_leaves_no_file(
    faces_dir: Path, tmp_path: Path, home, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    studio = tmp_path / "studio"
    studio.mkdir()
    chain, key, _ = _studio_chain(studio, "ec")
    if problem == "garbage key":
        key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    elif problem == "missing key file":
        key.unlink()
    elif problem == "key of another certificate":
        other = tmp_path / "other"
        other.mkdir()
        _, key, _ = _studio_chain(other, "ec")
    if problem == "corrupt installation key":
        _seal(_unsealed(faces_dir), tmp_path / "first.jpg", home)  # makes the chain
        (installation_dir(home) / SIGNER_FILE).write_bytes(b"garbage")
    else:
        monkeypatch.setenv(CERT_ENV, str(chain))
        if problem != "only the certificate":
            monkeypatch.setenv(KEY_ENV, str(key))
    out = tmp_path / "out.jpg"
    recorded: list[SealedOutput] = []
    with pytest.raises(DisclosureError) as caught:
        seal(_unsealed(faces_dir), out, home=home, record=recorded.append)
    assert recorded == [] and not out.exists() and _leftovers(tmp_path) == []
    assert caught.value.exit_code == 1 and caught.value.reason


def test_clean_photos_carry_no_credentials(faces_dir: Path, home) -> None:
    photos = ["obama/4.jpg", "alex_lacamoire/1.png", "_multi/couple.jpg", "_noface/landscape_view.jpg"]
    for photo in photos:
        report = read_credentials(faces_dir / photo, home)
        assert report.state == "absent" and report.output_id is None and report.reasons == ()
