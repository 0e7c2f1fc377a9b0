"""The footage watermark (FrameMarker): the same mark as ``watermark.embed_id`` at a fraction of the cost,
every 2 s window of a really encoded (and re-encoded) clip reads the id, and the sealing path uses it
for footage only.

Frames are real photos (the shared test faces), resized or panned over as the video tests do; clips
are encoded with PyAV's libx264 under pytest's tmp.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import video_fixtures as vf
from likeness.disclosure import watermark
from likeness.disclosure.footage_read import read_video_disclosure
from likeness.disclosure.footage_sink import VIDEO_WATERMARK_STRENGTH, FootageSink
from likeness.disclosure.frame_mark import (
    MAX_CHANGE,
    FrameMarker,
    MaskParts,
    WorkingShrink,
    _enlarged_rms_bound,
    _percentile,
    _StripBuffers,
    add_to_rgb,
    soft_at_origin,
)
from likeness.disclosure.output_id import ID_BITS, format_output_id, is_balanced, new_output_id
from likeness.disclosure.seal import Marker, SealJob
from likeness.disclosure.still_sink import StillSink
from test_video_verify import reencode

PHOTOS = ["obama/1.jpg", "_noface/landscape_view.jpg", "alex_lacamoire/3.jpg"]
FPS = 25


def frame_of(faces_dir: Path, name: str, width: int, height: int) -> np.ndarray:
    return vf.resize(vf.load_rgb(faces_dir / name), width, height)


def change(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The luma change (R, G and B change alike)."""
    return after.astype(np.float64)[..., 1] - before.astype(np.float64)[..., 1]


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(values * values)))


@pytest.mark.parametrize(
    ("name", "size"),
    [(name, (1280, 720)) for name in PHOTOS] + [(PHOTOS[1], (1920, 1080)), (PHOTOS[0], (853, 479))],
    ids=[f"720p-{name}" for name in PHOTOS] + ["1080p", "odd-size"],
)
def test_the_first_frame_carries_embed_ids_mark(faces_dir: Path, name: str, size: tuple[int, int]) -> None:
    frame = frame_of(faces_dir, name, *size)
    output_id = new_output_id()
    # Footage keeps the geometry of large pictures at every size (a small still's mark is coarser).
    reference = watermark.embed_id(
        frame, output_id, strength=VIDEO_WATERMARK_STRENGTH, coarse_when_small=False
    )
    marked = FrameMarker(size[1], size[0], output_id, strength=VIDEO_WATERMARK_STRENGTH).mark(frame)

    assert marked.shape == frame.shape and marked.dtype == np.uint8
    diff = marked.astype(np.int16) - frame
    inside = ((marked > 0) & (marked < 255)).all(axis=2)  # not clipped in any channel
    assert (diff[inside] == diff[inside][:, :1]).all(), "R, G and B change alike"
    ours, theirs = change(frame, marked), change(frame, reference)
    correlation = float(np.sum(ours * theirs) / np.sqrt(np.sum(ours * ours) * np.sum(theirs * theirs)))
    assert correlation > 0.97, correlation
    assert 0.9 < rms(ours) / rms(theirs) < 1.1, (rms(ours), rms(theirs))
    reading = watermark.decode(marked)
    assert (
        reading.output_id == output_id and reading.confidence >= 0.8 * watermark.decode(reference).confidence
    )


def test_the_change_is_capped_at_the_strength(faces_dir: Path) -> None:
    frame = frame_of(faces_dir, "_noface/landscape_view.jpg", 1280, 720)
    output_id = new_output_id()
    free = rms(change(frame, FrameMarker(720, 1280, output_id, strength=4.5).mark(frame)))
    capped = rms(change(frame, FrameMarker(720, 1280, output_id, strength=1.0).mark(frame)))
    assert free > 2.0, "the picture is textured enough for the cap to matter"
    assert 0.9 < capped < 1.05, capped  # 1.0 before rounding to whole grey levels


