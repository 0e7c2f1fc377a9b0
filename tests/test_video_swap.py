"""Consented face swaps on footage, end to end.

Generated clips of real photos (tests/video_fixtures.py) with a real AAC track, the real dlib
backend and classical swapper, a real SQLite registry and ledger, real H.264 files; everything is
written under pytest's tmp. Person A (Obama) is in the shot from the first frame; person B (Biden)
walks in from the right at frame 20. The source likeness is Kit Harington. Purpose ``research``
(non-commercial), so the non-commercial dlib landmark model needs no licence record.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import video_fixtures as vf
from likeness.consent.policy import add_years
from likeness.consent.registry import Registry
from likeness.disclosure.footage_read import read_video_disclosure
from likeness.disclosure.footage_sink import job_folder
from likeness.disclosure.label import detect_label
from likeness.errors import BadInput, ConsentRefused, UsageError
from likeness.home import Home
from likeness.jobs.enrol import enrol_identity
from likeness.jobs.requests import EnrolRequest, VideoSwapRequest
from likeness.jobs.road import swap_video
from likeness.media.video import iter_frames, probe_video

PURPOSE = "research"
USES = "replace the stunt double's face with the lead actor's likeness in scene 4 of 'Harbour'"
SOURCE = "kit_harington/3.jpg"
FPS = 25
A_BOX = (slice(130, 220), slice(60, 150))  # inner face of A, offset by A's drift (1 px a frame)
B_BOX = (slice(120, 210), slice(320, 410))  # inner face of B once it stands still (from frame 25)


@pytest.fixture(scope="module")
def photos(faces_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return vf.scene_photos(faces_dir)


@pytest.fixture(scope="module")
def scene_clip(tmp_path_factory: pytest.TempPathFactory, photos) -> Path:
    a, b = photos
    scene = vf.Scene(a, b, size=(480, 360), face_px=150, b_enters=20, count=60)
    return vf.write_clip(tmp_path_factory.mktemp("clips") / "scene.mp4", scene.frames(), fps=FPS)


def enrol(home: Home, faces_dir: Path, name: str, *photos: str) -> str:
    request = EnrolRequest(name, [faces_dir / p for p in photos], operator="tester", backend="dlib")
    return enrol_identity(request, home=home).id


def grant(home: Home, identity_id: str, roles: list[str], media: tuple[str, ...] = ("video",)) -> str:
    with Registry.open(home) as registry:
        return registry.grant(
            identity_id,
            purposes=[PURPOSE],
            roles=roles,
            media=list(media),
            valid_until=add_years(dt.date.today(), 1),
            uses=USES,
            operator="tester",
        ).id


def make_cast(home: Home, faces_dir: Path) -> dict[str, str]:
    """Kit (source, video), Obama (target, video); Biden is not enrolled."""
    kit = enrol(home, faces_dir, "Kit Harington", "kit_harington/1.jpg", "kit_harington/2.jpg")
    obama = enrol(home, faces_dir, "Barack Obama", "obama/2.jpg", "obama/3.jpg")
    return {
        "kit": kit,
        "obama": obama,
        "kit_consent": grant(home, kit, ["source"]),
        "obama_consent": grant(home, obama, ["target"]),
    }


@pytest.fixture()
def cast(home: Home, faces_dir: Path) -> dict[str, str]:
    """A fresh data home's cast, for tests that change consents or count outputs."""
    return make_cast(home, faces_dir)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> tuple[Home, dict[str, str]]:
    """One data home and cast for the tests that only read consents."""
    home = Home(root=tmp_path_factory.mktemp("shared") / "home").ensure()
    return home, make_cast(home, faces_dir)


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory: pytest.TempPathFactory, photos) -> Path:
    """400×300, 100 px faces, 2 s: B walks in at frame 20 and stands still from frame 22."""
    a, b = photos
    scene = vf.Scene(a, b, size=(400, 300), face_px=100, b_enters=20, count=50)
    return vf.write_clip(tmp_path_factory.mktemp("small") / "shot.mp4", scene.frames(), fps=FPS)


def request(faces_dir: Path, target: Path, out: Path, **changes) -> VideoSwapRequest:
    settings = {"preset": "veryfast", "segment_seconds": 1.0, "operator": "tester"}
    settings.update(changes)
    return VideoSwapRequest(source=faces_dir / SOURCE, target=target, purpose=PURPOSE, out=out, **settings)


