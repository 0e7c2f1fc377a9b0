"""The 68-point model in a forked helper process (``likeness swap`` on a still or footage): the same
landmarks as in-process, the same fail-closed model check, and no process left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from changed_models import write_changed_dlib_model
from likeness.errors import BadInput, ModelMissing
from likeness.faces.dlib_backend import DlibAnalyzer
from likeness.faces.landmark_helper import LandmarkHelper
from likeness.home import Home
from likeness.media.image import load_image
from likeness.models import model

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("_multi/obama_and_biden.jpg", "kit_harington/2.jpg", "obama/1.jpg", "_hard/obama_240p_small.jpg")


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie that nobody reaped yet counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _in_a_fresh_process(body: str, *args: Path) -> None:
    """Run ``body(*args)`` of this module in a new interpreter: the helper forks only from a process
    running one thread, and earlier tests in this pytest process may have left threads behind (the
    app's, a pool's), so the tests that need a helper run where the CLI starts one."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import test_landmark_helper as module\n"
        f"module.{body}(*[Path(a) for a in sys.argv[1:]])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]


def test_the_helper_finds_the_same_landmarks_on_every_test_photo(faces_dir: Path) -> None:
    """Every face of every test photo: the helper, which is sent a crop around each face, gives the
    points the model loaded here gives on the whole picture (and so the same faces)."""
    _in_a_fresh_process("_same_landmarks", faces_dir)


