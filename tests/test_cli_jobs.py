"""The job commands through the CLI: swap, verify, faces, demo — exit codes, JSON, no partial files.

Outputs made from the test photos stay in pytest's tmp folders (those people did not consent).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from likeness.cli import main

UNTIL = (dt.date.today() + dt.timedelta(days=60)).isoformat()


def run(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--home", str(home), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def run_json(home: Path, *args: str) -> tuple[int, dict]:
    code, out, err = run(home, *args, "--json")
    assert out.strip(), f"no JSON printed (exit {code}): {err}"
    return code, json.loads(out)


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> dict:
    """A home with Obama enrolled as a source and Biden as a target, both consenting to 'education'."""
    home = tmp_path_factory.mktemp("cli") / "home"
    ids = {}
    for name, photos, role in (
        ("Barack Obama", ["obama/1.jpg", "obama/2.jpg"], "source"),
        ("Joe Biden", ["biden/2.jpg"], "target"),
    ):
        args = ["identity", "add", name]
        for photo in photos:
            args += ["--photo", str(faces_dir / photo)]
        code, data = run_json(home, *args)
        assert code == 0, data
        code, consent = run_json(
            home,
            "consent",
            "grant",
            data["id"],
            "--purpose",
            "education",
            "--role",
            role,
            "--until",
            UNTIL,
            "--uses",
            "Test of the CLI: face replacement in a single still for the test suite",
        )
        assert code == 0, consent
        ids[name] = {"identity": data["id"], "consent": consent["id"]}
    return {"home": home, "ids": ids}


def test_swap_writes_disclosed_output_and_verify_reads_it(
    studio: dict, faces_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "swap.jpg"
    code, data = run_json(
        studio["home"],
        "swap",
        "--source",
        str(faces_dir / "obama/3.jpg"),
        "--target",
        str(faces_dir / "biden/1.jpg"),
        "--purpose",
        "education",
        "--out",
        str(out),
    )
    assert code == 0, data
    assert Path(data["output"]) == out.absolute() and out.is_file()
    assert sorted(data["consents"]) == sorted(v["consent"] for v in studio["ids"].values())
    assert data["output_id"].startswith("lk-")

    code, report = run_json(studio["home"], "verify", str(out))
    assert code == 0
    assert report["watermark"]["found"] is True
    assert report["watermark"]["output_id"] == data["output_id"]
    assert report["ledger"]["found"] is True
    assert sorted(report["ledger"]["consent_ids"]) == sorted(data["consents"])
    assert report["label"]["detected"] is True


def test_a_file_at_out_is_replaced_only_when_it_is_a_recorded_output_or_with_overwrite(
    studio: dict, faces_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "take.jpg"
    notes = b"the user's own file, not an output of this home"
    out.write_bytes(notes)
    swap = ["swap", "--source", str(faces_dir / "obama/3.jpg"), "--target", str(faces_dir / "biden/1.jpg")]
    swap += ["--purpose", "education", "--out", str(out)]

    code, _, err = run(studio["home"], *swap)
    assert code == 2, err
    assert f"{out}: a file is already there, and it is not an output recorded" in err and "--overwrite" in err
    assert out.read_bytes() == notes and sorted(p.name for p in tmp_path.iterdir()) == ["take.jpg"]

    code, first = run_json(studio["home"], *swap, "--overwrite")
    assert code == 0, first
    made = out.read_bytes()
    assert made != notes and made[:3] == b"\xff\xd8\xff"
    # The same job again: the file there is an output this home recorded, so it is made again.
    code, again = run_json(studio["home"], *swap)
    assert code == 0, again
    assert again["output_id"] != first["output_id"] and out.read_bytes() != made


def test_an_output_gets_the_mode_the_umask_gives_a_new_file(
    studio: dict, faces_dir: Path, tmp_path: Path
) -> None:
    """Work in progress is private (0600); the output the user asked for is a file like any other."""
    out = tmp_path / "shared.png"
    swap = ["swap", "--source", str(faces_dir / "obama/3.jpg"), "--target", str(faces_dir / "biden/1.jpg")]
    old = os.umask(0o027)
    try:
        code, data = run_json(studio["home"], *swap, "--purpose", "education", "--out", str(out))
    finally:
        os.umask(old)
    assert code == 0, data
    assert out.stat().st_mode & 0o777 == 0o640


def test_verify_on_a_clean_photo_finds_nothing(studio: dict, faces_dir: Path) -> None:
    code, report = run_json(studio["home"], "verify", str(faces_dir / "biden/2.jpg"))
    assert code == 0
    assert report["watermark"]["found"] is False
    assert report["watermark"]["output_id"] is None
    assert report["ledger"]["found"] is False


def test_unenrolled_source_is_refused_with_exit_3_and_no_file(
    studio: dict, faces_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "refused.jpg"
    code, data = run_json(
        studio["home"],
        "swap",
        "--source",
        str(faces_dir / "kit_harington/1.jpg"),
        "--target",
        str(faces_dir / "biden/1.jpg"),
        "--purpose",
        "education",
        "--out",
        str(out),
    )
    assert code == 3
    assert data["rule"] == "not_enrolled"
    assert "source photo" in data["reason"]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_wrong_purpose_and_wrong_role_are_refused(studio: dict, faces_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.jpg"
    code, data = run_json(
        studio["home"],
        "swap",
        "--source",
        str(faces_dir / "obama/3.jpg"),
        "--target",
        str(faces_dir / "biden/1.jpg"),
        "--purpose",
        "research",
        "--out",
        str(out),
    )
    assert (code, data["rule"]) == (3, "wrong_purpose")
    # Biden consented only as a target: using his likeness as the source is refused.
    code, data = run_json(
        studio["home"],
        "swap",
        "--source",
        str(faces_dir / "biden/1.jpg"),
        "--target",
        str(faces_dir / "obama/3.jpg"),
        "--purpose",
        "education",
        "--out",
        str(out),
    )
    assert (code, data["rule"]) == (3, "wrong_role")
    assert not out.exists()


@pytest.mark.slow
def test_revoked_consent_refuses_the_next_swap(tmp_path: Path, faces_dir: Path) -> None:
    home = tmp_path / "home"
    code, src = run_json(
        home, "identity", "add", "Rose Leslie", "--photo", str(faces_dir / "rose_leslie/1.jpg")
    )
    code, tgt = run_json(
        home, "identity", "add", "Kit Harington", "--photo", str(faces_dir / "kit_harington/1.jpg")
    )
    grants = []
    for ident, role in ((src, "source"), (tgt, "target")):
        code, consent = run_json(
            home,
            "consent",
            "grant",
            ident["id"],
            "--purpose",
            "research",
            "--role",
            role,
            "--until",
            UNTIL,
            "--uses",
            "Test of revocation: a still made for the automated test suite only",
        )
        assert code == 0, consent
        grants.append(consent["id"])
    swap_args = [
        "swap",
        "--source",
        str(faces_dir / "rose_leslie/2.jpg"),
        "--target",
        str(faces_dir / "kit_harington/2.jpg"),
        "--purpose",
        "research",
    ]
    code, first = run_json(home, *swap_args, "--out", str(tmp_path / "before.png"))
    assert code == 0, first
    code, _, err = run(home, "consent", "revoke", grants[0], "--reason", "withdrawn by the subject")
    assert code == 0, err
    code, data = run_json(home, *swap_args, "--out", str(tmp_path / "after.png"))
    assert (code, data["rule"]) == (3, "revoked")
    assert not (tmp_path / "after.png").exists()


@pytest.mark.parametrize(
    ("make_target", "expected_code", "expected_text"),
    [
        (lambda d, t: t / "empty.jpg", 4, "empty"),
        (lambda d, t: d / "_noface/landscape_view.jpg", 4, "no face"),
        (lambda d, t: t / "notes.jpg", 4, "not an image"),
    ],
)
def test_bad_targets_exit_4_with_reason(
    studio: dict, faces_dir: Path, tmp_path: Path, make_target, expected_code: int, expected_text: str
) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("meeting notes, definitely not a photo\n" * 10)
    out = tmp_path / "out" / "x.jpg"
    out.parent.mkdir()
    target = make_target(faces_dir, tmp_path)
    code, out_text, err = run(
        studio["home"],
        "swap",
        "--source",
        str(faces_dir / "obama/3.jpg"),
        "--target",
        str(target),
        "--purpose",
        "education",
        "--out",
        str(out),
    )
    assert code == expected_code
    assert expected_text in err
    assert "Traceback" not in err + out_text
    assert list(out.parent.iterdir()) == []


def test_usage_errors_exit_2(studio: dict, faces_dir: Path, tmp_path: Path) -> None:
    base = [
        "swap",
        "--source",
        str(faces_dir / "obama/3.jpg"),
        "--target",
        str(faces_dir / "_multi/obama_and_biden.jpg"),
        "--purpose",
        "education",
    ]
    code, _, err = run(studio["home"], *base, "--out", str(tmp_path / "x.jpg"), "--face-index", "9")
    assert code == 2 and "out of range" in err
    code, _, err = run(studio["home"], *base, "--out", str(tmp_path / "x.gif"))
    assert code == 2 and ".png" in err
    code, _, err = run(studio["home"], "swap", "--source", "a.jpg")
    assert code == 2
    assert list(tmp_path.iterdir()) == []


def test_faces_lists_left_to_right(studio: dict, faces_dir: Path) -> None:
    code, data = run_json(studio["home"], "faces", str(faces_dir / "_multi/obama_and_biden.jpg"))
    assert code == 0
    xs = [face["box"][0] for face in data["faces"]]
    assert len(xs) >= 2 and xs == sorted(xs)


def test_faces_says_who_each_face_is_and_whether_a_consent_covers_it(studio: dict, faces_dir: Path) -> None:
    picture = str(faces_dir / "_multi/obama_and_biden.jpg")
    code, data = run_json(studio["home"], "faces", picture, "--purpose", "education")
    assert code == 0 and data["purpose"] == "education" and data["role"] == "target"
    named = {face["name"]: face for face in data["faces"] if face["identified"] == "match"}
    assert set(named) == {"Barack Obama", "Joe Biden"}, data
    assert named["Joe Biden"]["covered"] is True
    obama = named["Barack Obama"]
    assert obama["covered"] is False
    assert obama["consents"] == [
        {
            "consent_id": studio["ids"]["Barack Obama"]["consent"],
            "covers": False,
            "why": "allows their face only as source, not as target",
        }
    ]
    code, out, _ = run(studio["home"], "faces", picture, "--purpose", "education")
    assert code == 0 and "NOT covered — the gate would refuse this face" in out and "COVERED" in out
    code, _, err = run(studio["home"], "faces", picture, "--purpose", "propaganda")
    assert code == 2 and "unknown purpose" in err


@pytest.mark.slow
def test_installed_script_and_demo(tmp_path: Path) -> None:
    """The real console script, as a new user runs it: demo exits 0 and its output verifies."""
    script = Path(sys.executable).with_name("likeness")
    env = {**os.environ, "LIKENESS_HOME": str(tmp_path / "unused-home")}
    result = subprocess.run(
        [str(script), "demo", "--workdir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "from likeness.cli import run" in script.read_text()
    assert "refused, as it should be" in result.stdout
    output = tmp_path / "demo" / "outputs" / "darwin_on_lincoln.jpg"
    assert output.is_file()
    assert not (tmp_path / "demo" / "outputs" / "refused.jpg").exists()
    verify = subprocess.run(
        [str(script), "verify", str(output), "--home", str(tmp_path / "demo" / "home"), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stderr
    report = json.loads(verify.stdout)
    assert report["watermark"]["found"] and report["ledger"]["found"]
    assert not (tmp_path / "unused-home").exists()

    # A still swap pays for no heavy module it does not use (the self-check's watermark read included).
    assets = Path(__file__).resolve().parents[1] / "src" / "likeness" / "demo_assets"
    probe = (  # through the console script's own entry (likeness.cli:run), which freezes the gc at exit
        "import sys\n"
        "from likeness.cli import run\n"
        "try:\n"
        "    run()\n"
        "except SystemExit as stop:\n"
        "    assert not stop.code, stop.code\n"
        "heavy = ('scipy', 'torch', 'diffusers', 'gradio', 'onnxruntime', 'ray', 'av', 'sklearn')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    inputs = ["--source", str(assets / "darwin_1.jpg"), "--target", str(assets / "lincoln_1.jpg")]
    job = [*inputs, "--purpose", "education", "--out", str(tmp_path / "probe.jpg")]
    swap = subprocess.run(
        [sys.executable, "-c", probe, "--home", str(tmp_path / "demo" / "home"), "swap", *job],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert swap.returncode == 0, swap.stderr
    assert swap.stdout.strip().splitlines()[-1] == "[]", swap.stdout


def test_commercial_purpose_needs_a_licence_for_non_commercial_models(
    studio: dict, faces_dir: Path, tmp_path: Path
) -> None:
    """dlib's 68-point model is non-commercial (iBUG 300-W): a film job needs a recorded licence."""
    out = tmp_path / "film.jpg"
    code, _, err = run(
        studio["home"],
        "swap",
        "--source",
        str(faces_dir / "obama/3.jpg"),
        "--target",
        str(faces_dir / "biden/1.jpg"),
        "--purpose",
        "film",
        "--out",
        str(out),
    )
    assert code == 2
    assert "shape_predictor_68_face_landmarks.dat" in err and "licence" in err
    assert not out.exists()