def test_add_to_rgb_is_the_rounded_saturating_sum() -> None:
    rng = np.random.default_rng(11)
    pixels = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)
    pixels[:10] = 0
    pixels[10:20] = 255
    delta = np.clip(rng.standard_normal((97, 131)) * 40, -MAX_CHANGE, MAX_CHANGE).astype(np.float32)
    fixed = np.rint(delta * 64).astype(np.int16)  # as FrameMarker enlarges it; many halves to round
    for change, scale in ((delta, 1.0), (delta, 0.37), (fixed, 1 / 64), (fixed, 0.37 / 64)):
        exact = change.astype(np.float64) * scale
        expected = np.clip(pixels + np.rint(exact)[..., None], 0, 255)
        got = add_to_rgb(pixels, change, scale=scale)
        clear = np.abs(exact - np.floor(exact) - 0.5) > 1e-3  # within float32 error of a half: either way
        assert got.dtype == np.uint8 and clear.mean() > 0.9
        assert np.array_equal(got[clear], expected[clear])
        assert (np.abs(got.astype(np.int16) - expected)[~clear] <= 1).all()
        for rows in (1, 7, 97):  # strips that do not divide the height, and one strip
            assert np.array_equal(
                add_to_rgb(pixels, change, scale=scale, strips=_StripBuffers(rows, 131)), got
            )
        inside = pixels.copy()
        assert add_to_rgb(inside, change, scale=scale, strips=_StripBuffers(7, 131), out=inside) is inside
        assert np.array_equal(inside, got), "in place as into a new array"
    assert np.array_equal(add_to_rgb(pixels, np.zeros((97, 131), np.float32)), pixels)


@pytest.mark.parametrize("name", PHOTOS)
def test_the_cv2_mask_and_gains_reading_are_watermarks_own(faces_dir: Path, name: str) -> None:
    """MaskParts.amplitude and soft_at_origin compute watermark._amplitude and _soft_at_origin (the
    same filters, done in fewer passes): equal within float32 rounding, on a clean and a noisy picture."""
    frame = frame_of(faces_dir, name, 1280, 720)
    clean = watermark._resize(watermark._luma(frame), 256, 455)
    noisy = clean + np.random.default_rng(5).normal(0.0, 4.0, clean.shape).astype(np.float32)
    for work in (clean, noisy):
        for boost, noise_texture in ((1.0, 0.0), (1.5, 0.0), (0.5, 0.0), (1.0, 1.3)):
            ours = MaskParts.of(work).amplitude(boost, noise_texture=noise_texture)
            theirs = watermark._amplitude(work, boost, noise_texture=noise_texture)
            assert ours.dtype == np.float32 and ours.shape == theirs.shape
            assert np.abs(ours - theirs).max() <= 1e-4 * theirs.max(), (boost, noise_texture)
        ours, theirs = soft_at_origin(work), watermark._soft_at_origin(work)
        assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()
    power = np.abs(noisy - clean).reshape(-1)
    for percent in (0.0, 10.0, 37.5, 100.0):
        assert _percentile(power, percent) == pytest.approx(float(np.percentile(power, percent)), rel=1e-6)


@pytest.mark.parametrize(
    "size", [(1920, 1080), (1080, 1920), (1280, 720), (853, 479), (3840, 2160), (640, 360), (400, 200)]
)
def test_the_working_luma_gives_nearly_embeds_mask(faces_dir: Path, size: tuple[int, int]) -> None:
    """WorkingShrink reads every other row at 1080p and up, and halves and resizes on uint8: the
    visual mask it gives stays within a few per cent of embed's (area average of the float luma)."""
    width, height = size
    work_h, work_w = watermark._working_size(height, width)
    shrink = WorkingShrink.plan(height, width, work_h, work_w)
    assert shrink.rows == (2 if height >= 4 * work_h else 1)
    for name in PHOTOS:
        frame = frame_of(faces_dir, name, width, height)
        work = shrink.luma(frame)
        assert work.shape == (work_h, work_w) and work.dtype == np.float32
        ours = watermark._amplitude(work, 1.5)
        theirs = watermark._amplitude(watermark._resize(watermark._luma(frame), work_h, work_w), 1.5)
        assert 0.97 < ours.mean() / theirs.mean() < 1.04, (name, ours.mean() / theirs.mean())
        assert rms(ours - theirs) < 0.07 * rms(theirs), (name, rms(ours - theirs) / rms(theirs))


