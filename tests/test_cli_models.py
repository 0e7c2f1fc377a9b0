"""``likeness models …`` and the insightface backend through the CLI: exit codes, JSON, messages.

Model files are the stand-ins of ``standin_models`` placed in a real data home; fetch is exercised
against a real HTTP server on 127.0.0.1, never the internet. Swap outputs stay in pytest's tmp folders.
"""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import json
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import standin_models as standin
from likeness.cli import main
from likeness.media.image import load_image

pytest.importorskip("insightface")

OBAMA_BOX = (366, 136, 624, 394)
UNTIL = (dt.date.today() + dt.timedelta(days=60)).isoformat()


def run(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--home", str(home), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def run_json(home: Path, *args: str) -> tuple[int, dict]:
    code, out, err = run(home, *args, "--json")
    assert out.strip(), f"no JSON printed (exit {code}): {err}"
    return code, json.loads(out)


def by_name(data: dict) -> dict[str, dict]:
    return {row["name"]: row for row in data["files"]}


def install_standins(models_dir: Path, faces_dir: Path, *, swapper: bool = True) -> Path:
    """A stand-in buffalo_l (its detector configured for obama/1.jpg) and inswapper; returns the pack."""
    picture = load_image(faces_dir / "obama" / "1.jpg")
    face = standin.StandinFace.for_image((picture.width, picture.height), OBAMA_BOX)
    pack = standin.build_buffalo_pack(models_dir, [face], with_genderage=False)
    if swapper:
        standin.build_inswapper(models_dir / "inswapper_128.onnx")
    return pack


@pytest.fixture()
def data_home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every outgoing connection attempt is recorded and refused (the network edge)."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def swap_args(faces_dir: Path, out: Path, purpose: str = "education") -> list[str]:
    return [
        "swap",
        "--backend",
        "insightface",
        "--source",
        str(faces_dir / "biden" / "1.jpg"),
        "--target",
        str(faces_dir / "obama" / "1.jpg"),
        "--purpose",
        purpose,
        "--out",
        str(out),
    ]


# ------------------------------------------------------------------------------------------------ list


def test_list_shows_dlib_and_onnx_files_with_licences(data_home: Path) -> None:
    code, data = run_json(data_home, "models", "list")
    assert code == 0
    rows = by_name(data)
    assert rows["dlib_landmarks_68"]["state"] == "verified" and rows["dlib_landmarks_68"]["present"]
    assert (
        rows["dlib_landmarks_68"]["commercial_use"] is False
        and "300-W" in rows["dlib_landmarks_68"]["licence"]
    )
    assert rows["dlib_resnet_v1"]["commercial_use"] is True
    assert rows["dlib_resnet_v1"]["size"] == 22_466_066
    assert (
        rows["insightface_det_10g"]["present"] is False and rows["insightface_det_10g"]["state"] == "missing"
    )
    assert rows["insightface_det_10g"]["file"] == str(data_home / "models" / "buffalo_l" / "det_10g.onnx")
    assert rows["inswapper_128"]["commercial_licence"] is None
    assert data["runtime"]["providers"] and data["runtime"]["LIKENESS_PROVIDERS"] == "auto"

    code, out, _ = run(data_home, "models", "list")
    assert code == 0
    assert "licences:" in out and "iBUG 300-W" in out
    line = next(line for line in out.splitlines() if line.startswith("dlib_landmarks_68 "))
    assert " verified " in line and " no [" in line


# ------------------------------------------------------------------------------ verify and hash refusal


def test_verify_records_hashes_and_a_changed_file_is_refused_everywhere(
    data_home: Path, faces_dir: Path, tmp_path: Path
) -> None:
    pack = install_standins(data_home / "models", faces_dir)
    code, data = run_json(data_home, "models", "list")
    assert by_name(data)["insightface_arcface_r50"]["state"] == "unrecorded"

    code, data = run_json(data_home, "models", "verify")
    assert code == 0 and data["ok"] is True
    assert by_name(data)["insightface_arcface_r50"]["state"] == "recorded now"
    assert by_name(data)["inswapper_128"]["state"] == "recorded now"
    code, data = run_json(data_home, "models", "verify")
    assert by_name(data)["insightface_arcface_r50"]["state"] == "recorded"

    standin.build_recognizer(pack / "w600k_r50.onnx", seed=4321)  # a valid model, but not the recorded one
    code, out, err = run(data_home, "models", "verify")
    assert code == 4
    assert "mismatch" in out
    assert str(pack / "w600k_r50.onnx") in err and "--re-record" in err
    code, data = run_json(data_home, "models", "verify")
    assert code == 4 and data["ok"] is False
    assert [p["name"] for p in data["problems"]] == ["insightface_arcface_r50"]

    out_file = tmp_path / "never.jpg"
    code, _, err = run(data_home, *swap_args(faces_dir, out_file))
    assert code == 4
    assert "w600k_r50.onnx" in err and "not loaded" in err
    assert not out_file.exists()

    code, data = run_json(data_home, "models", "verify", "insightface_arcface_r50", "--re-record")
    assert code == 0 and by_name(data)["insightface_arcface_r50"]["state"] == "recorded now"
    standin.build_genderage(pack / "w600k_r50.onnx")  # the wrong kind of model is never recorded
    code, data = run_json(data_home, "models", "verify", "insightface_arcface_r50", "--re-record")
    assert code == 4 and by_name(data)["insightface_arcface_r50"]["state"] == "invalid"


def test_verify_by_name_needs_the_named_files(data_home: Path, faces_dir: Path) -> None:
    code, _, err = run(data_home, "models", "verify", "inswapper_128")
    assert code == 4
    assert str(data_home / "models" / "inswapper_128.onnx") in err
    install_standins(data_home / "models", faces_dir, swapper=False)
    code, data = run_json(data_home, "models", "verify", "buffalo_l", "dlib")
    assert code == 0  # buffalo_l's unused 3-D landmark and gender/age files may be absent
    assert by_name(data)["insightface_landmarks_3d68"]["state"] == "missing"
    assert by_name(data)["dlib_landmarks_68"]["state"] == "verified"
    code, _, err = run(data_home, "models", "verify", "buffalo_s")
    assert code == 2 and "unknown model" in err

    # An inswapper put into the pack folder would be opened by insightface: verify and list say so.
    standin.build_inswapper(data_home / "models" / "buffalo_l" / "inswapper_128.onnx")
    code, data = run_json(data_home, "models", "verify")
    assert code == 4 and data["ok"] is False
    assert "inswapper_128.onnx" in data["stray_files"][0]["reason"]
    code, out, _ = run(data_home, "models", "list")
    assert code == 0 and "warning: unexpected file(s) inswapper_128.onnx" in out


# ------------------------------------------------------------------------------------------------ fetch


@pytest.fixture()
def upstream(tmp_path: Path, faces_dir: Path):
    """A real HTTP server on 127.0.0.1 serving a stand-in buffalo_l.zip (insightface's zip layout)."""
    served = tmp_path / "served"
    pack = install_standins(tmp_path / "built", faces_dir, swapper=False)
    served.mkdir()
    with zipfile.ZipFile(served / "buffalo_l.zip", "w") as zipped:
        for path in sorted(pack.glob("*.onnx")):
            zipped.write(path, arcname=path.name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/buffalo_l.zip", pack
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_from_a_server_installs_checks_and_records(data_home: Path, upstream) -> None:
    url, pack = upstream
    code, data = run_json(data_home, "models", "fetch", "buffalo_l", "--url", url)
    assert code == 0
    rows = by_name(data)
    assert set(rows) == {"insightface_det_10g", "insightface_arcface_r50", "insightface_landmarks_106"}
    assert {row["state"] for row in rows.values()} == {"recorded now"}
    for name, row in rows.items():
        assert Path(row["file"]).read_bytes() == (pack / Path(row["file"]).name).read_bytes(), name
    code, data = run_json(data_home, "models", "verify", "buffalo_l")
    assert code == 0 and by_name(data)["insightface_det_10g"]["state"] == "recorded"


def test_fetch_says_what_to_do_where_it_cannot_download(data_home: Path) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused, as on a machine without network
    code, _, err = run(
        data_home, "models", "fetch", "buffalo_l", "--url", f"http://127.0.0.1:{port}/b.zip", "--timeout", "5"
    )
    assert code == 4
    assert "could not download buffalo_l" in err and "no network" in err
    code, data = run_json(
        data_home, "models", "fetch", "buffalo_l", "--url", f"http://127.0.0.1:{port}/b.zip", "--timeout", "5"
    )
    assert code == 4 and data["error"] == "model_missing"

    code, _, err = run(data_home, "models", "fetch", "inswapper_128")
    assert code == 4
    assert "withdrew the public download" in err and str(data_home / "models" / "inswapper_128.onnx") in err

    code, data = run_json(data_home, "models", "fetch", "dlib")
    assert code == 0 and {row["state"] for row in data["files"]} == {"verified"}
    code, _, err = run(data_home, "models", "fetch", "nothing_like_it")
    assert code == 2


# ---------------------------------------------------------------------------------------------- licence


def test_licence_is_recorded_with_its_evidence_and_shown_in_the_list(data_home: Path, tmp_path: Path) -> None:
    evidence = tmp_path / "agreement.pdf"
    evidence.write_bytes(b"%PDF-1.4 licence agreement, 300-W models, Studio X, signed")
    code, data = run_json(
        data_home,
        "models",
        "licence",
        "dlib_landmarks_68",
        "--holder",
        "Studio X Ltd",
        "--evidence",
        str(evidence),
        "--note",
        "commercial licence ref 2025-17",
        "--until",
        UNTIL,
    )
    assert code == 0
    [record] = data["licences"]
    assert record["model"] == "dlib_landmarks_68" and record["holder"] == "Studio X Ltd"
    assert record["valid_until"] == UNTIL
    kept = data_home / "models" / record["evidence_file"]
    assert kept.read_bytes() == evidence.read_bytes()

    code, listed = run_json(data_home, "models", "list")
    assert by_name(listed)["dlib_landmarks_68"]["commercial_licence"]["holder"] == "Studio X Ltd"
    code, out, _ = run(data_home, "models", "list")
    assert "licensed (Studio X Ltd)" in out

    args = ["--holder", "X", "--evidence", str(evidence), "--note", "n"]
    assert run(data_home, "models", "licence", "dlib_resnet_v1", *args)[0] == 2  # CC0: nothing to record
    assert run(data_home, "models", "licence", "no_such_model", *args)[0] == 2
    assert run(data_home, "models", "licence", "dlib_landmarks_68", *args, "--until", "2001-01-01")[0] == 2
    assert run(data_home, "models", "licence", "dlib_landmarks_68", *args, "--until", "soon")[0] == 2
    missing = ["--holder", "X", "--evidence", str(tmp_path / "none.pdf"), "--note", "n"]
    code, _, err = run(data_home, "models", "licence", "dlib_landmarks_68", *missing)
    assert code == 4 and "none.pdf" in err


# ------------------------------------------------------------------------------------ the swap command


def test_swap_with_insightface_and_no_models_names_the_files_and_touches_no_network(
    data_home: Path, faces_dir: Path, tmp_path: Path, no_network: list[object]
) -> None:
    out = tmp_path / "out.jpg"
    code, _, err = run(data_home, *swap_args(faces_dir, out))
    assert code == 4
    assert str(data_home / "models" / "buffalo_l" / "det_10g.onnx") in err
    assert "likeness models fetch buffalo_l" in err
    assert "Traceback" not in err
    assert no_network == []
    assert not out.exists()
    assert not (data_home / "models" / "buffalo_l").exists()  # no empty folder left by a download try


def test_help_imports_no_model_runtime() -> None:
    code = (
        "import sys; from click.testing import CliRunner; from likeness.cli import main; "
        "r = CliRunner().invoke(main, ['models', '--help']); assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in ('onnxruntime', 'onnx', 'insightface', 'dlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.fixture()
def insightface_studio(data_home: Path, faces_dir: Path) -> Path:
    """Obama and Biden enrolled with the insightface stand-ins, both consenting to 'education'."""
    install_standins(data_home / "models", faces_dir)
    from likeness.consent.registry import Registry
    from likeness.faces.backends import load_analyzer
    from likeness.home import Home

    home = Home(root=data_home).ensure()
    space = load_analyzer("insightface", home, providers="cpu").embedding_space
    with Registry.open(home) as registry:
        # The stand-in recogniser is no face recogniser: a tight operating point for its space
        # (each person is enrolled from the very photo the swap uses, at distance 0).
        registry.store_calibration(
            space, metric="cosine", threshold=0.02, margin=0.02, same_person_max=0.5, operator="test"
        )
    for name, photo in (("Barack Obama", "obama/1.jpg"), ("Joe Biden", "biden/1.jpg")):
        code, ident = run_json(
            data_home, "identity", "add", name, "--photo", str(faces_dir / photo), "--backend", "insightface"
        )
        assert code == 0, ident
        code, consent = run_json(
            data_home,
            "consent",
            "grant",
            ident["id"],
            "--purpose",
            "education",
            "--purpose",
            "film",
            "--role",
            "source",
            "--role",
            "target",
            "--until",
            UNTIL,
            "--uses",
            "Test of the insightface backend: one still for the test suite",
        )
        assert code == 0, consent
    return data_home


@pytest.mark.slow
def test_swap_with_insightface_standins_runs_the_whole_road(
    insightface_studio: Path, faces_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "swapped.png"
    code, data = run_json(insightface_studio, *swap_args(faces_dir, out))
    assert code == 0, data
    assert out.is_file() and data["faces_swapped"] == 1 and len(data["consents"]) == 2
    code, report = run_json(insightface_studio, "verify", str(out))
    assert code == 0 and report["watermark"]["output_id"] == data["output_id"]


@pytest.mark.slow
def test_a_commercial_swap_with_non_commercial_models_is_refused(
    insightface_studio: Path, faces_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "film.png"
    code, data = run_json(insightface_studio, *swap_args(faces_dir, out, purpose="film"))
    assert code == 2 and data["error"] == "licence"
    assert "inswapper_128" in data["reason"] and "likeness models licence" in data["hint"]
    assert not out.exists()


def test_models_prepare_converts_the_landmark_models_once(tmp_path: Path, monkeypatch) -> None:
    """``likeness models prepare`` converts both landmark models into the cache folder, then finds
    them there; where the folder cannot be written it says dlib reads the files; a changed ``.dat``
    exits 4 with the file named."""
    from changed_models import write_changed_dlib_model
    from likeness.home import Home

    home = Home(tmp_path / "home").ensure()
    monkeypatch.setenv("LIKENESS_CACHE", str(tmp_path / "cache"))
    code, data = run_json(home.root, "models", "prepare")
    assert code == 0
    assert [(row["name"], row["state"]) for row in data["models"]] == [
        ("dlib_landmarks_68", "converted"),
        ("dlib_landmarks_5", "converted"),
    ]
    assert all(Path(row["arrays"]).is_file() for row in data["models"])
    code, out, _ = run(home.root, "models", "prepare")
    assert code == 0 and out.count("already cached") == 2

    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    monkeypatch.setenv("LIKENESS_CACHE", str(blocker / "cache"))
    code, out, _ = run(home.root, "models", "prepare")
    assert code == 0 and out.count("dlib reads the file each time") == 2

    monkeypatch.setenv("LIKENESS_CACHE", str(tmp_path / "cache"))
    write_changed_dlib_model(home, "dlib_landmarks_5")
    code, _, err = run(home.root, "models", "prepare")
    assert code == 4 and "shape_predictor_5_face_landmarks.dat" in err and "Traceback" not in err
