"""``likeness batch``: the jobs file check, mixed outcomes, resume, a worker killed mid-job — on local
processes with SQLite and on a real local Ray cluster with a real PostgreSQL registry.

Real photos (Kit Harington as the source, Obama as the consenting target, Biden never enrolled), a
short generated clip for footage, the real dlib backend, real H.264. Every output stays in tmp.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import video_fixtures as vf
from likeness.cli import main
from likeness.consent.policy import add_years
from likeness.consent.registry import Registry
from likeness.disclosure.footage_sink import job_folder
from likeness.errors import UsageError
from likeness.home import Home
from likeness.jobs.batch import BatchEvents, BatchReport, JobResult, job_key, run_batch
from likeness.jobs.batch_file import read_jobs
from likeness.jobs.enrol import enrol_identity
from likeness.jobs.requests import EnrolRequest, VideoSwapRequest
from postgres import postgres_home, postgres_server  # noqa: F401

SRC = Path(__file__).resolve().parents[1] / "src"
PURPOSE = "research"
USES = "replace the stunt double's face with the lead actor's likeness in scene 4 of 'Harbour'"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, *jobs: dict) -> Path:
    return write(path, "".join(json.dumps(job) + "\n" for job in jobs))


def cli(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--home", str(home), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


# -- the jobs file ------------------------------------------------------------------------------------------


def test_a_toml_jobs_file_resolves_paths_against_its_folder_and_picks_the_road(tmp_path: Path) -> None:
    (tmp_path / "shots").mkdir()
    (tmp_path / "shots" / "a.jpg").write_bytes(b"x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    jobs_file = write(
        tmp_path / "shots" / "shots.toml",
        """# two shots
[[job]]
kind = "swap"
source = "a.jpg"
target = "take3.mov"
purpose = "film"
out = "take3_swapped.mp4"
detect-every = 3