@pytest.mark.parametrize("size", [(1920, 1080), (1280, 720), (853, 479), (640, 360), (3000, 100)])
def test_the_rms_cap_skips_the_full_size_norm_only_where_the_bound_allows(
    faces_dir: Path, size: tuple[int, int]
) -> None:
    """The enlarged residual's RMS is never above the bound from the working RMS (a constant, a
    corner, the borders, noise and a real frame's mark), and FrameMarker's cap sees the exact RMS
    whenever the bound would reach the target."""
    width, height = size
    work_h, work_w = watermark._working_size(height, width)
    bound = _enlarged_rms_bound(work_h, work_w, height, width)
    assert 1.0 <= bound < 1.2
    rng = np.random.default_rng(3)
    corner = np.zeros((work_h, work_w), np.float32)
    corner[0, 0] = 1.0
    borders = np.zeros((work_h, work_w), np.float32)
    borders[[0, -1], :] = borders[:, [0, -1]] = 1.0
    noise = rng.standard_normal((work_h, work_w)).astype(np.float32)
    for residual in (np.ones((work_h, work_w), np.float32), corner, borders, noise):
        assert rms(watermark._resize(residual, height, width)) <= bound * rms(residual) + 1e-6

    frame = frame_of(faces_dir, PHOTOS[1], width, height)
    for strength in (4.5, 1.0):
        marker = FrameMarker(height, width, new_output_id(), strength=strength)
        residual = marker._residual(frame)
        exact = rms(watermark._resize(residual, height, width))
        told = marker._full_rms(residual, 1.0)
        assert told >= exact * (1 - 1e-5)
        assert told <= strength or told == pytest.approx(exact, rel=1e-5)


def test_a_frame_of_another_size_or_type_is_refused(faces_dir: Path) -> None:
    marker = FrameMarker(360, 640, new_output_id())
    with pytest.raises(ValueError, match="640×360×3 uint8"):
        marker.mark(frame_of(faces_dir, "obama/1.jpg", 320, 180))
    with pytest.raises(ValueError, match="640×360×3 uint8"):
        marker.mark(frame_of(faces_dir, "obama/1.jpg", 640, 360).astype(np.float32))
    with pytest.raises(ValueError, match="too small"):
        FrameMarker(12, 640, new_output_id())


def test_the_gains_are_recomputed_on_schedule(faces_dir: Path) -> None:
    a = frame_of(faces_dir, "obama/1.jpg", 640, 360)
    b = frame_of(faces_dir, "_noface/landscape_view.jpg", 640, 360)
    output_id = new_output_id()
    marker = FrameMarker(360, 640, output_id, gains_every=2)
    marker.mark(a)
    on_a_gains = marker.mark(b)  # frame 1: frame 0's gains
    on_b_gains = marker.mark(b)  # frame 2: recomputed on b
    fresh = FrameMarker(360, 640, output_id).mark(b)
    assert np.array_equal(on_b_gains, fresh)
    assert not np.array_equal(on_a_gains, fresh)
    assert marker.frames == 3


def seal_job(profile: str = "default") -> SealJob:
    return SealJob(
        kind="swap",
        purpose="research",
        ingredients=[],
        tools={},
        operator="t",
        consent_ids=lambda: [],
        disclosure_profile=profile,
    )


def test_the_sealing_path_marks_footage_per_output_and_stills_with_embed_id(faces_dir: Path) -> None:
    assert FootageSink.watermark_per_output and not StillSink.watermark_per_output
    job = seal_job()
    output_id = new_output_id()
    first, second = (frame_of(faces_dir, n, 640, 360) for n in ("obama/1.jpg", "biden/2.jpg"))
    footage = Marker(output_id, job, VIDEO_WATERMARK_STRENGTH, per_output=True)
    reference = FrameMarker(360, 640, output_id, strength=VIDEO_WATERMARK_STRENGTH)
    for frame in (first, second):
        labelled = frame.copy()  # as Marker.label returns it: a copy of the frame's own
        marked = footage.mark(labelled)
        assert marked is labelled, "footage is marked in place, in the labelled copy"
        assert np.array_equal(marked, reference.mark(frame))
    other = frame_of(faces_dir, "obama/1.jpg", 480, 270)  # a new size: a new pattern
    assert watermark.decode(footage.mark(other.copy())).output_id == output_id
    with pytest.raises(ValueError, match="in place"):  # a view whose pixels are not packed in rows
        footage.mark(other.copy()[:, ::2])

    still = Marker(output_id, job, watermark.STRENGTH)
    labelled = still.label(first)
    kept = labelled.copy()
    assert np.array_equal(
        still.mark(labelled), watermark.embed_id(kept, output_id, strength=watermark.STRENGTH)
    )
    assert np.array_equal(labelled, kept), "a still's labelled frame stays unmarked (its retry needs it)"