def _same_landmarks(faces_dir: Path) -> None:
    local = DlibAnalyzer()
    photos = sorted(p for p in faces_dir.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    helper = LandmarkHelper.start(None)
    assert helper is not None  # a fresh process runs one thread
    compared = 0
    with helper:
        remote = DlibAnalyzer(defer_models=True, landmarks_helper=helper)
        for photo in photos:
            try:
                pixels = load_image(photo).pixels
            except BadInput:
                continue  # the deliberately broken files
            found = local.find(pixels)
            expected, faces = local.finish(found, embed=False).faces, remote.finish(found, embed=False).faces
            assert [f.box for f in faces] == [f.box for f in expected], photo
            for face, other in zip(faces, expected, strict=True):
                assert face.landmarks.dtype == np.float32 and face.landmarks.shape == (68, 2)
                np.testing.assert_array_equal(face.landmarks, other.landmarks, err_msg=str(photo))
            compared += len(faces)
        for photo in PHOTOS:  # whole analyses, embeddings included
            pixels = load_image(faces_dir / photo).pixels
            for face, other in zip(remote.analyze(pixels), local.analyze(pixels), strict=True):
                np.testing.assert_array_equal(face.embedding, other.embedding)
        assert remote.model_files() == local.model_files()
        pid = helper._pid
    assert compared >= 130
    assert _gone(pid)  # closed and reaped


def test_the_helper_finds_the_same_landmarks_in_footage_at_each_detection_scale(
    faces_dir: Path, tmp_path: Path
) -> None:
    """Footage asks the helper for the landmarks of what it detects: on the decoded frames of a real
    H.264 clip, at full scale, at the reduced scale followed faces allow, and in the crop around a
    face that a re-identification looks at, the helper's points are the model's here."""
    import video_fixtures as vf

    a, b = vf.scene_photos(faces_dir)
    scene = vf.Scene(a, b, size=(1280, 720), face_px=220, b_enters=-40, count=8)  # both in view
    clip = vf.write_clip(tmp_path / "two.mp4", scene.frames(), fps=25, audio=None)
    _in_a_fresh_process("_same_landmarks_in_footage", clip)


def _same_landmarks_in_footage(clip: Path) -> None:
    from likeness.media.video import iter_frames

    local = DlibAnalyzer()
    helper = LandmarkHelper.start(None)
    assert helper is not None
    compared = 0
    with helper:
        remote = DlibAnalyzer(defer_models=True, landmarks_helper=helper)
        for frame in iter_frames(clip):
            for scale in (None, 0.45):
                expected, faces = (
                    local.detect(frame.pixels, scale=scale),
                    remote.detect(frame.pixels, scale=scale),
                )
                assert [f.box for f in faces] == [f.box for f in expected]
                for face, other in zip(faces, expected, strict=True):
                    np.testing.assert_array_equal(face.landmarks, other.landmarks)
                    np.testing.assert_array_equal(face.landmarks5, other.landmarks5)
                compared += len(faces)
            left, top, right, bottom = expected[0].box
            crop = np.ascontiguousarray(
                frame.pixels[max(0, top - 110) : bottom + 110, max(0, left - 110) : right + 110]
            )
            (face,), (other,) = remote.detect(crop, scale=0.45), local.detect(crop, scale=0.45)
            np.testing.assert_array_equal(face.landmarks, other.landmarks)
            np.testing.assert_array_equal(
                remote.embed(crop, face).embedding, local.embed(crop, other).embedding
            )
    assert compared == 32  # 8 frames, 2 scales, 2 faces


def test_a_changed_68_point_model_is_refused_by_the_helper(home, faces_dir: Path) -> None:
    _in_a_fresh_process("_changed_model_refused", home.root, faces_dir)


def _changed_model_refused(root: Path, faces_dir: Path) -> None:
    home = Home(root)
    entry = model("dlib_landmarks_68")
    write_changed_dlib_model(home, "dlib_landmarks_68")
    helper = LandmarkHelper.start(home)
    assert helper is not None
    with helper:
        with pytest.raises(ModelMissing, match=entry.filename):
            helper.ready()
        analyzer = DlibAnalyzer(home, defer_models=True, landmarks_helper=helper)
        with pytest.raises(ModelMissing, match=entry.filename):
            analyzer.analyze(load_image(faces_dir / "obama/1.jpg").pixels)


def test_two_threads_asking_the_helper_at_once_each_get_their_own_answer(faces_dir: Path) -> None:
    """A still swap's two input readers may ask the helper at the same moment: each request waits for
    the other's answer, so neither answer is scrambled, swapped or lost (without the lock, 28 of 30
    such pairs lost the helper)."""
    _in_a_fresh_process("_two_threads_at_once", faces_dir)


def _two_threads_at_once(faces_dir: Path) -> None:
    helper = LandmarkHelper.start(None)
    assert helper is not None
    with helper:
        local = DlibAnalyzer()
        pictures = [load_image(faces_dir / name).pixels for name in ("obama/1.jpg", PHOTOS[0])]
        boxes = [[raw for raw, *_ in local.find(pixels).kept()] for pixels in pictures]
        models = local._models()
        wanted = [models.points68(pixels, found) for pixels, found in zip(pictures, boxes, strict=True)]
        start = threading.Barrier(2)
        answers: list[list[str]] = [[], []]

        def ask(index: int) -> None:
            for _ in range(20):
                start.wait(timeout=30)
                try:
                    got = helper.points(pictures[index], boxes[index])
                except Exception as error:  # noqa: BLE001 # counted below
                    answers[index].append(type(error).__name__)
                    continue
                same = len(got) == len(wanted[index]) and all(
                    np.array_equal(a, b) for a, b in zip(got, wanted[index], strict=True)
                )
                answers[index].append("same" if same else "different")

        threads = [threading.Thread(target=ask, args=(index,)) for index in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert answers == [["same"] * 20, ["same"] * 20]


def test_a_helper_that_died_is_replaced_by_loading_the_model_here(faces_dir: Path) -> None:
    _in_a_fresh_process("_dead_helper_replaced", faces_dir)


def _dead_helper_replaced(faces_dir: Path) -> None:
    helper = LandmarkHelper.start(None)
    assert helper is not None
    os.kill(helper._pid, signal.SIGKILL)
    with helper:
        analyzer = DlibAnalyzer(defer_models=True, landmarks_helper=helper)
        pixels = load_image(faces_dir / "obama/1.jpg").pixels
        (face,) = analyzer.analyze(pixels)
        (expected,) = DlibAnalyzer().analyze(pixels)
        np.testing.assert_array_equal(face.landmarks, expected.landmarks)


def test_a_helper_that_dies_after_it_was_ready_is_replaced_by_loading_the_model_here(faces_dir: Path) -> None:
    _in_a_fresh_process("_helper_dies_mid_job", faces_dir)


def _helper_dies_mid_job(faces_dir: Path) -> None:
    helper = LandmarkHelper.start(None)
    assert helper is not None
    with helper:
        analyzer = DlibAnalyzer(defer_models=True, landmarks_helper=helper)
        first = load_image(faces_dir / "obama/1.jpg").pixels
        (before,) = analyzer.analyze(first)  # through the helper
        os.kill(helper._pid, signal.SIGKILL)
        os.waitpid(helper._pid, 0)
        helper._pid = 0
        second = load_image(faces_dir / "biden/1.jpg").pixels
        (after,) = analyzer.analyze(second)  # the helper is gone: the model is read here
        local = DlibAnalyzer()
        np.testing.assert_array_equal(before.landmarks, local.analyze(first)[0].landmarks)
        np.testing.assert_array_equal(after.landmarks, local.analyze(second)[0].landmarks)


def test_the_helper_ends_when_its_command_goes_away() -> None:
    """The command killed with -9 cannot stop its helper: the helper sees its socket close and exits."""
    script = (
        "import sys, time\n"
        "from likeness.faces.landmark_helper import LandmarkHelper\n"
        "helper = LandmarkHelper.start(None)\n"
        "helper.ready()\n"
        "print(helper._pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert command.stdout is not None
        pid = int(command.stdout.readline())
        assert not _gone(pid)
    finally:
        command.kill()
        command.wait()
    deadline = time.monotonic() + 20
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid)


def test_no_helper_is_forked_from_a_process_running_threads() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert LandmarkHelper.start(None) is None
    finally:
        stop.set()
        other.join()


def test_the_command_starts_the_helper_for_dlib_swaps_only(home, tmp_path: Path) -> None:
    """Where the model cannot be had as arrays (the cache folder cannot be written), stills and footage
    with dlib get the helper; generation and edits (which load no 68-point model through it) and
    other backends do not fork one. Where it can (the cache folder is writable), no request does."""
    _in_a_fresh_process("_helper_for_swaps_only", home.root, tmp_path)


def _helper_for_swaps_only(root: Path, folder: Path) -> None:
    from likeness.cli.job_cmds import _landmark_helper
    from likeness.jobs.requests import EditRequest, GenerateRequest, SwapRequest, VideoSwapRequest

    home = Home(root)
    blocker = folder / "a-file"
    blocker.write_bytes(b"")
    writable, unwritable = folder / "cache", blocker / "cache"  # nothing can be created under a file
    every = [
        SwapRequest(folder / "a.jpg", folder / "a.jpg", "test", folder / "out"),
        VideoSwapRequest(folder / "a.jpg", folder / "b.mp4", "test", folder / "out"),
    ]
    os.environ["LIKENESS_CACHE"] = str(writable)
    for request in every:
        assert _landmark_helper(request, home) is None, request
    os.environ["LIKENESS_CACHE"] = str(unwritable)
    photo, clip, out = folder / "a.jpg", folder / "b.mp4", folder / "out"
    swaps = [SwapRequest(photo, photo, "test", out), VideoSwapRequest(photo, clip, "test", out)]
    others = [
        SwapRequest(photo, photo, "test", out, backend="insightface"),
        GenerateRequest(model="m", prompt="p", purpose="test", out=out),
        EditRequest(model="m", target=photo, prompt="p", purpose="test", out=out),
    ]
    for request in others:
        assert _landmark_helper(request, home) is None, request
    for request in swaps:
        helper = _landmark_helper(request, home)
        assert isinstance(helper, LandmarkHelper), request
        helper.close()
