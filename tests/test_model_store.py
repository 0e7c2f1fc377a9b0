"""Model store: hashes recorded on first verified use, refusal of changed files, fetch with resume.

All model files are the small stand-ins of ``standin_models``; fetch is exercised against a real HTTP
server on 127.0.0.1 (the network edge), never the internet.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

import standin_models as standin
from likeness.errors import ModelMissing
from likeness.model_store import (
    BUFFALO_L,
    CHECKED,
    INSWAPPER_128,
    INVALID,
    MISMATCH,
    MISSING,
    RECORDED,
    RECORDED_NOW,
    UNRECORDED,
    VERIFIED,
    ModelPackage,
    ModelStore,
    fetch,
    list_models,
    model_file,
    verify_models,
)

pytest.importorskip("onnx")


def _pack(root: Path) -> Path:
    face = standin.StandinFace.for_image((640, 640), (200, 150, 400, 400))
    return standin.build_buffalo_pack(root, [face])


def _flip_byte_in_weights(path: Path) -> None:
    """Change one byte in the middle of the recogniser (inside its weights: the file stays valid ONNX)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_first_verified_use_records_the_hash_and_later_uses_compare_it(tmp_path: Path) -> None:
    pack = _pack(tmp_path)
    store = ModelStore(tmp_path)
    det = model_file("insightface_det_10g")

    assert store.check(det).state == UNRECORDED  # looking is not recording
    assert not store.record_file.exists()

    first = store.check(det, record=True)
    assert first.state == RECORDED_NOW and first.usable
    expected = hashlib.sha256((pack / "det_10g.onnx").read_bytes()).hexdigest()
    assert first.sha256 == expected
    record = json.loads(store.record_file.read_text())
    assert record["files"]["buffalo_l/det_10g.onnx"]["sha256"] == expected

    again = store.check(det, record=True)
    assert again.state == RECORDED and again.usable


def test_a_changed_file_is_refused_and_stays_refused(tmp_path: Path) -> None:
    pack = _pack(tmp_path)
    store = ModelStore(tmp_path)
    recogniser = model_file("insightface_arcface_r50")
    assert store.check(recogniser, record=True).state == RECORDED_NOW

    _flip_byte_in_weights(pack / "w600k_r50.onnx")
    # The changed file is still a perfectly loadable model: the refusal below is the hash's doing.
    ort = pytest.importorskip("onnxruntime")
    ort.InferenceSession(str(pack / "w600k_r50.onnx"), providers=["CPUExecutionProvider"])

    status = store.check(recogniser, record=True)
    assert status.state == MISMATCH and not status.usable
    assert store.check(recogniser, record=True).state == MISMATCH  # recording never papers over it
    with pytest.raises(ModelMissing) as caught:
        store.require(BUFFALO_L)
    message = str(caught.value)
    assert str(pack / "w600k_r50.onnx") in message
    assert "not loaded" in message and "--re-record" in message


def test_rerecord_accepts_a_replacement_only_after_its_signature_check(tmp_path: Path) -> None:
    pack = _pack(tmp_path)
    store = ModelStore(tmp_path)
    recogniser = model_file("insightface_arcface_r50")
    store.check(recogniser, record=True)

    standin.build_genderage(pack / "w600k_r50.onnx")  # wrong kind of model under the recogniser's name
    [wrong] = verify_models(store, ["insightface_arcface_r50"], rerecord=True)
    assert wrong.state == INVALID and "512" in wrong.detail

    standin.build_recognizer(pack / "w600k_r50.onnx", seed=5)  # a different, valid recogniser
    [replaced] = verify_models(store, ["insightface_arcface_r50"], rerecord=True)
    assert replaced.state == RECORDED_NOW and "replaced the record" in replaced.detail
    assert store.check(recogniser).state == RECORDED


def test_a_pinned_hash_wins_over_any_record(tmp_path: Path) -> None:
    _pack(tmp_path)
    store = ModelStore(tmp_path)
    det = model_file("insightface_det_10g")
    real = store.check(det, record=True).sha256
    pinned_ok = replace(det, sha256=real)
    pinned_other = replace(det, sha256="0" * 64)
    assert store.check(pinned_ok).state == VERIFIED
    assert store.check(pinned_other, record=True, rerecord=True).state == MISMATCH


def test_unknown_onnx_files_in_the_pack_folder_are_refused(tmp_path: Path) -> None:
    pack = _pack(tmp_path)
    standin.build_inswapper(pack / "inswapper_128.onnx")
    with pytest.raises(ModelMissing) as caught:
        ModelStore(tmp_path).require(BUFFALO_L)
    assert "inswapper_128.onnx" in caught.value.reason
    assert "loads every .onnx file" in caught.value.reason

    (pack / "inswapper_128.onnx").unlink()
    (pack / "manifest.json").write_text('{"manifest_version": 2}')  # would switch insightface's routing
    with pytest.raises(ModelMissing, match=r"manifest\.json"):
        ModelStore(tmp_path).require(BUFFALO_L)