def test_footage_labels_are_drawn_on_copies_so_marking_in_place_writes_no_frame(faces_dir: Path) -> None:
    """Every path of the label step (the first frame's drawing, the corner label pasted on later
    frames, the start label drawn and then pasted) returns a frame of its own: marking it in place
    leaves the decoded or swapped frame it came from as it was."""
    job = seal_job(profile="eu")  # a profile with a start label
    frames = [frame_of(faces_dir, n, 640, 360) for n in ("obama/1.jpg", "biden/2.jpg")] * 3
    marker = Marker(new_output_id(), job, VIDEO_WATERMARK_STRENGTH, per_output=True, footage=True)
    held = []
    for index, frame in enumerate(frames):
        before = frame.copy()
        time = [0.0, 0.04, 0.08, 2.5, 2.54, 3.0][index]  # the start label's first seconds, then after
        labelled = marker.label(frame, time)
        assert not np.shares_memory(labelled, frame)
        assert all(not np.shares_memory(labelled, other) for other in held)
        assert marker.mark(labelled) is labelled
        assert np.array_equal(frame, before), f"frame {index} was written"
        held.append(labelled)
    assert marker.start_seconds > 0 and marker._start is not None and marker._paste, "every path ran"


def fixed_output_id(seed: int) -> str:
    """A balanced id from a seeded generator: the clips below are the same on every run."""
    rng = np.random.default_rng(seed)
    while True:
        bits = rng.integers(0, 2, ID_BITS).astype(np.uint8)
        if is_balanced(bits):
            return format_output_id(bits)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> dict[str, object]:
    """A 4 s 1280×720 pan over a real photo, marked by embed_id and by FrameMarker, encoded (CRF 18,
    the writer's default) and re-encoded by a platform (CRF 28; CRF 28 at 480p)."""
    folder = tmp_path_factory.mktemp("frame_mark")
    frames = list(vf.pan_frames(vf.load_rgb(faces_dir / vf.PERSON_A), size=(1280, 720), count=4 * FPS))
    output_id = fixed_output_id(13)
    marker = FrameMarker(720, 1280, output_id, strength=VIDEO_WATERMARK_STRENGTH)
    marked = {
        "frame_mark": [marker.mark(f) for f in frames],
        "embed_id": [watermark.embed_id(f, output_id, strength=VIDEO_WATERMARK_STRENGTH) for f in frames],
    }
    files: dict[tuple[str, str], Path] = {}
    for name, pictures in marked.items():
        clip = vf.write_clip(
            folder / f"{name}.mp4", pictures, fps=FPS, audio=None, options={"preset": "veryfast", "crf": "18"}
        )
        files[name, "crf18"] = clip
        files[name, "crf28"] = reencode(clip, folder / f"{name}-28.mp4", crf=28)
        files[name, "480p-crf28"] = reencode(clip, folder / f"{name}-480.mp4", crf=28, height=480)
    return {"output_id": output_id, "files": files}


@pytest.mark.parametrize("attack", ["crf18", "crf28", "480p-crf28"])
def test_every_2s_window_of_a_real_clip_reads_the_id(clips: dict, attack: str) -> None:
    """The file as written and re-encoded at CRF 28: every window. At 480p CRF 28 both marks are near
    their limit (window confidence about 0.3 for either): as many windows as embed_id's, give or
    take one, and never a wrong id."""
    output_id, files = clips["output_id"], clips["files"]
    report = read_video_disclosure(files["frame_mark", attack], window_seconds=2.0, credentials=False)
    baseline = read_video_disclosure(files["embed_id", attack], window_seconds=2.0, credentials=False)
    ids = [w.output_id for w in report.windows]
    assert len(ids) == 2 and not report.other_ids and set(ids) <= {output_id, None}
    if attack == "480p-crf28":
        assert ids.count(output_id) >= [w.output_id for w in baseline.windows].count(output_id) - 1
    else:
        assert ids == [output_id] * 2, report.describe_windows()
    ours = np.mean([w.confidence for w in report.windows])
    theirs = np.mean([w.confidence for w in baseline.windows])
    assert ours >= theirs - 0.1, (ours, theirs)
