"""One road for every job: stills take the same steps as footage — options checked before any work,
one cancellation error (exit 130), one sealing path whose leftovers are private and swept, and no
import cycle inside src/likeness."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from likeness.consent.registry import Registry
from likeness.disclosure.still_sink import PARTIAL_SUFFIX, partial_folder, sweep_stale
from likeness.errors import Cancelled, UsageError
from likeness.home import Home
from likeness.jobs import road
from likeness.jobs.enrol import enrol_identity
from likeness.jobs.requests import EnrolRequest, SwapRequest
from likeness.jobs.road import run_job

REPO = Path(__file__).resolve().parents[1]
SOURCE, TARGET = "obama/3.jpg", "biden/1.jpg"


@pytest.fixture(scope="module")
def cast(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Home:
    home = Home(tmp_path_factory.mktemp("road") / "home").ensure()
    for name, photos, role in (
        ("Barack Obama", ["obama/1.jpg"], "source"),
        ("Joe Biden", ["biden/2.jpg"], "target"),
    ):
        identity = enrol_identity(
            EnrolRequest(name=name, photos=[faces_dir / p for p in photos], operator="t", backend="dlib"),
            home=home,
        )
        with Registry.open(home) as registry:
            registry.grant(
                identity.id,
                purposes=["research"],
                roles=[role],
                valid_until=dt.date.today() + dt.timedelta(days=30),
                uses="Test of the one job road: a single consented still face replacement",
                operator="t",
            )
    return home


def swap(faces_dir: Path, out: Path, **changes) -> SwapRequest:
    return SwapRequest(
        source=faces_dir / SOURCE,
        target=faces_dir / TARGET,
        purpose="research",
        out=out,
        operator="t",
        **changes,
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"label_corner": "middle"}, "label corner"),
        ({"label_language": "xx"}, "label language"),
        ({"max_pixels": 0}, "max-pixels"),
    ],
)
def test_every_still_option_is_checked_before_any_work(
    cast: Home, faces_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changes: dict, message: str
) -> None:
    def no_work(*args, **kwargs):
        raise AssertionError("models were loaded before the options were checked")

    monkeypatch.setattr(road, "engines_for", no_work)
    with pytest.raises(UsageError, match=message):
        run_job(swap(faces_dir, tmp_path / "out.jpg", **changes), home=cast)
    assert list(tmp_path.iterdir()) == []


def test_a_cancelled_still_raises_cancelled_with_exit_130_and_writes_nothing(
    cast: Home, faces_dir: Path, tmp_path: Path
) -> None:
    cancel = threading.Event()

    def cancel_at_the_gate(stage: str, fraction: float) -> None:
        if stage == "consent":
            cancel.set()

    with Registry.open(cast) as registry:
        before = len(registry.list_outputs())
    with pytest.raises(Cancelled) as stopped:
        run_job(swap(faces_dir, tmp_path / "out.jpg"), home=cast, progress=cancel_at_the_gate, cancel=cancel)
    assert stopped.value.exit_code == 130
    assert list(tmp_path.iterdir()) == []
    with Registry.open(cast) as registry:
        assert len(registry.list_outputs()) == before


def test_a_still_is_written_through_a_private_job_folder_and_leaves_nothing_behind(
    cast: Home, faces_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jpg"
    seen: list[tuple[str, int]] = []

    def look(stage: str, fraction: float) -> None:
        folder = partial_folder(out)
        if folder.is_dir():
            seen.extend(
                (p.name, stat.S_IMODE(p.stat().st_mode)) for p in folder.iterdir() if p.name != ".lock"
            )

    outcome = run_job(swap(faces_dir, out), home=cast, progress=look)
    assert seen and all(mode == 0o600 and "." not in name for name, mode in seen), seen
    assert outcome.output == out.absolute() and [p.name for p in tmp_path.iterdir()] == ["out.jpg"]


KILLER = """
import os, signal, sys
from pathlib import Path
from likeness.disclosure import still_sink
from likeness.home import Home
from likeness.jobs.requests import SwapRequest
from likeness.jobs.road import run_job

finish = still_sink.StillSink.finish