@pytest.fixture()
def outs(tmp_path: Path) -> Path:
    """The output folder (the data home lives beside it in tmp_path)."""
    folder = tmp_path / "outs"
    folder.mkdir()
    return folder


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not job_folder(out).exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


# -- the job ------------------------------------------------------------------------------------------------


def test_consented_target_is_swapped_and_the_bystander_left_untouched(
    shared, faces_dir: Path, scene_clip: Path, outs: Path
) -> None:
    home, cast = shared
    out = outs / "out.mp4"
    stages: list[str] = []
    fractions: list[float] = []

    def progress(stage: str, fraction: float) -> None:
        stages.append(stage)
        fractions.append(fraction)

    outcome = swap_video(request(faces_dir, scene_clip, out), home=home, progress=progress)

    # Who was swapped: A (consented target) on every frame; B (not enrolled) never.
    a, b = sorted(outcome.tracks, key=lambda t: t.first_frame)
    assert (a.decision, a.identity_id, a.consent_id) == ("swapped", cast["obama"], cast["obama_consent"])
    assert a.frames_swapped == a.frames_seen == 60 and a.first_frame == 0
    assert b.decision == "untouched" and b.frames_swapped == 0 and "no enrolled identity" in b.reason
    assert 20 <= b.first_frame <= 30
    assert set(outcome.consents) == {cast["kit_consent"], cast["obama_consent"]}

    source = {f.index: f.pixels for f in iter_frames(scene_clip)}
    result = list(iter_frames(out))
    assert [f.time for f in result] == pytest.approx([f.time for f in iter_frames(scene_clip)], abs=1e-6)
    for frame in result[30::10]:
        a_box = (A_BOX[0], slice(A_BOX[1].start + frame.index, A_BOX[1].stop + frame.index))
        assert psnr(frame.pixels[a_box], source[frame.index][a_box]) < 22, "A's face was replaced"
        assert psnr(frame.pixels[B_BOX], source[frame.index][B_BOX]) > 28, "B's face was left as it was"

    # Disclosure on every frame; the file keeps the source's timing, size and audio bytes.
    assert all(detect_label(f.pixels) for f in result)
    report = read_video_disclosure(out, home=home)
    assert report.output_id == outcome.output_id and report.agreement == 1.0 and not report.other_ids
    assert report.c2pa is not None and report.c2pa.state == "trusted"
    assert report.c2pa.output_id == outcome.output_id
    assert set(report.c2pa.consent_ids) == set(outcome.consents)
    with Registry.open(home) as registry:  # footage manifests carry the consent terms hashes too
        terms = {cid: registry.get_consent(cid).terms_sha256() for cid in outcome.consents}
    assert report.c2pa.consent_hashes == terms
    src_info, out_info = probe_video(scene_clip), probe_video(out)
    assert (out_info.width, out_info.height, out_info.fps) == (src_info.width, src_info.height, src_info.fps)
    assert out_info.duration == pytest.approx(src_info.duration, abs=0.05)
    assert vf.packet_bytes(out) == vf.packet_bytes(scene_clip)

    # The ledger names every consent the frames used, for this video.
    with Registry.open(home) as registry:
        recorded = registry.get_output(outcome.output_id)
        entry = next(
            e.payload
            for e in registry.ledger_entries("output")
            if e.payload["output_id"] == recorded.output_id
        )
    assert recorded is not None and recorded.sha256 == outcome.sha256 == report.sha256
    assert set(recorded.consent_ids) == set(outcome.consents)
    assert entry["media_kind"] == "video" and entry["media_type"] == "video/mp4"
    assert {c["role"] for c in entry["checks"]} == {"source", "target"}
    assert any(s.startswith("frame ") and "ETA" in s for s in stages)
    assert fractions == sorted(fractions), "the progress never goes back"
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask, "the mode a new file gets, not the job's 0600"
    assert [p.name for p in outs.iterdir()] == ["out.mp4"], "no job folder left behind"