[[job]]
kind = "generate"
model = "sd15"
prompt = "a harbour at dawn"
purpose = "creative"
out = "ABS/poster.png"
size = "640x384"
seed = 7
""".replace("ABS", str(elsewhere)),
    )
    footage, generate = read_jobs(jobs_file)
    assert (footage.number, footage.line, generate.number, generate.line) == (1, 2, 2, 10)
    assert footage.options["source"] == tmp_path / "shots" / "a.jpg"
    assert footage.out == tmp_path / "shots" / "take3_swapped.mp4"
    request = footage.request("tester")
    assert (
        isinstance(request, VideoSwapRequest) and request.detect_every == 3 and request.operator == "tester"
    )
    made = generate.request("tester")
    assert made.size == (640, 384) and made.seed == 7 and made.model == "sd15"
    assert made.out == elsewhere / "poster.png"


def test_a_job_key_follows_the_options_and_the_input_contents(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"one")
    job = {"kind": "swap", "source": "a.jpg", "target": "b.jpg", "purpose": "film", "out": "o.jpg"}
    first = job_key(read_jobs(jsonl(tmp_path / "j.jsonl", job))[0])
    assert job_key(read_jobs(jsonl(tmp_path / "k.jsonl", job))[0]) == first, "same job, same key"
    assert job_key(read_jobs(jsonl(tmp_path / "j.jsonl", {**job, "face_index": 1}))[0]) != first
    (tmp_path / "a.jpg").write_bytes(b"two")
    assert job_key(read_jobs(jsonl(tmp_path / "j.jsonl", job))[0]) != first, "new input contents"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"kind": "morph", "out": "x.jpg"}, r":2: job 2: unknown kind 'morph'"),
        ({"source": "a.jpg"}, r":2: job 2: has no 'kind'"),
        (
            {"kind": "swap", "source": "a.jpg", "target": "b.jpg", "purpose": "film"},
            r":2: .*missing key\(s\) out",
        ),
        (
            {
                "kind": "swap",
                "source": "a.jpg",
                "target": "b.jpg",
                "purpose": "film",
                "out": "y.jpg",
                "colour": 1,
            },
            r":2: .*unknown key\(s\) colour",
        ),
        (
            {
                "kind": "swap",
                "source": "a.jpg",
                "target": "b.jpg",
                "purpose": "film",
                "out": "y.jpg",
                "crf": 20,
            },
            r":2: .*unknown key\(s\) crf",
        ),
        (
            {"kind": "footage", "source": "a.jpg", "target": "b.jpg", "purpose": "film", "out": "y.mp4"},
            r":2: .*footage job's target must be a video",
        ),
        (
            {
                "kind": "swap",
                "source": "a.jpg",
                "target": "b.mp4",
                "purpose": "film",
                "out": "y.mp4",
                "face_index": 0,
            },
            r":2: .*face_index applies to images",
        ),
        (
            {
                "kind": "swap",
                "source": "a.jpg",
                "target": "b.jpg",
                "purpose": "film",
                "out": "y.jpg",
                "face_index": "0",
            },
            r":2: .*face_index must be int",
        ),
        (
            {
                "kind": "swap",
                "source": "a.jpg",
                "target": "b.mp4",
                "purpose": "film",
                "out": "y.mp4",
                "faces": "some",
            },
            r":2: .*faces 'some' is not one of consented, all",
        ),
        (
            {
                "kind": "generate",
                "model": "m",
                "prompt": "p",
                "purpose": "film",
                "out": "y.png",
                "size": "big",
            },
            r":2: .*size must be \"WIDTHxHEIGHT\"",
        ),
        (
            {"kind": "swap", "source": "a.jpg", "target": "b.jpg", "purpose": "film", "out": "x.jpg"},
            r":2: job 2 .*x.jpg, as job 1",
        ),
        (
            {"kind": "swap", "source": "x.jpg", "target": "b.jpg", "purpose": "film", "out": "z.jpg"},
            r":2: job 2 .*reads its source",
        ),
        (
            {"kind": "swap", "source": "a.jpg", "target": "b.jpg", "purpose": "film", "out": "no/z.jpg"},
            r":2: job 2 .*: .*no: the output folder does not exist",
        ),
        (
            {"kind": "swap", "source": "a.jpg", "target": "b.mp4", "purpose": "film", "out": "."},
            r":2: job 2 .*: .* is a folder; --out takes a file name",
        ),
    ],
)
def test_the_whole_file_is_checked_before_any_job_runs(tmp_path: Path, line: dict, message: str) -> None:
    first = {"kind": "swap", "source": "a.jpg", "target": "b.jpg", "purpose": "film", "out": "x.jpg"}
    jobs_file = jsonl(tmp_path / "jobs.jsonl", first, line)
    with pytest.raises(UsageError, match=message):
        read_jobs(jobs_file)
    code, _, err = cli(tmp_path / "home", "batch", str(jobs_file))
    assert code == 2 and "jobs.jsonl:2" in err
    assert not (tmp_path / "jobs.jsonl.results.jsonl").exists(), "nothing ran"


def test_a_missing_or_unknown_key_names_the_kind_in_the_hint(tmp_path: Path) -> None:
    first = {"kind": "swap", "source": "a.jpg", "target": "b.jpg", "purpose": "film", "out": "x.jpg"}
    (tmp_path / "a.jpg").write_bytes(b"x")
    for line, hint in [
        ({"kind": "edit", "model": "m", "prompt": "p", "purpose": "film", "out": "e.png"}, "an edit job"),
        ({**first, "out": "y.jpg", "targt": "b.jpg"}, "a swap job takes: "),
    ]:
        with pytest.raises(UsageError) as raised:
            read_jobs(jsonl(tmp_path / "jobs.jsonl", first, line))
        assert raised.value.hint is not None and raised.value.hint.startswith(hint), raised.value.hint


def test_not_a_jobs_file(tmp_path: Path) -> None:
    for name, text, message in [
        ("jobs.yaml", "kind: swap", "is .toml"),
        ("jobs.jsonl", "", "holds no jobs"),
        ("jobs.jsonl", "[1, 2]\n", ":1: each line must be one JSON object"),
        ("jobs.jsonl", '{"kind": "swap",\n', ":1: not a JSON object"),
        ("jobs.toml", "[[jobs]]\nkind = 'swap'\n", "unknown top-level key"),
    ]:
        with pytest.raises(UsageError, match=message):
            read_jobs(write(tmp_path / name, text))
    with pytest.raises(UsageError, match="does not exist"):
        read_jobs(tmp_path / "missing.toml")


def test_a_jobs_file_with_a_byte_order_mark_and_crlf_reads_and_one_not_in_utf8_says_so(
    tmp_path: Path,
) -> None:
    job = {"kind": "swap", "source": "a b.jpg", "target": "c.jpg", "purpose": "film", "out": "d.jpg"}
    (tmp_path / "a b.jpg").write_bytes(b"x")
    toml = "".join(f'{k} = "{v}"\r\n' for k, v in job.items())
    for name, body in [
        ("bom.jsonl", "\r\n" + json.dumps(job) + "\r\n"),
        ("bom.toml", "# Windows\r\n[[job]]\r\n" + toml),
    ]:
        (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
        (read,) = read_jobs(tmp_path / name)
        assert read.line == 2 and read.options["source"] == tmp_path / "a b.jpg", name
        assert read.out == tmp_path / "d.jpg"
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps({**job, "source": "caf\u00e9.jpg"}, ensure_ascii=False).encode("latin-1"))
    with pytest.raises(UsageError, match=r"not UTF-8 text \(byte \d+ is 0xe9\)") as raised:
        read_jobs(latin)
    assert raised.value.hint == "save it as UTF-8"


def test_one_place_to_run_and_one_batch_per_jobs_file_at_a_time(tmp_path: Path, home: Home) -> None:
    from likeness.jobs.batch import ResultsFile, results_path
    from likeness.jobs.batch_local import local_runner

    job = {"kind": "swap", "source": "a.jpg", "target": "b.jpg", "purpose": "film", "out": "x.jpg"}
    jobs_file = jsonl(tmp_path / "jobs.jsonl", job)
    code, _, err = cli(home.root, "batch", str(jobs_file), "--workers", "2", "--ray", "auto")
    assert code == 2 and "give one of them" in err
    code, _, err = cli(home.root, "batch", str(jobs_file), "--jobs-per-worker", "5", "--ray", "auto")
    assert code == 2 and "every job is one task" in err
    code, _, err = cli(home.root, "batch", str(jobs_file), "--jobs-per-worker", "0")
    assert code == 2 and "--jobs-per-worker" in err
    with pytest.raises(UsageError, match="at least 1"):
        local_runner(2, jobs_per_worker=0)
    with ResultsFile(results_path(jobs_file, home)):  # a batch of this file is running
        with pytest.raises(UsageError, match="another likeness batch is running these jobs"):
            run_batch(jobs_file, home=home, runner=local_runner(1), operator="t")


def test_the_batch_exit_code() -> None:
    def result(status: str, code: int) -> JobResult:
        return JobResult(1, 1, "swap", "o.jpg", "k", status, code)

    def code(*results: JobResult, interrupted: bool = False) -> int:
        return BatchReport(Path("j"), Path("r"), list(results), interrupted=interrupted).exit_code

    assert code(result("done", 0), result("skipped", 0)) == 0
    assert code(result("done", 0), result("failed", 3), result("failed", 3)) == 3
    assert code(result("failed", 4), result("done", 0)) == 4
    assert code(result("failed", 3), result("failed", 4)) == 1
    assert code(result("done", 0), interrupted=True) == 130


# -- running batches ----------------------------------------------------------------------------------------


def make_cast(home: Home, faces_dir: Path) -> dict[str, str]:
    """Kit Harington consents as a source, Obama as a target, for research, stills and video."""
    ids = {}
    for name, photos, role in (
        ("Kit Harington", ["kit_harington/1.jpg", "kit_harington/2.jpg"], "source"),
        ("Barack Obama", ["obama/2.jpg", "obama/3.jpg"], "target"),
    ):
        request = EnrolRequest(name, [faces_dir / p for p in photos], operator="tester", backend="dlib")
        person = enrol_identity(request, home=home).id
        with Registry.open(home) as registry:
            registry.grant(
                person,
                purposes=[PURPOSE],
                roles=[role],
                media=["image", "video"],
                valid_until=add_years(dt.date.today(), 1),
                uses=USES,
                operator="tester",
            )
        ids[name] = person
    return ids


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    """400×300, 50 frames at 25 fps: Obama from the first frame, Biden walks in at frame 20 (the
    clip tests/test_video_swap.py resumes)."""
    a, b = vf.scene_photos(faces_dir)
    scene = vf.Scene(a, b, size=(400, 300), face_px=100, b_enters=20, count=50)
    return vf.write_clip(tmp_path_factory.mktemp("clip") / "shot.mp4", scene.frames(), fps=25)


def mixed_jobs(folder: Path, faces_dir: Path) -> list[dict]:
    """A swap that is done, a consent refusal (Biden never consented), bad input, a missing file."""
    (folder / "notes.jpg").write_text("not a picture", encoding="utf-8")
    kit, obama, biden = (str(faces_dir / p) for p in ("kit_harington/3.jpg", "obama/1.jpg", "biden/1.jpg"))
    base = {"kind": "swap", "purpose": PURPOSE}
    return [
        {**base, "source": kit, "target": obama, "out": "done.jpg"},
        {**base, "source": biden, "target": obama, "out": "refused.jpg"},
        {**base, "source": kit, "target": "notes.jpg", "out": "bad.jpg"},
        {**base, "source": kit, "target": "gone.jpg", "out": "missing.jpg"},
    ]


def outputs(home: Home) -> list[str]:
    with Registry.open(home) as registry:
        return [o.output_id for o in registry.list_outputs()]


def ledger_length(home: Home) -> int:
    with Registry.open(home) as registry:
        report = registry.verify_ledger()  # one chain: every link, signature and recorded row checks
        assert report.ok, report.reason
        return report.entries


@pytest.mark.slow
def test_mixed_outcomes_on_two_workers_then_a_rerun_skips_what_is_done(
    home: Home, faces_dir: Path, tmp_path: Path
) -> None:
    make_cast(home, faces_dir)
    jobs_file = jsonl(tmp_path / "jobs.jsonl", *mixed_jobs(tmp_path, faces_dir))
    code, out, err = cli(home.root, "batch", str(jobs_file), "--workers", "2", "--json")
    report = json.loads(out)
    assert code == 1, err  # refused (3) and bad input (4) together
    by_out = {Path(job["out"]).name: job for job in report["jobs"]}
    done = by_out["done.jpg"]
    assert done["status"] == "done" and done["exit_code"] == 0 and (tmp_path / "done.jpg").is_file()
    assert done["outcome"]["faces_swapped"] == 1
    assert by_out["refused.jpg"]["exit_code"] == 3 and by_out["refused.jpg"]["error"] == "refused"
    assert "not a picture" not in by_out["bad.jpg"]["reason"] and by_out["bad.jpg"]["exit_code"] == 4
    assert "not an image" in by_out["bad.jpg"]["reason"]
    assert by_out["missing.jpg"]["exit_code"] == 4 and "file not found" in by_out["missing.jpg"]["reason"]
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == ["done.jpg", "notes.jpg"], "no partial files"
    assert not list(tmp_path.glob(".*")), "no job folders left"
    assert "ended" in err and "refused" in err, "the progress display"
    assert outputs(home) == [done["output_id"]]
    lines = (tmp_path / "jobs.jsonl.results.jsonl").read_text().splitlines()
    assert len(lines) == 4

    # A rerun of the finished job alone: skipped, nothing new in the ledger.
    jsonl(tmp_path / "jobs.jsonl", mixed_jobs(tmp_path, faces_dir)[0])
    entries = ledger_length(home)
    code, out, _ = cli(home.root, "batch", str(jobs_file), "--json")
    (again,) = json.loads(out)["jobs"]
    assert code == 0 and again["status"] == "skipped" and again["output_id"] == done["output_id"]
    # Finished, but its results line lost (killed between the rename and the line): the registry's
    # record of that file, made from these inputs, says so.
    (tmp_path / "jobs.jsonl.results.jsonl").unlink()
    code, out, _ = cli(home.root, "batch", str(jobs_file), "--json")
    (again,) = json.loads(out)["jobs"]
    assert code == 0 and again["status"] == "skipped" and "registry" in again["note"]
    assert ledger_length(home) == entries and outputs(home) == [done["output_id"]]

    # An output whose ledger entry was edited is not taken as finished (nor overwritten).
    with Registry.open(home) as registry:
        seq = registry.get_output(done["output_id"]).ledger_seq
    with sqlite3.connect(home.db_path) as db:
        db.execute("UPDATE ledger SET payload = replace(payload, 'research', 'film') WHERE seq = ?", (seq,))
    code, out, _ = cli(home.root, "batch", str(jobs_file), "--json")
    (again,) = json.loads(out)["jobs"]
    assert code == 2 and "no signed record" in again["reason"]
    assert outputs(home) == [done["output_id"]] and (tmp_path / "done.jpg").is_file()

    # Another file under the output name is never overwritten.
    (tmp_path / "done.jpg").write_bytes((faces_dir / "obama/1.jpg").read_bytes())
    code, out, _ = cli(home.root, "batch", str(jobs_file), "--json")
    (again,) = json.loads(out)["jobs"]
    assert code == 2 and "refusing to overwrite" in again["reason"]
    assert (tmp_path / "done.jpg").read_bytes() == (faces_dir / "obama/1.jpg").read_bytes()


@pytest.mark.slow
def test_an_edited_job_does_not_take_its_old_output_as_finished(
    home: Home, faces_dir: Path, tmp_path: Path
) -> None:
    """A job rerun with other options (here another disclosure profile) has another key; the output
    its earlier version made is not this job's result: not skipped, not overwritten."""
    make_cast(home, faces_dir)
    kit, obama = (str(faces_dir / p) for p in ("kit_harington/3.jpg", "obama/1.jpg"))
    job = {"kind": "swap", "purpose": PURPOSE, "source": kit, "target": obama, "out": "shot.jpg"}
    jobs_file = jsonl(tmp_path / "jobs.jsonl", job)
    code, out, err = cli(home.root, "batch", str(jobs_file), "--json")
    assert code == 0, err
    (first,) = json.loads(out)["jobs"]
    made = (tmp_path / "shot.jpg").read_bytes()

    jsonl(jobs_file, {**job, "disclosure_profile": "eu"})
    code, out, _ = cli(home.root, "batch", str(jobs_file), "--json")
    (again,) = json.loads(out)["jobs"]
    assert code == 2 and again["status"] == "failed", again
    assert first["output_id"] in again["reason"] and "earlier version of this job" in again["reason"]
    assert (tmp_path / "shot.jpg").read_bytes() == made and outputs(home) == [first["output_id"]]

    # The job as it was is still finished.
    jsonl(jobs_file, job)
    code, out, _ = cli(home.root, "batch", str(jobs_file), "--json")
    (same,) = json.loads(out)["jobs"]
    assert code == 0 and same["status"] == "skipped" and same["output_id"] == first["output_id"]