def test_a_read_only_record_still_checks_the_signature_but_records_nothing(tmp_path: Path) -> None:
    _pack(tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the record's folder should be")
    store = ModelStore(tmp_path, record_path=blocker / "likeness-sha256.json")
    status = store.check(model_file("insightface_det_10g"), record=True)
    assert status.state == CHECKED and status.usable
    assert "could not be recorded" in status.detail
    standin.build_genderage(tmp_path / "buffalo_l" / "det_10g.onnx")
    assert store.check(model_file("insightface_det_10g"), record=True).state == INVALID


def test_a_damaged_record_stops_loading_instead_of_being_reset(tmp_path: Path) -> None:
    _pack(tmp_path)
    store = ModelStore(tmp_path)
    store.require(BUFFALO_L)
    store.record_file.write_text("{not json")
    with pytest.raises(ModelMissing) as caught:
        store.require(BUFFALO_L)
    assert str(store.record_file) in caught.value.reason
    assert store.record_file.read_text() == "{not json"


def test_list_reports_every_file_with_licence_and_presence(tmp_path: Path) -> None:
    _pack(tmp_path)
    rows = [status.to_dict() for status in list_models(ModelStore(tmp_path))]
    by_name = {row["name"]: row for row in rows}
    assert by_name["insightface_det_10g"]["present"] is True
    assert by_name["insightface_det_10g"]["state"] == UNRECORDED
    assert by_name["inswapper_128"]["state"] == MISSING
    assert by_name["insightface_landmarks_3d68"]["state"] == MISSING
    assert all(row["commercial_use"] is False for row in rows)
    assert "non-commercial" in str(by_name["inswapper_128"]["licence"])


# ------------------------------------------------------------------------------------------------ fetch


class _RangeServer(http.server.ThreadingHTTPServer):
    payload = b""
    ranges: list[str | None]
    bytes_sent = 0


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    server: _RangeServer

    def do_GET(self) -> None:
        payload = self.server.payload
        wanted = self.headers.get("Range")
        self.server.ranges.append(wanted)
        start = int(wanted.split("=")[1].split("-")[0]) if wanted else 0
        if start >= len(payload):
            self.send_response(416)
            self.end_headers()
            return
        body = payload[start:]
        self.send_response(206 if wanted else 200)
        if wanted:
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.bytes_sent += len(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture()
def zip_server(tmp_path: Path):
    built = tmp_path / "upstream"
    pack = _pack(built)
    standin.build_genderage(pack / "genderage.onnx")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zipped:
        for path in sorted(pack.glob("*.onnx")):
            zipped.write(path, arcname=path.name)
    server = _RangeServer(("127.0.0.1", 0), _RangeHandler)
    server.payload = buffer.getvalue()
    server.ranges = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, pack
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_resumes_a_partial_download_and_records_the_files(tmp_path: Path, zip_server) -> None:
    server, upstream = zip_server
    store = ModelStore(tmp_path / "models")
    part = store.models_dir / ".downloads" / "buffalo_l.zip.part"
    part.parent.mkdir(parents=True)
    half = len(server.payload) // 2
    part.write_bytes(server.payload[:half])
    url = f"http://127.0.0.1:{server.server_address[1]}/buffalo_l.zip"

    statuses = fetch(store, "buffalo_l", url=url)

    assert server.ranges == [f"bytes={half}-"]
    assert server.bytes_sent == len(server.payload) - half
    assert {s.spec.name: s.state for s in statuses} == {
        "insightface_det_10g": RECORDED_NOW,
        "insightface_arcface_r50": RECORDED_NOW,
        "insightface_landmarks_106": RECORDED_NOW,
    }
    for status in statuses:
        assert status.path.read_bytes() == (upstream / status.spec.filename).read_bytes()
    assert not (store.models_dir / "buffalo_l" / "genderage.onnx").exists()  # unused files stay out
    assert not part.exists()
    # A second fetch finds everything usable and downloads nothing.
    fetch(store, "buffalo_l", url=url)
    assert len(server.ranges) == 1


def test_fetch_without_network_says_what_to_do_and_keeps_what_it_has(tmp_path: Path) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: connection refused, like a machine without network
    store = ModelStore(tmp_path)
    with pytest.raises(ModelMissing) as caught:
        fetch(store, "buffalo_l", url=f"http://127.0.0.1:{port}/buffalo_l.zip", timeout=5)
    error = caught.value
    assert "could not download buffalo_l" in error.reason
    assert "no network" in (error.hint or "") and "likeness models verify buffalo_l" in (error.hint or "")
    assert not (tmp_path / "buffalo_l" / "det_10g.onnx").exists()


def test_fetch_of_a_package_without_upstream_download_explains_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing) as caught:
        fetch(ModelStore(tmp_path), INSWAPPER_128.name)
    assert "withdrew the public download" in caught.value.reason
    assert str(tmp_path / "inswapper_128.onnx") in (caught.value.hint or "")


def test_fetch_verifies_a_pinned_archive_hash(tmp_path: Path, zip_server) -> None:
    server, _ = zip_server
    url = f"http://127.0.0.1:{server.server_address[1]}/buffalo_l.zip"
    pinned = replace(BUFFALO_L, archive_sha256="f" * 64)
    store = ModelStore(tmp_path)
    with pytest.raises(ModelMissing) as caught:
        fetch(store, pinned, url=url)
    assert "not the pinned" in caught.value.reason
    assert not (store.models_dir / ".downloads" / "buffalo_l.zip.part").exists()


def test_packages_describe_their_files_consistently() -> None:
    for entry in (BUFFALO_L, INSWAPPER_128):
        assert isinstance(entry, ModelPackage)
        assert entry.url is not None or entry.manual
        assert {spec.package for spec in entry.files} == {entry.name}