def test_footage_under_the_eu_profile_gets_a_start_label_that_avoids_the_faces(
    shared, faces_dir: Path, small_clip: Path, outs: Path
) -> None:
    """--disclosure-profile eu on the road: "AI MODIFIED" top right on every frame, a larger start
    label over the first 2 s clear of the faces the tracker found, and verify says it meets eu."""
    from likeness.jobs.verify import verify_file

    home, _ = shared
    out = outs / "eu.mp4"
    outcome = swap_video(request(faces_dir, small_clip, out, disclosure_profile="eu"), home=home)
    assert outcome.notes == ()
    report = verify_file(out, home=home)
    profile = report.to_dict()["profile"]
    assert profile["name"] == "eu" and profile["meets"] is True, profile
    corner, start = profile["recorded"]["label"], profile["recorded"]["start_label"]
    assert corner["text"] == "AI MODIFIED" and corner["corner"] == "top-right" and start["seconds"] == 2.0
    box = start["box"]
    left, top, right, bottom = 30, 100, 30 + 100 + 50, 200  # A's 100 px crop over the clip (1 px a frame)
    assert box["bottom"] <= top or box["top"] >= bottom or box["right"] <= left or box["left"] >= right
    plate = (slice(box["top"] + 3, box["bottom"] - 3), slice(box["left"] + 3, box["right"] - 3))
    frames = list(iter_frames(out))  # the clip is 2 s: every frame carries the start label
    assert len(frames) == 50 and all(float((f.pixels[plate].max(axis=2) < 60).mean()) > 0.45 for f in frames)


def test_all_faces_mode_stops_at_the_unconsented_newcomer_naming_frame_and_time(
    shared, faces_dir: Path, small_clip: Path, outs: Path
) -> None:
    home, _ = shared
    out = outs / "out.mp4"
    with Registry.open(home) as registry:
        outputs = len(registry.list_outputs())
    with pytest.raises(ConsentRefused) as refused:
        swap_video(request(faces_dir, small_clip, out, faces="all"), home=home)
    error = refused.value
    assert error.rule == "not_enrolled"
    assert "track #2" in error.reason and "shot.mp4" in error.reason
    frame = int(error.reason.split(", frame ")[1].split(")")[0])
    seconds = float(error.reason.split("first seen at ")[1].split(" s")[0])
    assert 20 <= frame <= 30 and seconds == pytest.approx(frame / FPS)
    nothing_written(out)
    with Registry.open(home) as registry:
        refusal = registry.ledger_entries("refusal")[-1].payload
        assert refusal["rule"] == "not_enrolled" and refusal["media_kind"] == "video"
        assert len(registry.list_outputs()) == outputs


def test_an_enrolled_person_without_target_consent_is_a_bystander(
    home: Home, cast, faces_dir: Path, small_clip: Path, outs: Path
) -> None:
    """Biden enrolled as a *source* only (like the lead actor appearing in the shot): left untouched;
    with --faces all the same person stops the job (wrong role)."""
    biden = enrol(home, faces_dir, "Joe Biden", "biden/1.jpg")
    grant(home, biden, ["source"])
    outcome = swap_video(request(faces_dir, small_clip, outs / "out.mp4"), home=home)
    b = max(outcome.tracks, key=lambda t: t.first_frame)
    assert b.decision == "untouched" and b.identity_id == biden
    assert "holds no consent to be replaced" in b.reason

    with pytest.raises(ConsentRefused) as refused:
        swap_video(request(faces_dir, small_clip, outs / "all.mp4", faces="all"), home=home)
    assert refused.value.rule == "wrong_role" and refused.value.identity_id == biden
    nothing_written(outs / "all.mp4")


def test_the_source_is_gated_for_video_before_any_frame_is_read(
    home: Home, faces_dir: Path, small_clip: Path, outs: Path
) -> None:
    kit = enrol(home, faces_dir, "Kit Harington", "kit_harington/1.jpg")
    obama = enrol(home, faces_dir, "Barack Obama", "obama/2.jpg", "obama/3.jpg")
    grant(home, kit, ["source"], media=("image",))
    grant(home, obama, ["target"])
    out = outs / "out.mp4"
    with pytest.raises(ConsentRefused) as refused:
        swap_video(request(faces_dir, small_clip, out), home=home)
    assert refused.value.rule == "wrong_media" and "source photo" in refused.value.reason
    nothing_written(out)