@pytest.mark.slow
def test_a_generate_job_from_a_toml_file_with_a_model_folder_beside_it(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("diffusers")
    from tiny_diffusers import build_sd_pipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the job's process inherits it: nothing is looked up
    build_sd_pipeline(tmp_path / "tiny-sd", licence="creativeml-openrail-m")
    jobs_file = write(
        tmp_path / "posters.toml",
        """[[job]]
kind = "generate"
model = "tiny-sd"
prompt = "a quiet harbour at dawn"
purpose = "research"
out = "harbour.png"
steps = 2
guidance = 2
seed = 0
size = "192x192"
""",
    )
    code, out, err = cli(home.root, "batch", str(jobs_file), "--json")
    assert code == 0, err
    (job,) = json.loads(out)["jobs"]
    assert job["status"] == "done" and job["outcome"]["kind"] == "generated"
    assert (tmp_path / "harbour.png").is_file() and outputs(home) == [job["output_id"]]


def holders(folder: Path, exclude: int) -> list[int]:
    """Processes with a file inside ``folder`` open (the one writing its segments)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        try:
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if any(link.startswith(str(folder) + "/") for link in links):
            found.append(int(entry.name))
    return found


def kill_when(job: Path, segment: str, *, exclude: int, deadline_s: float = 120) -> int:
    """Wait until footage's job folder holds finished ``segment``, then SIGKILL the process writing it."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if (job / segment).exists():
            pids = holders(job, exclude)
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                return pids[0]
        time.sleep(0.05)
    raise AssertionError(f"{job / segment} never appeared")


def footage_jobs(clip: Path, faces_dir: Path) -> list[dict]:
    kit, obama = (str(faces_dir / p) for p in ("kit_harington/3.jpg", "obama/1.jpg"))
    base = {"source": kit, "purpose": PURPOSE}
    return [
        {**base, "kind": "footage", "target": str(clip), "out": "shot.mp4", "segment_seconds": 0.4,
         "preset": "veryfast"},
        {**base, "kind": "swap", "target": obama, "out": "still.jpg"},
    ]  # fmt: skip


def check_footage_rerun(report: BatchReport | dict, home: Home, folder: Path) -> None:
    """After the rerun of a killed footage job: each output once, complete, and recorded once."""
    jobs = report["jobs"] if isinstance(report, dict) else [r.to_dict() for r in report.results]
    shot = next(job for job in jobs if job["out"].endswith("shot.mp4"))
    assert shot["status"] == "done", shot
    assert shot["outcome"]["video"]["reused_segments"] >= 1 and shot["outcome"]["video"]["frames"] == 50
    assert not job_folder(folder / "shot.mp4").exists()
    with Registry.open(home) as registry:
        recorded = registry.list_outputs()
    assert sorted(Path(o.path).name for o in recorded) == ["shot.mp4", "still.jpg"], "one record per output"


@pytest.mark.kill
def test_a_worker_killed_mid_footage_loses_nothing_and_the_rerun_finishes_it_once(
    home: Home, faces_dir: Path, clip: Path, tmp_path: Path
) -> None:
    make_cast(home, faces_dir)
    jobs_file = jsonl(tmp_path / "jobs.jsonl", *footage_jobs(clip, faces_dir))
    entry = "import sys; from likeness.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", entry, "--home", str(home.root), "batch", str(jobs_file)]
    command += ["--workers", "2", "--json"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    batch = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    killed = kill_when(job_folder(tmp_path / "shot.mp4"), "seg_00002.mkv", exclude=batch.pid)
    stdout, stderr = batch.communicate(timeout=180)
    assert batch.returncode == 1, stderr
    first = {Path(job["out"]).name: job for job in json.loads(stdout)["jobs"]}
    assert first["still.jpg"]["status"] == "done", "the other job carried on"
    assert first["shot.mp4"]["error"] == "worker_died" and "signal 9" in first["shot.mp4"]["reason"]
    assert killed != batch.pid and not (tmp_path / "shot.mp4").exists(), "nothing under the output name"
    assert (job_folder(tmp_path / "shot.mp4") / "seg_00002.mkv").exists(), "finished segments kept"

    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    second = json.loads(rerun.stdout)
    assert [job["status"] for job in second["jobs"]] == ["done", "skipped"]
    check_footage_rerun(second, home, tmp_path)

    entries = ledger_length(home)
    third = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    assert (
        third.returncode == 0 and [j["status"] for j in json.loads(third.stdout)["jobs"]] == ["skipped"] * 2
    )
    assert ledger_length(home) == entries, "a rerun of a finished batch writes nothing"


@pytest.mark.kill
@pytest.mark.parametrize("to", ["group", "batch"])
def test_ctrl_c_stops_the_batch_and_the_rerun_resumes_it(
    home: Home, faces_dir: Path, clip: Path, tmp_path: Path, to: str
) -> None:
    """Ctrl-C in a terminal (SIGINT to the whole process group) and ``kill -INT`` of the batch alone
    (a supervisor, ``timeout -s INT``) both stop the running job at its next frame: the batch relays
    it to its workers, once."""
    make_cast(home, faces_dir)
    jobs_file = jsonl(tmp_path / "jobs.jsonl", *footage_jobs(clip, faces_dir))
    entry = "import sys; from likeness.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", entry, "--home", str(home.root), "batch", str(jobs_file), "--json"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    batch = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    job = job_folder(tmp_path / "shot.mp4")
    deadline = time.monotonic() + 120
    while not (job / "seg_00001.mkv").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if to == "group":
        os.killpg(batch.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the batch and its jobs
    else:
        os.kill(batch.pid, signal.SIGINT)
    stdout, stderr = batch.communicate(timeout=120)
    assert batch.returncode == 130, stderr
    shot, still = json.loads(stdout)["jobs"]
    assert (shot["exit_code"], shot["error"], still["status"]) == (130, "cancelled", "not_run")
    assert not (tmp_path / "shot.mp4").exists() and (job / "seg_00001.mkv").exists()

    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    check_footage_rerun(json.loads(rerun.stdout), home, tmp_path)


# -- long-lived local workers --------------------------------------------------------------------------------


def still_jobs(folder: Path, faces_dir: Path, count: int) -> list[dict]:
    """``count`` consented still swaps (Kit onto Obama's photos, in turn), each with its own output."""
    kit = str(faces_dir / "kit_harington/3.jpg")
    targets = [faces_dir / "obama" / name for name in ("1.jpg", "2.jpg", "3.jpg")]
    return [
        {"kind": "swap", "source": kit, "target": str(targets[i % 3]), "purpose": PURPOSE, "out": f"s{i}.jpg"}
        for i in range(count)
    ]


@pytest.mark.slow
def test_one_worker_loads_its_models_once_for_several_jobs(
    home: Home, faces_dir: Path, tmp_path: Path
) -> None:
    from likeness.jobs.batch_local import local_runner

    make_cast(home, faces_dir)
    jobs = [*still_jobs(tmp_path, faces_dir, 2), mixed_jobs(tmp_path, faces_dir)[2]]  # 2 swaps, bad input
    jobs_file = jsonl(tmp_path / "jobs.jsonl", *jobs)
    report = run_batch(jobs_file, home=home, runner=local_runner(1), operator="tester")
    first, second, bad = report.results
    assert [r.status for r in (first, second)] == ["done", "done"] and bad.exit_code == 4
    assert first.worker == second.worker == bad.worker and first.worker != os.getpid(), "one worker"
    assert [r.engines for r in report.results] == ["loaded", "reused", "reused"]
    assert first.outcome is not None and second.outcome is not None
    assert first.outcome["faces_swapped"] == second.outcome["faces_swapped"] == 1
    recorded = {json.loads(line)["worker"] for line in report.results_file.read_text().splitlines()}
    assert recorded == {first.worker}, "the results file says which worker ran each job"


@pytest.mark.slow
def test_a_worker_is_replaced_after_jobs_per_worker_jobs(home: Home, faces_dir: Path, tmp_path: Path) -> None:
    from likeness.jobs.batch_local import local_runner

    make_cast(home, faces_dir)
    jobs = [*still_jobs(tmp_path, faces_dir, 2), *mixed_jobs(tmp_path, faces_dir)[2:]]  # + 2 bad inputs
    jobs_file = jsonl(tmp_path / "jobs.jsonl", *jobs)
    report = run_batch(jobs_file, home=home, runner=local_runner(1, jobs_per_worker=2), operator="t")
    assert [r.exit_code for r in report.results] == [0, 0, 4, 4]
    pids = [r.worker for r in report.results]
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[0] != pids[2], pids
    assert [r.engines for r in report.results] == ["loaded", "reused", "loaded", "reused"]
    # A resident-memory bound below what any worker holds replaces it after every job.
    notes: list[str] = []
    for result in ("s0.jpg", "s1.jpg"):
        (tmp_path / result).unlink()
    again = run_batch(
        jobs_file,
        home=home,
        runner=local_runner(1, max_rss_bytes=1),
        operator="t",
        events=BatchEvents(note=notes.append),
    )
    assert [r.exit_code for r in again.results] == [0, 0, 4, 4]
    assert len({r.worker for r in again.results}) == 4 and {r.engines for r in again.results} == {"loaded"}
    assert sum("replacing it" in note for note in notes) == 4, notes


@pytest.mark.kill
def test_a_killed_worker_loses_only_its_job_and_a_new_worker_runs_the_queue(
    home: Home, faces_dir: Path, clip: Path, tmp_path: Path
) -> None:
    from likeness.jobs.batch_local import local_runner

    make_cast(home, faces_dir)
    jobs = [*footage_jobs(clip, faces_dir), *still_jobs(tmp_path, faces_dir, 2)]
    jobs = [jobs[0], *jobs[2:]]  # the footage job first, then two stills queued behind it
    jobs_file = jsonl(tmp_path / "jobs.jsonl", *jobs)
    job = job_folder(tmp_path / "shot.mp4")
    killed: list[int] = []
    killer = threading.Thread(
        target=lambda: killed.append(kill_when(job, "seg_00002.mkv", exclude=os.getpid()))
    )
    killer.start()
    report = run_batch(jobs_file, home=home, runner=local_runner(1), operator="tester")
    killer.join()
    shot, *stills = report.results
    assert shot.error == "worker_died" and "signal 9" in (shot.reason or ""), shot
    assert [r.status for r in stills] == ["done", "done"], "the queue carried on"
    assert stills[0].worker == stills[1].worker and stills[0].worker not in killed, "a new worker"
    assert [r.engines for r in stills] == ["loaded", "reused"]
    assert not (tmp_path / "shot.mp4").exists() and (job / "seg_00002.mkv").exists()
    assert report.exit_code == 1


# -- Ray and PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    """A real local Ray cluster with 2 CPUs; its workers import this checkout's likeness."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'likeness[batch]'")
    path = os.pathsep.join(filter(None, [str(SRC), str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.kill
@pytest.mark.postgres
def test_ray_with_postgres_mixed_outcomes_a_killed_worker_and_a_resume(
    ray_cluster, request: pytest.FixtureRequest, faces_dir: Path, clip: Path, tmp_path: Path
) -> None:
    from likeness.jobs.batch_ray import ray_runner

    home: Home = request.getfixturevalue("postgres_home")
    make_cast(home, faces_dir)
    jobs = [*footage_jobs(clip, faces_dir), *mixed_jobs(tmp_path, faces_dir)[1:]]
    jobs_file = jsonl(tmp_path / "jobs.jsonl", *jobs)
    job = job_folder(tmp_path / "shot.mp4")
    killer = threading.Thread(target=lambda: kill_when(job, "seg_00002.mkv", exclude=os.getpid()))
    killer.start()
    first = run_batch(jobs_file, home=home, runner=ray_runner("auto"), operator="tester")
    killer.join()
    by_out = {Path(r.out).name: r for r in first.results}
    assert by_out["shot.mp4"].error == "worker_died", by_out["shot.mp4"]
    assert by_out["still.jpg"].status == "done"
    assert [by_out[n].exit_code for n in ("refused.jpg", "bad.jpg", "missing.jpg")] == [3, 4, 4]
    assert first.exit_code == 1 and not (tmp_path / "shot.mp4").exists()

    second = run_batch(jobs_file, home=home, runner=ray_runner("auto"), operator="tester")
    assert [r.status for r in second.results][:2] == ["done", "skipped"]
    check_footage_rerun(second, home, tmp_path)
    assert ledger_length(home) > 0  # one chain on PostgreSQL, every output and refusal in it


@pytest.mark.kill
def test_ctrl_c_on_ray_cancels_the_running_task_and_writes_down_every_result_back(
    ray_cluster, home: Home, faces_dir: Path, clip: Path, tmp_path: Path
) -> None:
    """Ctrl-C while the batch waits on Ray is counted, not raised, so no result that came back is
    lost between taking it and writing it down: the still that finished is done, the footage task
    is cancelled (exit 130), and the rerun resumes the footage and records each output once."""
    from likeness.jobs.batch_ray import ray_runner

    make_cast(home, faces_dir)
    jobs_file = jsonl(tmp_path / "jobs.jsonl", *footage_jobs(clip, faces_dir))
    job = job_folder(tmp_path / "shot.mp4")

    def interrupt_when_under_way() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (job / "seg_00001.mkv").exists() and (tmp_path / "still.jpg").exists():
                os.kill(os.getpid(), signal.SIGINT)  # the driver's Ctrl-C
                return
            time.sleep(0.05)

    # A SIGINT that missed the batch (it ended first) is swallowed here instead of stopping pytest;
    # the assertions below then fail.
    outside = signal.signal(signal.SIGINT, lambda signum, frame: None)
    interrupter = threading.Thread(target=interrupt_when_under_way)
    interrupter.start()
    try:
        first = run_batch(jobs_file, home=home, runner=ray_runner("auto"), operator="tester")
    finally:
        interrupter.join()
        signal.signal(signal.SIGINT, outside)
    by_out = {Path(r.out).name: r for r in first.results}
    assert (by_out["shot.mp4"].exit_code, by_out["shot.mp4"].error) == (130, "cancelled"), by_out
    assert by_out["still.jpg"].status == "done", by_out
    assert first.exit_code == 130 and not (tmp_path / "shot.mp4").exists()
    assert (job / "seg_00001.mkv").exists(), "the cancelled footage keeps its finished segments"

    second = run_batch(jobs_file, home=home, runner=ray_runner("auto"), operator="tester")
    assert [r.status for r in second.results] == ["done", "skipped"]
    check_footage_rerun(second, home, tmp_path)


def test_ray_resource_requests() -> None:
    from likeness.jobs.batch_file import BatchJob
    from likeness.jobs.batch_ray import resources

    swap = BatchJob(1, 1, "swap", {"backend": "dlib"})
    gen = BatchJob(2, 2, "generate", {"backend": "dlib"})
    face = BatchJob(3, 3, "swap", {"backend": "insightface"})
    assert resources(swap, cluster_gpus=2, gpus_per_job=1) == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert resources(gen, cluster_gpus=2, gpus_per_job=0.5)["num_gpus"] == 0.5
    assert resources(face, cluster_gpus=1, gpus_per_job=1)["num_gpus"] == 1.0
    assert resources(gen, cluster_gpus=0, gpus_per_job=1)["num_gpus"] == 0.0, "a CPU-only cluster"


def test_the_batch_command_imports_no_ray_and_no_torch() -> None:
    code = (
        "import sys; from likeness.cli import main; "
        "from likeness.jobs import batch, batch_local, batch_file; "
        "print(sorted(m for m in ('ray', 'torch', 'diffusers') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_the_cli_runs_a_batch_on_ray_with_sqlite_on_a_one_machine_cluster(
    ray_cluster, home: Home, faces_dir: Path, tmp_path: Path
) -> None:
    jobs = mixed_jobs(tmp_path, faces_dir)[2:]  # bad input, a missing file: no model work
    jobs_file = jsonl(tmp_path / "jobs.jsonl", *jobs)
    code, out, err = cli(home.root, "batch", str(jobs_file), "--ray", "auto", "--json")
    assert code == 4, err  # both bad input
    assert [job["exit_code"] for job in json.loads(out)["jobs"]] == [4, 4]
    assert "submitted to the Ray cluster (2 CPU(s))" in err


def test_a_results_file_that_cannot_be_opened_is_a_usage_error(tmp_path: Path, faces_dir: Path) -> None:
    jobs = jsonl(
        tmp_path / "jobs.jsonl",
        {
            "kind": "swap",
            "source": str(faces_dir / "obama/1.jpg"),
            "target": str(faces_dir / "biden/1.jpg"),
            "purpose": "education",
            "out": str(tmp_path / "out.jpg"),
        },
    )
    (tmp_path / "a-file").write_text("not a folder")
    where = tmp_path / "a-file" / "results.jsonl"
    code, _, err = cli(tmp_path / "home", "batch", str(jobs), "--results", str(where))
    assert code == 2, err
    assert f"{where}: cannot open the results file" in err and "Traceback" not in err
    assert not (tmp_path / "out.jpg").exists()


# -- every value checked up front; the results file ------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"kind": "footage", "crf": 99}, "crf 99 is outside 0–51"),
        ({"kind": "footage", "crf": -5}, "crf -5 is outside 0–51"),
        ({"kind": "footage", "detect_every": 0}, "detect_every 0 is outside 1–1000"),
        ({"kind": "swap", "detect_every": 100000}, "detect_every 100000 is outside 1–1000"),
        ({"kind": "footage", "segment_seconds": 0}, "segment_seconds 0 is outside 0.1–600"),
        ({"kind": "footage", "segment_seconds": -1}, "segment_seconds -1 is outside 0.1–600"),
        ({"kind": "footage", "preset": "warp"}, "unknown x264 preset 'warp'"),
        ({"kind": "footage", "codec": "vp9"}, "unknown video codec 'vp9'"),
        ({"kind": "footage", "codec": "prores"}, "prores cannot be written in mp4"),
        ({"kind": "footage", "codec": "ffv1", "crf": 10}, "crf sets H.264's quality; ffv1 takes none"),
        ({"kind": "generate", "steps": 0}, "--steps must be at least 1, not 0"),
        ({"kind": "generate", "size": "60x60"}, "--size 60x60: each side must be a multiple of 8"),
        ({"kind": "edit", "strength": 2}, "strength must be in (0, 1], not 2.0"),
    ],
)
def test_every_value_is_checked_before_any_job_runs(tmp_path: Path, line: dict, message: str) -> None:
    first = {"kind": "swap", "source": "a.jpg", "target": "b.jpg", "purpose": "film", "out": "x.jpg"}
    base = {
        "swap": {"source": "a.jpg", "target": "b.mp4", "purpose": "film", "out": "y.mp4"},
        "footage": {"source": "a.jpg", "target": "b.mp4", "purpose": "film", "out": "y.mp4"},
        "generate": {"model": "m", "prompt": "p", "purpose": "film", "out": "y.png"},
        "edit": {"model": "m", "target": "b.jpg", "prompt": "p", "purpose": "film", "out": "y.png"},
    }[line["kind"]]
    jobs_file = jsonl(tmp_path / "jobs.jsonl", first, {**base, **line})
    with pytest.raises(UsageError) as raised:
        read_jobs(jobs_file)
    assert f"jobs.jsonl:2: job 2: {message}" in raised.value.reason
    code, _, err = cli(tmp_path / "home", "batch", str(jobs_file))
    assert code == 2 and f"jobs.jsonl:2: job 2: {message}" in err, err
    assert not (tmp_path / "jobs.jsonl.results.jsonl").exists(), "job 1 did not run"


def test_the_batch_takes_the_bounds_the_swap_command_takes(tmp_path: Path) -> None:
    from likeness.jobs.footage_limits import DETECT_EVERY, SEGMENT_SECONDS

    job = {"kind": "footage", "source": "a.jpg", "target": "b.mp4", "purpose": "film", "out": "y.mp4"}
    edges = {"detect_every": DETECT_EVERY[1], "segment_seconds": SEGMENT_SECONDS[0], "crf": 51}
    (read,) = read_jobs(jsonl(tmp_path / "jobs.jsonl", {**job, **edges}))
    assert read.options["detect_every"] == 1000 and read.options["crf"] == 51
    with pytest.raises(UsageError, match="detect_every 1001 is outside"):
        read_jobs(jsonl(tmp_path / "jobs.jsonl", {**job, "detect_every": 1001}))
    swap = ["swap", "--source", "a.jpg", "--target", "b.mp4", "--purpose", "film", "--out", "y.mp4"]
    code, _, err = cli(tmp_path / "home", *swap, "--detect-every", "1001")
    assert code == 2 and "1<=x<=1000" in err, err


def one_failing_job(folder: Path, faces_dir: Path) -> Path:
    """A jobs file of one quick job: its target is missing, so it ends with bad input (exit 4)."""
    job = {
        "kind": "swap",
        "source": str(faces_dir / "obama/1.jpg"),
        "target": "gone.jpg",
        "purpose": "education",
        "out": "out.jpg",
    }
    return jsonl(folder / "jobs.jsonl", job)


def test_an_unreadable_line_in_the_results_file_is_skipped_and_said(tmp_path: Path, faces_dir: Path) -> None:
    from likeness.jobs.batch import ResultsFile

    jobs = one_failing_job(tmp_path, faces_dir)
    results = tmp_path / "jobs.jsonl.results.jsonl"
    done = {"key": "k1", "status": "done", "output_id": "lk-1"}
    # a stray byte (a torn write), a record in another encoding, a good record, a torn tail
    results.write_bytes(
        b"\xff torn\n"
        + json.dumps({"key": "k0", "status": "done", "note": "caf\u00e9"}, ensure_ascii=False).encode(
            "latin-1"
        )
        + b"\n"
        + json.dumps(done).encode()
        + b'\n{"key": "k2", "sta'
    )
    with ResultsFile(results) as opened:
        assert opened.latest() == {"k1": done}, "the good record is still read"
        assert opened.skipped_lines == [1, 2, 4]
    code, out, err = cli(tmp_path / "home", "batch", str(jobs), "--json")
    assert code == 4, err  # the job's own exit code: the batch ran
    assert "UnicodeDecodeError" not in err and "internal error" not in err
    assert "skipped 3 unreadable line(s)" in err and "line(s) 1, 2, 4" in err, err
    report = json.loads(out)
    assert report["results_lines_skipped"] == [1, 2, 4]
    (job,) = report["jobs"]
    assert job["status"] == "failed" and "gone.jpg" in job["reason"]
    last = results.read_bytes().split(b"\n")[-2]
    assert json.loads(last)["key"] == job["key"], "the new record is on a line of its own"


def test_a_results_file_that_is_the_jobs_file_or_a_jobs_file_is_refused(
    tmp_path: Path, faces_dir: Path
) -> None:
    jobs = one_failing_job(tmp_path, faces_dir)
    text = jobs.read_bytes()
    source = tmp_path / "source.jpg"
    source.write_bytes((faces_dir / "obama/1.jpg").read_bytes())
    jsonl(jobs, {**json.loads(text), "source": "source.jpg"})
    text = jobs.read_bytes()
    (tmp_path / "jobs-link.jsonl").symlink_to(jobs)
    os.link(source, tmp_path / "source-link.jpg")
    home = tmp_path / "home"
    for given, message in [
        (jobs, "the results file is the jobs file itself"),
        (tmp_path / "jobs-link.jsonl", "the results file is the jobs file itself"),
        (tmp_path / "source-link.jpg", "the results file is the source of job 1 (line 1)"),
        (tmp_path / "gone.jpg", "the results file is the target of job 1 (line 1)"),
        (tmp_path / "out.jpg", "the results file is the out of job 1 (line 1)"),
        (home / "registry.sqlite", "the results file is the registry database"),
        (home / "keys" / "r.jsonl", "the results file is inside the folder of the signing keys"),
    ]:
        code, _, err = cli(home, "batch", str(jobs), "--results", str(given))
        assert code == 2 and message in err and "--results a file of its own" in err, (given, err)
        assert jobs.read_bytes() == text and source.read_bytes() == (faces_dir / "obama/1.jpg").read_bytes()
        assert not (tmp_path / "out.jpg").exists() and not (tmp_path / "gone.jpg").exists()
    assert not (home / "keys" / "r.jsonl").exists()