def finish_then_die(self, progress):
    path = finish(self, progress)
    print(path, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the temp file exists, nothing is signed or recorded

still_sink.StillSink.finish = finish_then_die
faces, out, home = Path(sys.argv[1]), Path(sys.argv[2]), Home(root=Path(sys.argv[3]))
run_job(SwapRequest(source=faces / "obama/3.jpg", target=faces / "biden/1.jpg", purpose="research", out=out,
                    operator="t"), home=home)
"""


@pytest.mark.kill
def test_a_kill_9_leaves_only_a_private_file_that_the_next_run_sweeps(
    cast: Home, faces_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jpg"
    script = tmp_path.parent / f"{tmp_path.name}-killer.py"
    script.write_text(KILLER)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    run = subprocess.run(
        [sys.executable, str(script), str(faces_dir), str(out), str(cast.root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == -9, run.stderr
    left = Path(run.stdout.strip())
    assert left.is_file() and left.parent == partial_folder(out) and left.parent.name.endswith(PARTIAL_SUFFIX)
    assert stat.S_IMODE(left.stat().st_mode) == 0o600 and left.suffix == ""
    assert not out.exists()

    assert sweep_stale(tmp_path) == [partial_folder(out)]  # what any later still job into the folder does
    assert [p.name for p in tmp_path.iterdir()] == []
    run_job(swap(faces_dir, tmp_path / "other.jpg"), home=cast)
    assert [p.name for p in tmp_path.iterdir()] == ["other.jpg"]


def test_a_running_jobs_folder_is_not_swept(tmp_path: Path) -> None:
    from likeness.fsutil import try_lock

    folder = tmp_path / f".busy.jpg{PARTIAL_SUFFIX}"
    folder.mkdir()
    lock = try_lock(folder / ".lock")
    try:
        assert sweep_stale(tmp_path) == [] and folder.is_dir()
    finally:
        assert lock is not None
        lock.close()
    assert sweep_stale(tmp_path) == [folder] and not folder.exists()


def test_no_import_cycle_inside_likeness() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "import_cycles.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout
    assert run.stdout.strip().endswith("0 cycle(s)")


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("/sys/likeness-out.jpg", "not writable"),
        ("{tmp}", "is a folder; --out takes a file name"),
        ("{tmp}/missing/out.jpg", "does not exist"),
    ],
)
def test_an_unusable_output_path_is_refused_before_any_work(
    cast: Home, faces_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str, message: str
) -> None:
    def no_work(*args, **kwargs):
        raise AssertionError("models were loaded before the output path was checked")

    monkeypatch.setattr(road, "engines_for", no_work)
    with pytest.raises(UsageError, match=message):
        run_job(swap(faces_dir, Path(out.format(tmp=tmp_path))), home=cast)


def test_an_unknown_purpose_is_a_usage_error_naming_the_known_ones(
    cast: Home, faces_dir: Path, tmp_path: Path
) -> None:
    request = SwapRequest(
        source=faces_dir / SOURCE, target=faces_dir / TARGET, purpose="propaganda", out=tmp_path / "o.jpg"
    )
    with pytest.raises(UsageError) as refused:
        run_job(request, home=cast)
    assert type(refused.value) is UsageError and refused.value.exit_code == 2
    assert "unknown purpose 'propaganda'" in refused.value.reason and "education" in refused.value.reason


def test_cli_says_clearly_when_the_home_or_an_option_is_unusable(faces_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from likeness.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["--home", "/sys/likeness-home", "consent", "list"])
    assert result.exit_code == 2 and "the data home cannot be created" in result.stderr, result.output
    assert "Traceback" not in result.output
    args = ["--source", str(faces_dir / SOURCE), "--target", str(faces_dir / TARGET), "--purpose", "research"]
    result = runner.invoke(
        main,
        [
            "--home",
            str(tmp_path / "home"),
            "swap",
            *args,
            "--out",
            str(tmp_path / "o.jpg"),
            "--max-pixels",
            "0",
        ],
    )
    assert result.exit_code == 2 and "--max-pixels must be a positive" in result.stderr, result.output


def test_a_changed_model_file_stops_the_job_while_its_inputs_are_read_in_a_thread(
    faces_dir: Path, tmp_path: Path
) -> None:
    """The inputs are decoded and their faces detected in a worker thread while the models load
    (:mod:`likeness.jobs.inputs`): a model file that fails its check still stops the job, writes
    nothing, and leaves no thread running."""
    from likeness.errors import ModelMissing
    from likeness.models import face_recognition_models_dir, model

    home = Home(tmp_path / "home").ensure()
    entry = model("dlib_landmarks_68")
    package = face_recognition_models_dir()
    assert package is not None
    (home.models_dir / "dlib").mkdir(parents=True)
    data = bytearray((package / entry.filename).read_bytes())
    data[len(data) // 2] ^= 0x01
    (home.models_dir / "dlib" / entry.filename).write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    threads = threading.active_count()
    with pytest.raises(ModelMissing, match=entry.filename):
        run_job(swap(faces_dir, out / "out.jpg"), home=home)
    assert list(out.iterdir()) == []
    assert threading.active_count() == threads


def test_input_errors_are_raised_at_their_step_when_inputs_are_read_in_a_thread(
    cast: Home, faces_dir: Path, tmp_path: Path
) -> None:
    """A source that is no image is named as such; a target too small to hold a face, whose detection
    fails in the worker thread, is refused by the job's own analysis with the analyzer's message; an
    unreadable target is named before a source without a face (the order without threads)."""
    import numpy as np
    from PIL import Image

    from likeness.errors import BadInput

    text = tmp_path / "notes.jpg"
    text.write_text("not a picture\n")
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.full((12, 12, 3), 128, np.uint8)).save(tiny)
    out = tmp_path / "out"
    out.mkdir()
    threads = threading.active_count()
    no_face = next(path for path in sorted((faces_dir / "_noface").iterdir()) if path.suffix == ".jpg")
    for source, target, message in (
        (text, faces_dir / TARGET, r"notes\.jpg: not an image"),
        (faces_dir / SOURCE, tiny, "too small to hold a face"),
        (no_face, text, r"notes\.jpg: not an image"),  # both inputs are read before any face is sought
    ):
        request = SwapRequest(
            source=source, target=target, purpose="research", out=out / "out.jpg", operator="t"
        )
        with pytest.raises(BadInput, match=message):
            run_job(request, home=cast)
    assert list(out.iterdir()) == []
    assert threading.active_count() == threads


def test_the_command_reads_its_inputs_before_it_imports_the_job_and_the_job_takes_them_over(
    cast: Home, faces_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``likeness swap`` (dlib) starts decoding, detecting and loading the models before it imports
    the job (:func:`likeness.jobs.inputs.start_early`); the job reads through that reader (it starts
    none of its own) and decides exactly as a job that read its inputs itself; no thread is left."""
    from likeness.cli.job_cmds import _run_job
    from likeness.jobs.inputs import InputReader
    from likeness.progress import no_progress

    made: list[InputReader] = []

    class Counted(InputReader):
        def __init__(self, *args, **kwargs) -> None:
            made.append(self)
            super().__init__(*args, **kwargs)

    threads = threading.active_count()
    itself = run_job(swap(faces_dir, tmp_path / "itself.jpg"), home=cast)
    monkeypatch.setattr(road, "InputReader", Counted)
    early = _run_job(swap(faces_dir, tmp_path / "early.jpg"), cast, no_progress)
    assert made == []  # the job took the command's reader over
    assert (tmp_path / "early.jpg").is_file() and early.faces_swapped == itself.faces_swapped == 1
    assert [m.to_dict() for m in early.decision.matches] == [m.to_dict() for m in itself.decision.matches]
    assert threading.active_count() == threads

    # A reader started for another request is not taken over: the job reads its own inputs.
    from likeness.jobs.engines import load_engines
    from likeness.jobs.inputs import start_early

    engines = load_engines("dlib", cast, defer_models=True)
    other = start_early(swap(faces_dir, tmp_path / "other.jpg"), engines.analyzer)
    try:
        run_job(swap(faces_dir, tmp_path / "own.jpg"), home=cast, engines=engines, reader=other)
    finally:
        other.close()
    assert len(made) == 1 and (tmp_path / "own.jpg").is_file() and not (tmp_path / "other.jpg").exists()
    assert threading.active_count() == threads


def test_a_command_that_read_early_still_refuses_in_the_order_of_the_steps(
    cast: Home, faces_dir: Path, tmp_path: Path
) -> None:
    """Reading early changes no outcome: a refused option is refused (inputs unread or not), a source
    that is no image is named, a changed model file stops the job; nothing is written and no thread
    is left behind. Generation and other backends start nothing early."""
    from changed_models import write_changed_dlib_model
    from likeness.cli.job_cmds import _run_job, _start_early
    from likeness.errors import BadInput, ModelMissing
    from likeness.jobs.requests import GenerateRequest
    from likeness.models import model
    from likeness.progress import no_progress

    out = tmp_path / "out"
    out.mkdir()
    threads = threading.active_count()
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture\n")
    with pytest.raises(UsageError, match="label corner"):
        _run_job(swap(faces_dir, out / "a.jpg", label_corner="middle"), cast, no_progress)
    bad_source = SwapRequest(text, faces_dir / TARGET, "research", out / "b.jpg", operator="t")
    with pytest.raises(BadInput, match=r"notes\.jpg: not an image"):
        _run_job(bad_source, cast, no_progress)

    changed = Home(tmp_path / "changed").ensure()
    entry = model("dlib_landmarks_68")
    write_changed_dlib_model(changed, entry.name, at=0.5)
    with pytest.raises(ModelMissing, match=entry.filename):
        _run_job(swap(faces_dir, out / "c.jpg"), changed, no_progress)
    assert list(out.iterdir()) == []
    assert threading.active_count() == threads

    for request in (
        swap(faces_dir, out / "d.jpg", backend="insightface"),
        GenerateRequest(model="m", prompt="p", purpose="research", out=out / "e.png"),
    ):
        assert _start_early(request, cast, None) == (None, None)


def test_an_early_reader_closed_at_once_skips_the_work_nobody_will_use(
    cast: Home, faces_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader the job never takes over (an option refused, a Ctrl-C) is closed: it waits only for
    the step each thread is in (decoding), not for the detection and model loading after it."""
    from likeness.jobs import inputs
    from likeness.jobs.engines import load_engines
    from likeness.jobs.inputs import start_early

    started: list[inputs.InputReader] = []
    real_load = inputs.load_image

    def load_once_closing(*args: object, **options: object) -> object:
        # Each decode ends after close() began, as when close() comes while decoding: on a loaded
        # machine the threads could otherwise finish decoding before the test calls close().
        while not (started and started[0]._closing.is_set()):  # type: ignore[attr-defined]
            time.sleep(0.001)
        return real_load(*args, **options)

    monkeypatch.setattr(inputs, "load_image", load_once_closing)
    threads = threading.active_count()
    analyzer = load_engines("dlib", cast, defer_models=True).analyzer
    reader = start_early(swap(faces_dir, faces_dir / "unused.jpg"), analyzer)
    started.append(reader)
    reader.close()
    assert analyzer._loaded is None  # type: ignore[attr-defined] # the models were never loaded
    assert reader.source()[1] is None and reader.target()[1] is None  # decoded, not detected
    assert threading.active_count() == threads


def test_an_early_reader_finishes_the_stills_analyses_and_the_job_does_not_redo_them(
    cast: Home, faces_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started early (its models loaded in its own thread), the reader also finishes both stills'
    analyses (landmarks, embeddings) in its threads, beside the command's imports; the job takes
    them as they are and finishes nothing again. They are what finishing the detection gives."""
    from likeness.jobs.engines import load_engines
    from likeness.jobs.inputs import Finished, start_early

    engines = load_engines("dlib", cast, defer_models=True)
    analyzer = engines.analyzer
    real_finish = analyzer.finish
    finishing: list[str] = []

    def finish(found: object, **options: object) -> object:
        finishing.append(threading.current_thread().name)
        return real_finish(found, **options)

    monkeypatch.setattr(analyzer, "finish", finish)
    threads = threading.active_count()
    request = swap(faces_dir, tmp_path / "out.jpg")
    reader = start_early(request, analyzer)
    try:
        found = [reader.source()[1], reader.target()[1]]
        assert all(isinstance(item, Finished) for item in found)
        for item in found:
            again = real_finish(item.found).faces
            assert [face.box for face in item.analysis.faces] == [face.box for face in again]
            for mine, theirs in zip(item.analysis.faces, again, strict=True):
                assert np.array_equal(mine.embedding, theirs.embedding)
                assert np.array_equal(mine.landmarks, theirs.landmarks)
        assert len(finishing) == 2 and all(name.startswith("read-inputs") for name in finishing)
        outcome = run_job(request, home=cast, engines=engines, reader=reader)
    finally:
        reader.close()
    assert outcome.faces_swapped == 1 and (tmp_path / "out.jpg").is_file()
    assert len(finishing) == 2, "the job finished no analysis again"
    assert threading.active_count() == threads


def test_an_early_reader_whose_models_fail_to_load_finishes_nothing(
    cast: Home, faces_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changed model file: the reader's loading fails (the job's own loading raises it, at its
    step); the reader threads do not try again through ``finish`` (each try hashes the 95 MB file)."""
    from changed_models import write_changed_dlib_model
    from likeness.jobs.engines import load_engines
    from likeness.jobs.inputs import Finished, start_early
    from likeness.models import model

    changed = Home(tmp_path / "changed").ensure()
    write_changed_dlib_model(changed, model("dlib_landmarks_68").name, at=0.5)
    analyzer = load_engines("dlib", changed, defer_models=True).analyzer
    finishing: list[str] = []
    real_finish = analyzer.finish

    def finish(found: object, **options: object) -> object:
        finishing.append(threading.current_thread().name)
        return real_finish(found, **options)

    monkeypatch.setattr(analyzer, "finish", finish)
    threads = threading.active_count()
    reader = start_early(swap(faces_dir, tmp_path / "out.jpg"), analyzer)
    try:
        found = [reader.source()[1], reader.target()[1]]
    finally:
        reader.close()
    assert found[0] is not None and found[1] is not None, "detected"
    assert not any(isinstance(item, Finished) for item in found) and finishing == []
    assert threading.active_count() == threads