def test_footage_where_nobody_may_be_replaced_writes_nothing(
    shared, faces_dir: Path, photos, tmp_path: Path
) -> None:
    home, _ = shared
    _, b = photos
    only_b = vf.write_clip(tmp_path / "b.mp4", vf.Scene(b, b, b_enters=999, count=20).frames(), fps=FPS)
    out = tmp_path / "out.mp4"
    with pytest.raises(ConsentRefused, match=r"no face in the footage was replaced.*track #1"):
        swap_video(request(faces_dir, only_b, out), home=home)
    nothing_written(out)


def test_a_consent_revoked_while_the_job_runs_wins(
    home: Home, cast, faces_dir: Path, small_clip: Path, outs: Path
) -> None:
    out = outs / "out.mp4"
    revoked = []

    def revoke_midway(stage: str, fraction: float) -> None:
        if stage.startswith("frame") and not revoked:
            with Registry.open(home) as registry:
                registry.revoke(cast["obama_consent"], reason="withdrawn during the shoot", operator="tester")
            revoked.append(stage)

    with pytest.raises(ConsentRefused, match="revoked"):
        swap_video(request(faces_dir, small_clip, out), home=home, progress=revoke_midway)
    assert revoked
    nothing_written(out)


def test_footage_reuses_loaded_engines(
    shared, faces_dir: Path, small_clip: Path, outs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's loaded models serve footage too: given engines, nothing is loaded again."""
    from likeness.jobs import engines as engines_module

    home, _ = shared
    loaded = engines_module.load_engines("dlib", home)

    def no_reload(*args, **kwargs):
        raise AssertionError("a footage job loaded its models again")

    monkeypatch.setattr(engines_module, "load_analyzer", no_reload)
    monkeypatch.setattr(engines_module, "load_swapper", no_reload)
    outcome = swap_video(request(faces_dir, small_clip, outs / "out.mp4"), home=home, engines=loaded)
    assert outcome.faces_swapped >= 1  # and no_reload was never called


def test_cancelling_footage_is_the_same_error_and_exit_code_as_a_still(
    shared, faces_dir: Path, small_clip: Path, outs: Path
) -> None:
    import threading

    from likeness.errors import Cancelled

    home, _ = shared
    out = outs / "out.mp4"
    cancel = threading.Event()

    def cancel_at_first_frame(stage: str, fraction: float) -> None:
        if stage.startswith("frame"):
            cancel.set()

    with pytest.raises(Cancelled) as stopped:
        swap_video(
            request(faces_dir, small_clip, out), home=home, progress=cancel_at_first_frame, cancel=cancel
        )
    assert stopped.value.exit_code == 130 and "cancelled at frame" in stopped.value.reason
    assert not out.exists() and job_folder(out).is_dir(), "finished segments are kept for a resume"
    outcome = swap_video(request(faces_dir, small_clip, out), home=home)  # the same request resumes
    assert out.is_file() and outcome.video is not None and not job_folder(out).exists()


def crossfade(a: np.ndarray, b: np.ndarray, *, count: int = 50, face_px: int = 150) -> list[np.ndarray]:
    """A consenting person fading into one who never consented, in the same place, without a cut."""
    size = (400, 300)
    fa, fb = (
        vf.resize(a, face_px, face_px).astype(np.float32),
        vf.resize(b, face_px, face_px).astype(np.float32),
    )
    background = np.full((size[1], size[0], 3), 90, np.uint8)
    frames = []
    for i in range(count):
        alpha = min(1.0, max(0.0, (i - 10) / (count - 20)))  # A alone, the fade, then B alone
        frame = background.copy()
        frame[70 : 70 + face_px, 120 : 120 + face_px] = np.round((1 - alpha) * fa + alpha * fb).astype(
            np.uint8
        )
        frames.append(frame)
    return frames


@pytest.mark.parametrize("detect_every", [5, 1000])
def test_a_crossfade_to_an_unconsented_person_splits_the_track_and_stops_swapping(
    shared, faces_dir: Path, photos, tmp_path: Path, outs: Path, detect_every: int
) -> None:
    home, cast = shared
    frames = crossfade(*photos)
    clip = vf.write_clip(tmp_path / "fade.mp4", frames, fps=FPS)
    out = outs / "out.mp4"
    outcome = swap_video(request(faces_dir, clip, out, detect_every=detect_every), home=home)

    first = min(outcome.tracks, key=lambda t: t.first_frame)
    assert first.identity_id == cast["obama"] and first.frames_swapped > 0
    assert first.end_reason and "split at" in first.end_reason, first
    split_frame = first.last_frame
    alphas = [min(1.0, max(0.0, (i - 10) / 30)) for i in range(len(frames))]
    assert alphas[split_frame] <= 0.6, f"swapping went on until the frame was {alphas[split_frame]:.0%} B"
    later = [t for t in outcome.tracks if t.first_frame >= split_frame]
    assert later and all(t.frames_swapped == 0 for t in later), outcome.tracks

    # Frames that are mostly B were left as they were.
    result = {f.index: f.pixels for f in iter_frames(out)}
    face = (slice(90, 200), slice(140, 250))
    for index in (45, 49):
        assert psnr(result[index][face], frames[index][face]) > 28, f"frame {index} was swapped"


# -- bad input ---------------------------------------------------------------------------------------------


def test_bad_footage_is_refused_clearly_and_nothing_is_written(
    shared, faces_dir: Path, scene_clip: Path, small_clip: Path, outs: Path
) -> None:
    home, _ = shared
    with Registry.open(home) as registry:
        outputs = len(registry.list_outputs())
    empty = outs / "empty.mp4"
    empty.write_bytes(b"")
    audio_only = vf.write_audio_only(outs / "audio.m4a")
    huge = vf.write_huge_clip(outs / "huge.mkv")
    corrupt = outs / "corrupt.mp4"
    vf.corrupt_packet(small_clip, corrupt, 12)
    narrow = vf.write_clip(outs / "narrow.mp4", [np.full((128, 64, 3), 90, np.uint8)] * 3, audio=None)
    cases = [
        (empty, "the file is empty"),
        (audio_only, "no video stream"),
        (huge, "over the limit"),
        (corrupt, r"corrupt video data at frame \d+"),
        (narrow, r"narrow.mp4: at 64×128 pixels the output would be too small to carry a legible"),
    ]
    for target, message in cases:
        out = outs / f"out-{target.stem}.mp4"
        with pytest.raises(BadInput, match=message):
            swap_video(request(faces_dir, target, out), home=home)
        nothing_written(out)
    for wrong, message in [("out.mkv", "Matroska"), ("out.avi", "cannot write"), ("out.jpg", "cannot write")]:
        with pytest.raises(UsageError, match=message):
            swap_video(request(faces_dir, scene_clip, outs / wrong), home=home)
    with pytest.raises(UsageError, match="prores cannot be written in mp4"):
        swap_video(request(faces_dir, scene_clip, outs / "p.mp4", codec="prores"), home=home)
    with pytest.raises(UsageError, match="refusing to overwrite an input"):
        swap_video(request(faces_dir, scene_clip, scene_clip), home=home)
    with Registry.open(home) as registry:
        assert len(registry.list_outputs()) == outputs


# -- the CLI: progress, Ctrl-C, kill, resume ----------------------------------------------------------------


def _likeness(home: Home, *args: str) -> list[str]:
    entry = "import sys; from likeness.cli import main; sys.exit(main())"
    return [sys.executable, "-c", entry, "--home", str(home.root), *args]


def _run_until(command: list[str], job: Path, segment: str, sig: int) -> subprocess.CompletedProcess:
    """Start ``command``, wait until the job folder holds finished ``segment``, then send ``sig``."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and child.poll() is None and not (job / segment).exists():
        time.sleep(0.05)
    assert child.poll() is None, child.communicate()
    child.send_signal(sig)
    stdout, stderr = child.communicate(timeout=60)
    return subprocess.CompletedProcess(command, child.returncode, stdout, stderr)


@pytest.mark.kill
def test_ctrl_c_then_kill_then_rerun_resumes_to_a_complete_output(
    home: Home, cast, faces_dir: Path, small_clip: Path, outs: Path
) -> None:
    clip = small_clip
    out = outs / "final.mp4"
    job = job_folder(out)
    args = ["swap", "--source", str(faces_dir / SOURCE), "--target", str(clip), "--purpose", PURPOSE]
    args += ["--out", str(out), "--segment-seconds", "0.4", "--json"]
    command = _likeness(home, *args)

    # Ctrl-C: stops after the current frame, keeps finished segments, says how to resume.
    first = _run_until(command, job, "seg_00001.mkv", signal.SIGINT)
    assert first.returncode == 130, first.stderr
    assert "cancelled at frame" in first.stderr and "run the same command again" in first.stderr
    assert not out.exists() and (job / "seg_00001.mkv").exists()
    # The checkpoint keeps where the labels were placed: A's face, the only one in the first frame.
    labels = json.loads((job / "manifest.json").read_text())["resume_state"]["disclosure_labels"]
    assert len(labels["label_avoid"]) == 1 and labels["start_avoid"] is None, labels

    # A real SIGKILL later in the rerun: still nothing under the final name.
    second = _run_until(command, job, "seg_00003.mkv", signal.SIGKILL)
    assert second.returncode == -signal.SIGKILL
    assert not out.exists() and (job / "seg_00003.mkv").exists()
    assert [p.name for p in outs.iterdir()] == [job.name], "only the hidden job folder"
    # What a kill while signing leaves: the signer's temporary file beside the file it signs.
    (job / ".sealed.mp4.k7q2x9ab.c2pa").write_bytes(b"")

    # The third run picks up after the last finished segment and completes the output.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    third = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert third.returncode == 0, third.stderr
    result = json.loads(third.stdout)
    assert result["output"] == str(out) and result["video"]["reused_segments"] >= 3
    assert set(result["consents"]) == {cast["kit_consent"], cast["obama_consent"]}
    assert result["video"]["frames"] == 50
    assert any(t["end_reason"] == "job interrupted here" for t in result["tracks"])
    assert not job.exists()
    assert [f.time for f in iter_frames(out)] == pytest.approx([f.time for f in iter_frames(clip)], abs=1e-6)
    report = read_video_disclosure(out, home=home)
    assert report.output_id == result["output_id"] and not report.other_ids
    assert vf.packet_bytes(out) == vf.packet_bytes(clip)
    with Registry.open(home) as registry:
        assert [o.output_id for o in registry.list_outputs()] == [result["output_id"]]


@pytest.mark.kill
def test_sigterm_stops_a_footage_job_like_ctrl_c(
    home: Home, cast, faces_dir: Path, small_clip: Path, outs: Path
) -> None:
    """What ``docker stop`` and systemd send: the job stops at the next frame with a message (exit
    130), nothing under the output name, the finished segments kept for the same command to resume."""
    out = outs / "terminated.mp4"
    job = job_folder(out)
    args = ["swap", "--source", str(faces_dir / SOURCE), "--target", str(small_clip), "--purpose", PURPOSE]
    stopped = _run_until(
        _likeness(home, *args, "--out", str(out), "--segment-seconds", "0.4"),
        job,
        "seg_00001.mkv",
        signal.SIGTERM,
    )
    assert stopped.returncode == 130, stopped.stderr
    assert "cancelled at frame" in stopped.stderr and "run the same command again" in stopped.stderr
    assert not out.exists() and (job / "seg_00001.mkv").exists()


def test_cli_refuses_image_options_on_video_and_video_options_on_images(
    shared, faces_dir: Path, scene_clip: Path, tmp_path: Path
) -> None:
    home, _ = shared
    from click.testing import CliRunner

    from likeness.cli import main as cli

    base = ["--home", str(home.root), "swap", "--source", str(faces_dir / SOURCE), "--purpose", PURPOSE]
    on_video = CliRunner().invoke(
        cli, [*base, "--target", str(scene_clip), "--out", str(tmp_path / "o.mp4"), "--face-index", "0"]
    )
    assert on_video.exit_code == 2 and "--face-index applies to images" in on_video.output
    for codec, out in (("ffv1", "o.mp4"), (None, "o.mov")):
        crf = CliRunner().invoke(
            cli,
            [*base, "--target", str(scene_clip), "--out", str(tmp_path / out), "--crf", "10"]
            + (["--codec", codec] if codec else []),
        )
        assert crf.exit_code == 2 and "crf sets H.264's quality" in crf.output, crf.output
    on_image = CliRunner().invoke(
        cli,
        [*base, "--target", str(faces_dir / "obama/1.jpg"), "--out", str(tmp_path / "o.jpg"), "--crf", "20"],
    )
    assert on_image.exit_code == 2 and "--crf applies to video targets" in on_image.output
