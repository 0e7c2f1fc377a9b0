"""The one sealing path for stills: label → watermark → encode → sign → record → atomic rename."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from likeness.disclosure import still_sink
from likeness.disclosure.label import detect_label
from likeness.disclosure.output_id import parse_output_id
from likeness.disclosure.phash import hamming, phash
from likeness.disclosure.read import read_disclosure
from likeness.disclosure.types import Ingredient, SealedOutput, Unsealed
from likeness.disclosure.write import seal
from likeness.errors import BadInput, ConsentRefused, DisclosureError, RegistryError, UsageError
from likeness.media import load_image
from likeness.progress import StageTimer


def _unsealed(path: Path, **changes) -> Unsealed:
    picture = load_image(path)
    fields = {
        "pixels": picture.pixels,
        "kind": "swap",
        "purpose": "test",
        "consent_ids": ["consent-1"],
        "ingredients": [Ingredient(role="target", path=path, sha256=picture.sha256, format=picture.format)],
        "tools": {"swapper": {"name": "test"}},
        "operator": "tester",
    }
    fields.update(changes)
    return Unsealed(**fields)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "partial" in p.name)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".JPEG"])
def test_seal_writes_a_disclosed_file(faces_dir: Path, tmp_path: Path, home, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    recorded: list[SealedOutput] = []

    def record(sealed: SealedOutput) -> None:
        assert not out.exists()  # recorded before it appears under its name
        assert len(_leftovers(tmp_path)) == 1
        recorded.append(sealed)

    timer = StageTimer()
    sealed = seal(_unsealed(faces_dir / "obama" / "4.jpg"), out, home=home, record=record, timer=timer)

    assert recorded == [sealed]
    assert sealed.path == out.absolute() and out.is_file() and _leftovers(tmp_path) == []
    assert parse_output_id(sealed.output_id) == sealed.output_id
    assert sealed.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert sealed.media_type == ("image/png" if suffix == ".png" else "image/jpeg")
    assert sealed.consent_ids == ["consent-1"] and sealed.kind == "swap" and sealed.purpose == "test"
    assert {"label", "watermark", "encode", "sign", "record"} <= set(timer.seconds)
    assert sealed.c2pa is True  # content credentials signed into the file before it was recorded

    report = read_disclosure(out, home=home)
    assert report.c2pa.state == "trusted" and report.c2pa.output_id == sealed.output_id
    assert report.watermark.found and report.output_id == sealed.output_id
    assert report.label_detected
    assert report.sha256 == sealed.sha256
    assert hamming(report.phash, sealed.phash) <= 2
    data = report.to_dict()
    assert data["watermark"]["output_id"] == sealed.output_id and data["watermark"]["found"] is True
    assert data["label"] == {"detected": True} and data["c2pa"]["state"] == "trusted"

    with Image.open(out) as image:
        assert image.format == ("PNG" if suffix == ".png" else "JPEG")
        if image.format == "JPEG":
            from PIL import JpegImagePlugin

            assert JpegImagePlugin.get_sampling(image) == 0  # 4:4:4: no chroma subsampling


def test_no_exif_or_gps_is_carried_over(faces_dir: Path, tmp_path: Path, home) -> None:
    source = tmp_path / "with_gps.jpg"
    image = Image.open(faces_dir / "kit_harington" / "2.jpg")
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}  # GPS
    image.save(source, "JPEG", exif=exif.tobytes(), quality=95)
    with Image.open(source) as check:
        assert check.getexif().get(0x010F) == "SecretCam"

    out = tmp_path / "out.jpg"
    seal(_unsealed(source), out, home=home, record=lambda s: None)
    data = out.read_bytes()
    assert b"Exif" not in data and b"SecretCam" not in data
    with Image.open(out) as written:
        assert len(written.getexif()) == 0


@pytest.mark.parametrize("error", [ConsentRefused("consent revoked meanwhile"), RegistryError("db locked")])
def test_a_refusing_record_leaves_nothing(faces_dir: Path, tmp_path: Path, home, error) -> None:
    out = tmp_path / "out.jpg"

    def record(sealed: SealedOutput) -> None:
        raise error

    with pytest.raises(type(error)):
        seal(_unsealed(faces_dir / "obama" / "4.jpg"), out, home=home, record=record)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_an_unexpected_error_is_wrapped_and_leaves_nothing(faces_dir: Path, tmp_path: Path, home) -> None:
    out = tmp_path / "out.png"

    def record(sealed: SealedOutput) -> None:
        raise RuntimeError("ledger exploded")

    with pytest.raises(DisclosureError, match="ledger exploded"):
        seal(_unsealed(faces_dir / "obama" / "4.jpg"), out, home=home, record=record)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_a_failing_encoder_leaves_nothing(faces_dir: Path, tmp_path: Path, home, monkeypatch) -> None:
    out = tmp_path / "out.jpg"
    calls: list[SealedOutput] = []

    def broken_encode(pixels: np.ndarray, fmt: str) -> bytes:  # fault injection: the disk/codec fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(still_sink, "encode", broken_encode)
    with pytest.raises(DisclosureError, match="No space left"):
        seal(_unsealed(faces_dir / "obama" / "4.jpg"), out, home=home, record=calls.append)
    assert calls == [] and not out.exists() and _leftovers(tmp_path) == []


def test_an_existing_output_is_replaced_atomically(faces_dir: Path, tmp_path: Path, home) -> None:
    out = tmp_path / "out.jpg"
    first = seal(_unsealed(faces_dir / "obama" / "4.jpg"), out, home=home, record=lambda s: None)
    second = seal(_unsealed(faces_dir / "obama" / "4.jpg"), out, home=home, record=lambda s: None)
    assert first.output_id != second.output_id
    assert read_disclosure(out).output_id == second.output_id


def test_unknown_suffix_is_refused_before_any_work(faces_dir: Path, tmp_path: Path, home) -> None:
    calls: list[SealedOutput] = []
    for name in ["out.gif", "out", "out.txt"]:
        with pytest.raises(UsageError, match=r"\.jpg"):
            seal(_unsealed(faces_dir / "obama" / "4.jpg"), tmp_path / name, home=home, record=calls.append)
    assert calls == []
    assert not any(p.name.startswith(("out", ".out")) for p in tmp_path.iterdir())


def test_refuses_to_overwrite_an_input(faces_dir: Path, tmp_path: Path, home) -> None:
    source = tmp_path / "target.jpg"
    source.write_bytes((faces_dir / "obama" / "4.jpg").read_bytes())
    before = source.read_bytes()
    with pytest.raises(UsageError, match="input"):
        seal(_unsealed(source), tmp_path / "." / "target.jpg", home=home, record=lambda s: None)
    assert source.read_bytes() == before


def test_missing_folder_and_bad_pixels_are_refused(faces_dir: Path, tmp_path: Path, home) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        seal(
            _unsealed(faces_dir / "obama" / "4.jpg"),
            tmp_path / "nope" / "o.jpg",
            home=home,
            record=lambda s: None,
        )
    bad = _unsealed(faces_dir / "obama" / "4.jpg", pixels=np.zeros((100, 100), np.uint8))
    with pytest.raises(DisclosureError):
        seal(bad, tmp_path / "o.jpg", home=home, record=lambda s: None)
    assert not (tmp_path / "o.jpg").exists()


def test_label_language_and_corner_come_from_the_job(faces_dir: Path, tmp_path: Path, home) -> None:
    out = tmp_path / "out.png"
    unsealed = _unsealed(faces_dir / "obama" / "4.jpg", label_corner="top-left", label_language="zh")
    seal(unsealed, out, home=home, record=lambda s: None)
    pixels = load_image(out).pixels
    h, w = pixels.shape[:2]
    assert pixels[: h // 5, : w // 3].max(axis=2).min() < 30  # the dark plate is top-left
    assert detect_label(pixels)


def test_verify_reads_clean_and_bad_files(faces_dir: Path, tmp_path: Path) -> None:
    report = read_disclosure(faces_dir / "obama" / "4.jpg")
    assert not report.watermark.found and report.output_id is None and not report.label_detected
    assert report.c2pa.state == "absent"
    assert report.to_dict()["watermark"]["output_id"] is None
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(BadInput):
        read_disclosure(broken)


@pytest.mark.slow
def test_phash_matches_near_duplicates_only(faces_dir: Path) -> None:
    a = load_image(faces_dir / "obama" / "4.jpg").pixels
    small = np.asarray(Image.fromarray(a).resize((a.shape[1] // 3, a.shape[0] // 3)))
    other = load_image(faces_dir / "biden" / "2.jpg").pixels
    assert len(phash(a)) == 16
    assert hamming(phash(a), phash(small)) <= 4
    assert hamming(phash(a), phash(other)) > 12
