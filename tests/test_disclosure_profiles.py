"""Disclosure profiles (default, eu, cn): the label's wording, corner and size in the pixels, footage's
start label, the GB 45438-2025 AIGC implicit label in the file's metadata and in the manifest,
verify's profile report, the policy's default and the CLI option.

Real photos and a real clip (tests/video_fixtures.py); every output stays in pytest's tmp. The
pixel and metadata checks below read the files with Pillow, PyAV and numpy, not with likeness's
own reader, so they test the writer against an independent view.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import math
import re
import shutil
import sqlite3
import struct
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import video_fixtures as vf
from likeness.cli import main
from likeness.consent.policy import Policy
from likeness.disclosure.credentials import read_credentials
from likeness.disclosure.label import CAP_FRACTION
from likeness.disclosure.output_id import new_output_id
from likeness.disclosure.profile_check import MEASURE_TOLERANCE_PX, ProfileCheck, check_profile
from likeness.disclosure.profiles import get_profile
from likeness.disclosure.read import read_disclosure
from likeness.disclosure.seal import SealJob, seal_frames
from likeness.disclosure.still_sink import StillSink
from likeness.disclosure.types import Ingredient, SealedOutput, Unsealed
from likeness.disclosure.write import seal
from likeness.errors import RegistryError, UsageError
from likeness.home import Home
from likeness.jobs.verify import verify_file
from likeness.media import load_image
from likeness.media.frames import StillSource

PHOTO = "obama/4.jpg"
AIGC_FIELDS = [
    "Label",
    "ContentProducer",
    "ProduceID",
    "ReservedCode1",
    "ContentPropagator",
    "PropagateID",
    "ReservedCode2",
]
UNTIL = (dt.date.today() + dt.timedelta(days=60)).isoformat()


def _unsealed(path: Path, *, kind: str = "swap", profile: str = "default") -> Unsealed:
    picture = load_image(path)
    return Unsealed(
        pixels=picture.pixels,
        kind=kind,  # type: ignore[arg-type]
        purpose="test",
        consent_ids=["consent-1"],
        ingredients=[Ingredient(role="target", path=path, sha256=picture.sha256, format=picture.format)],
        tools={"swapper": {"name": "test"}},
        operator="tester",
        disclosure_profile=profile,
    )


def _aigc_of_xmp(xmp: bytes | str) -> dict[str, str]:
    text = xmp.decode("utf-8") if isinstance(xmp, bytes) else xmp
    assert "http://www.tc260.org.cn/ns/AIGC/1.0/" in text
    found = re.search(r"<TC260:AIGC>(.*?)</TC260:AIGC>", text, re.S)
    assert found is not None, text
    return json.loads(html.unescape(found.group(1)))


def _pillow_aigc(path: Path) -> dict[str, str] | None:
    """The AIGC JSON as Pillow sees the file's XMP (JPEG APP1, PNG iTXt), or None."""
    with Image.open(path) as image:
        xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    return None if xmp is None else _aigc_of_xmp(xmp)


def _box(facts: dict[str, Any]) -> tuple[int, int, int, int]:
    box = facts["box"]
    return int(box["left"]), int(box["top"]), int(box["right"]), int(box["bottom"])


def _is_plate(pixels: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    """The box holds an opaque dark plate with light text (not the picture that was there)."""
    left, top, right, bottom = box
    region = pixels[top:bottom, left:right].astype(int)
    inner = region[2:-2, 2:-2]
    dark = float((inner.max(axis=2) < 60).mean())
    light = float((inner.min(axis=2) > 180).mean())
    return dark >= 0.45 and light >= 0.04


def _text_rows(pixels: np.ndarray, box: tuple[int, int, int, int], outline: int) -> int:
    """Rows of the first line of light text inside the plate (outline excluded)."""
    left, top, right, bottom = box
    inner = pixels[top + outline + 1 : bottom - outline - 1, left + outline + 1 : right - outline - 1]
    rows = (inner.min(axis=2) > 170).any(axis=1)
    run = best = 0
    for filled in rows:
        run = run + 1 if filled else 0
        best = max(best, run)
        if best and not filled:
            break
    return best


# -- profiles and the policy ------------------------------------------------------------------------
def test_unknown_profile_is_a_usage_error_naming_the_profiles() -> None:
    with pytest.raises(UsageError) as raised:
        get_profile("us")
    assert "unknown disclosure profile 'us'" in raised.value.reason
    assert "default, eu, cn" in raised.value.reason
    assert get_profile(" EU ").name == "eu"


def test_policy_names_the_default_profile_and_refuses_an_unknown_one() -> None:
    packaged = Policy.load()
    assert packaged.disclosure_profile == "default" and packaged.content_producer == "likeness"
    text = (Path(__file__).parents[1] / "consent" / "policy.toml").read_text(encoding="utf-8")
    assert 'default_profile = "default"' in text
    chosen = Policy.from_bytes(
        text.replace('default_profile = "default"', 'default_profile = "cn"').encode(), source="t"
    )
    assert chosen.disclosure_profile == "cn"
    with pytest.raises(RegistryError, match=r"disclosure\.default_profile"):
        Policy.from_bytes(
            text.replace('default_profile = "default"', 'default_profile = "us"').encode(), source="t"
        )
    older = re.sub(r"\[disclosure\].*?content_producer = \"likeness\"\n", "", text, flags=re.S)
    assert "[disclosure]" not in older
    assert Policy.from_bytes(older.encode(), source="old").disclosure_profile == "default"


# -- stills ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_eu_still_label_is_top_right_and_says_ai_modified(
    faces_dir: Path, tmp_path: Path, home, suffix: str
) -> None:
    out = tmp_path / f"eu{suffix}"
    sealed = seal(_unsealed(faces_dir / PHOTO, profile="eu"), out, home=home, record=lambda s: None)
    pixels = load_image(out).pixels
    height, width = pixels.shape[:2]
    credentials = read_credentials(out, home)
    assert credentials.state == "trusted" and credentials.output_id == sealed.output_id
    label = credentials.disclosure["label"]
    assert credentials.disclosure["profile"] == "eu" and "Art. 50" in credentials.disclosure["rules"]
    assert label["text"] == "AI MODIFIED" and label["corner"] == "top-right"
    left, top, right, bottom = _box(label)
    margin = max(2, round(0.4 * label["cap_height_px"]))
    assert right >= width - margin - 1 and top <= margin + 1  # in the top-right corner of the pixels
    assert _is_plate(pixels, (left, top, right, bottom))
    before = load_image(faces_dir / PHOTO).pixels.astype(int)
    changed = np.abs(pixels.astype(int) - before).mean(axis=2)
    assert changed[top:bottom, left:right].mean() > 40  # the plate is there, over the photo
    lower = changed[height - (bottom - top) :, width - (right - left) :]
    assert lower.mean() < 8  # and not in the default bottom-right corner: only the watermark changed it
    assert _pillow_aigc(out) is None and credentials.aigc is None  # the implicit label is cn's

    report = verify_file(out, home=home).to_dict()["profile"]
    assert report["name"] == "eu" and report["meets"] is True, report
    assert {c["check"] for c in report["checks"]} >= {"label corner recorded", "label in the pixels"}


def test_eu_generated_output_says_ai_generated(faces_dir: Path, tmp_path: Path, home) -> None:
    out = tmp_path / "generated.png"
    seal(_unsealed(faces_dir / PHOTO, kind="generated", profile="eu"), out, home=home, record=lambda s: None)
    assert read_credentials(out, home).disclosure["label"]["text"] == "AI GENERATED"


def test_eu_label_that_must_cover_a_face_says_so(faces_dir: Path, tmp_path: Path, home) -> None:
    """The eu profile allows only the top-right corner: a face filling it is covered, and the outcome
    says why (the default profile would have moved the label to another corner)."""
    picture = load_image(faces_dir / PHOTO)
    height, width = picture.pixels.shape[:2]
    face = (width // 2, 0, width, height // 2)  # a face box over the whole top-right quarter

    def sealed_with(profile: str) -> SealedOutput:
        job = SealJob(
            kind="swap",
            purpose="test",
            ingredients=[],
            tools={},
            operator="tester",
            consent_ids=lambda: ["consent-1"],
            label_corner="top-right",
            faces=lambda: [face],
            disclosure_profile=profile,
        )
        out = tmp_path / f"{profile}.png"
        return seal_frames(StillSource(picture.pixels), job, StillSink(out), home=home, record=lambda s: None)

    eu = sealed_with("eu")
    assert any("eu disclosure profile allows only the top-right corner" in n for n in eu.notes), eu.notes
    eu_label = read_credentials(eu.path, home).disclosure["label"]
    assert eu_label["corner"] == "top-right" and eu_label["covers_face"] is True
    default = sealed_with("default")
    assert default.notes == ()
    moved = read_credentials(default.path, home).disclosure["label"]
    assert moved["corner"] != "top-right" and moved["covers_face"] is False


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_cn_still_carries_aigc_metadata_large_text_and_the_manifest_assertion(
    faces_dir: Path, tmp_path: Path, home, suffix: str
) -> None:
    out = tmp_path / f"cn{suffix}"
    sealed = seal(_unsealed(faces_dir / PHOTO, profile="cn"), out, home=home, record=lambda s: None)

    aigc = _pillow_aigc(out)  # the metadata really is in the file, as Pillow reads it
    assert aigc is not None and list(aigc) == AIGC_FIELDS
    assert aigc["Label"] == "1" and aigc["ProduceID"] == sealed.output_id
    assert aigc["ContentProducer"] == "likeness"
    assert aigc["ReservedCode1"] == f"phash:{sealed.phash}"
    assert aigc["ContentPropagator"] == aigc["PropagateID"] == aigc["ReservedCode2"] == ""

    credentials = read_credentials(out, home)
    assert credentials.state == "trusted"  # the metadata went in before signing
    assert credentials.aigc == aigc  # the same JSON as a custom assertion in the manifest
    label = credentials.disclosure["label"]
    assert credentials.disclosure["profile"] == "cn" and label["text"] == "AI合成"

    pixels = load_image(out).pixels
    short = min(pixels.shape[:2])
    assert label["cap_height_px"] >= 0.05 * short and label["shorter_side_px"] == short
    outline = max(1, round(label["cap_height_px"] / 14))
    measured = _text_rows(pixels, _box(label), outline)
    assert measured >= 0.05 * short - 1, (measured, short)  # the glyphs themselves, in the pixels

    report = verify_file(out, home=home)
    profile = report.to_dict()["profile"]
    assert profile["name"] == "cn" and profile["meets"] is True, [c for c in profile["checks"] if not c["ok"]]
    assert profile["aigc"]["in_file"] == aigc == profile["aigc"]["in_manifest"]
    assert "disclosure profile: cn" in report.describe()


@pytest.mark.parametrize(("fmt", "media_type"), [("JPEG", "image/jpeg"), ("PNG", "image/png")])
def test_aigc_metadata_round_trips_any_producer_name_and_leaves_the_pixels(
    faces_dir: Path, tmp_path: Path, fmt: str, media_type: str
) -> None:
    from likeness.disclosure.implicit import aigc_fields, embed_aigc, read_aigc
    from likeness.disclosure.still_sink import decode_bytes, encode

    pixels = load_image(faces_dir / PHOTO).pixels
    path = tmp_path / f"file.{fmt.lower()}"
    path.write_bytes(encode(pixels, fmt))
    before = decode_bytes(path.read_bytes())
    fields = aigc_fields(new_output_id(), 'Studio "Nord" <film> & 北京', "0123456789abcdef")
    embed_aigc(path, media_type, fields)
    assert read_aigc(path) == fields == _pillow_aigc(path)
    assert np.array_equal(decode_bytes(path.read_bytes()), before)  # bytes inserted, pixels untouched


def test_cn_still_with_its_metadata_stripped_no_longer_meets_the_profile(
    faces_dir: Path, tmp_path: Path, home
) -> None:
    out = tmp_path / "cn.jpg"
    seal(_unsealed(faces_dir / PHOTO, profile="cn"), out, home=home, record=lambda s: None)
    data = out.read_bytes()
    at = data.index(b"http://ns.adobe.com/xap/1.0/\x00") - 4  # the APP1 segment holding the XMP
    assert data[at : at + 2] == b"\xff\xe1"
    size = struct.unpack(">H", data[at + 2 : at + 4])[0]
    stripped = tmp_path / "stripped.jpg"
    stripped.write_bytes(data[:at] + data[at + 2 + size :])
    assert _pillow_aigc(stripped) is None

    profile = verify_file(stripped, home=home).to_dict()["profile"]
    assert profile["name"] == "cn" and profile["meets"] is False
    failed = {c["check"] for c in profile["checks"] if not c["ok"]}
    assert failed == {"content credentials valid", "AIGC implicit label in the metadata"}, profile


def test_a_label_that_passes_only_by_the_measuring_tolerance_says_so(
    faces_dir: Path, tmp_path: Path, home
) -> None:
    """The measured text a pixel or two under 5 % passes (re-encoding greys its edges), and the
    check's detail names the tolerance instead of reading "4.9 %; at least 5 %" as ok."""
    out = tmp_path / "eu.jpg"
    seal(_unsealed(faces_dir / PHOTO, profile="eu"), out, home=home, record=lambda s: None)
    report = read_disclosure(out, home=home)
    (plate,) = [p for p in report.plates if p.corner == "top-right"]
    short = min(report.width, report.height)
    full = math.ceil(CAP_FRACTION * short)

    def measured(rows: int) -> ProfileCheck:
        shrunk = dataclasses.replace(report, plates=(dataclasses.replace(plate, text_height=rows),))
        (check,) = [c for c in check_profile(shrunk).checks if c.name == "label text height measured"]
        return check

    assert measured(full).ok and "re-encoding" not in measured(full).detail
    close = measured(full - MEASURE_TOLERANCE_PX)
    assert close.ok and f"less the {MEASURE_TOLERANCE_PX} px" in close.detail, close
    assert not measured(full - MEASURE_TOLERANCE_PX - 2).ok


def test_default_profile_keeps_todays_label(faces_dir: Path, tmp_path: Path, home) -> None:
    out = tmp_path / "default.jpg"
    seal(_unsealed(faces_dir / PHOTO), out, home=home, record=lambda s: None)
    credentials = read_credentials(out, home)
    assert credentials.disclosure["profile"] == "default"
    assert credentials.disclosure["label"]["text"] == "AI-GENERATED"
    assert credentials.disclosure["label"]["corner"] == "bottom-right"
    assert credentials.aigc is None and _pillow_aigc(out) is None
    profile = verify_file(out, home=home).to_dict()["profile"]
    assert profile["name"] == "default" and profile["meets"] is True


# -- footage -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    """3 s at 25 fps, 480×360, one real face drifting right, with AAC audio."""
    a, b = vf.scene_photos(faces_dir)
    folder = tmp_path_factory.mktemp("profile-clip")
    return vf.write_clip(folder / "clip.mp4", vf.Scene(a, b, count=75, b_enters=1000).frames())


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory, clip: Path) -> dict[str, Any]:
    """The clip sealed under the cn and the eu profile, in one home."""
    import dataclasses

    from likeness.disclosure.write import seal_video
    from likeness.home import Home
    from test_video_verify import Registry, record_into, recorded_in, unsealed

    home = Home(tmp_path_factory.mktemp("profile-home") / "home")
    home.ensure()
    made = {"home": home}
    # The same frames, shown from 1.0 s on (a stream that does not start at 0): the label's 2 s
    # count from its first frame.
    frames = [pixels for _, pixels in _frames(clip)]
    late = vf.write_clip(
        clip.parent / "late.mp4",
        frames,
        pts=[25 + i for i in range(75)],
        time_base=Fraction(1, 25),
        audio=None,
    )
    with Registry.open(home) as registry:
        for name, profile, source in (("cn", "cn", clip), ("eu", "eu", clip), ("late", "cn", late)):
            out = clip.parent / f"{name}-sealed.mp4"
            made[name] = seal_video(
                dataclasses.replace(unsealed(source), disclosure_profile=profile),
                out,
                home=home,
                record=record_into(registry),
                recorded_sha256=recorded_in(registry),
            )
    return made


def _frames(path: Path) -> list[tuple[float, np.ndarray]]:
    import av

    with av.open(str(path)) as container:
        return [(float(f.time), f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


@pytest.mark.parametrize("profile", ["cn", "eu"])
def test_footage_start_label_shows_for_the_first_two_seconds_then_only_the_corner_label(
    footage: dict[str, Any], profile: str
) -> None:
    video = footage[profile]
    credentials = read_credentials(video.output.path, footage["home"])
    facts = credentials.disclosure
    start, corner = facts["start_label"], facts["label"]
    assert start["seconds"] >= 2.0 and start["cap_height_px"] > corner["cap_height_px"]  # larger
    assert start["covers_face"] is False and video.output.notes == ()
    if profile == "eu":
        assert corner["corner"] == "top-right" and start["text"] == corner["text"] == "AI MODIFIED"
    frames = _frames(video.output.path)
    early = [pixels for time, pixels in frames if time < 2.0]  # 0.00 … 1.96 s
    late = [pixels for time, pixels in frames if time >= 2.0]  # 2.00 … 2.96 s
    assert len(early) == 50 and len(late) == 25
    assert all(_is_plate(p, _box(start)) for p in early)
    assert not any(_is_plate(p, _box(start)) for p in late)
    assert all(_is_plate(p, _box(corner)) for p in early + late)  # the corner label stays throughout


def test_footage_that_starts_after_zero_gets_the_start_label_for_its_own_first_two_seconds(
    footage: dict[str, Any],
) -> None:
    video = footage["late"]
    start = _box(read_credentials(video.output.path, footage["home"]).disclosure["start_label"])
    frames = _frames(video.output.path)
    assert frames[0][0] == pytest.approx(1.0)
    assert all(_is_plate(p, start) for time, p in frames if time < 3.0)  # 1.00 … 2.96 s: 50 frames
    assert not any(_is_plate(p, start) for time, p in frames if time >= 3.0)


def test_footage_cn_carries_aigc_in_the_mp4_metadata_and_verify_reports_the_profile(
    footage: dict[str, Any],
) -> None:
    import av

    video = footage["cn"]
    with av.open(str(video.output.path), options={"export_xmp": "1"}) as container:
        xmp = container.metadata.get("xmp")  # the XMP uuid box, as FFmpeg's MP4 demuxer exports it
    assert xmp, "no XMP in the MP4"
    aigc = _aigc_of_xmp(xmp)
    assert aigc["Label"] == "1" and aigc["ProduceID"] == video.output.output_id
    credentials = read_credentials(video.output.path, footage["home"])
    assert credentials.state == "trusted" and credentials.aigc == aigc

    report = verify_file(video.output.path, home=footage["home"])
    profile = report.to_dict()["profile"]
    assert profile["name"] == "cn" and profile["meets"] is True, [c for c in profile["checks"] if not c["ok"]]
    assert {c["check"] for c in profile["checks"]} >= {
        "start label recorded",
        "start label in the pixels",
        "label in the pixels",
        "AIGC implicit label in the metadata",
        "AIGC matches the manifest",
        "AIGC names the output",
        "AIGC bound to this picture",
    }
    eu = verify_file(footage["eu"].output.path, home=footage["home"]).to_dict()["profile"]
    assert eu["name"] == "eu" and eu["meets"] is True and eu["aigc"]["in_file"] is None


def test_footage_whose_start_label_was_painted_out_no_longer_meets_its_profile(
    footage: dict[str, Any], clip: Path
) -> None:
    """The start label painted over with the original pixels, the clip re-encoded (which drops the
    credentials): verify finds the output by its watermark, takes the profile from the ledger, and
    sees no start label where it was drawn, while the corner label is still there."""
    video = footage["eu"]
    box = _box(read_credentials(video.output.path, footage["home"]).disclosure["start_label"])
    left, top, right, bottom = box
    originals = [pixels for _, pixels in _frames(clip)]
    frames = []
    for (time, pixels), original in zip(_frames(video.output.path), originals, strict=True):
        if time < 2.5:
            pixels = pixels.copy()
            pixels[top:bottom, left:right] = original[top:bottom, left:right]
        frames.append(pixels)
    copy = vf.write_clip(clip.parent / "painted-out.mp4", frames, audio=None)

    report = verify_file(copy, home=footage["home"]).to_dict()
    assert report["ledger"]["output_id"] == video.output.output_id
    profile = report["profile"]
    assert profile["name"] == "eu" and profile["source"] == "the output's signed ledger entry", profile
    ok = {c["check"]: c["ok"] for c in profile["checks"]}
    assert ok["start label recorded"] and ok["label in the pixels"], profile
    assert ok["machine-readable marking"], profile
    assert {name for name, passed in ok.items() if not passed} == {
        "content credentials present",
        "start label in the pixels",
    }, profile
    own = verify_file(video.output.path, home=footage["home"]).to_dict()["profile"]
    assert {c["check"]: c["ok"] for c in own["checks"]}["start label in the pixels"] is True


def _cn_footage_job(faces: Callable[[], list[tuple[int, int, int, int]]]) -> SealJob:
    return SealJob(
        kind="swap",
        purpose="test",
        ingredients=[],
        tools={},
        operator="tester",
        consent_ids=lambda: [],
        faces=faces,
        disclosure_profile="cn",
    )


def test_resumed_footage_records_the_start_label_an_earlier_run_drew(faces_dir: Path) -> None:
    """A footage job resumed after its first 2 s draws no start label itself; its manifest still
    records the one its earlier run drew, in the same place."""
    from likeness.disclosure.seal import Marker

    pixels = vf.resize(load_image(faces_dir / PHOTO).pixels, 640, 360)
    job = _cn_footage_job(lambda: [(250, 40, 420, 230)])
    output_id = new_output_id()
    first = Marker(output_id, job, 4.5, footage=True)
    drawn = first.label(pixels, 0.0)
    resumed = Marker(output_id, job, 4.5, footage=True)
    later = resumed.label(pixels, 2.5)
    assert first.facts()["start_label"] == resumed.facts()["start_label"] is not None
    start = _box(first.facts()["start_label"])
    assert _is_plate(drawn, start) and not _is_plate(later, start)
    assert not _overlaps(start, (250, 40, 420, 230))  # the start label avoids the face
    assert first.facts()["start_label"]["covers_face"] is False and first.notes() == ()
    still = Marker(output_id, job, 3.0)  # a still never gets a start label
    still.label(pixels, 0.0)
    assert still.facts()["start_label"] is None


def test_a_resumed_job_places_its_labels_where_the_first_run_did_though_the_faces_moved(
    faces_dir: Path,
) -> None:
    """A resumed footage job sees other faces than its first run did (someone walked in): from the
    first run's checkpoint it places the corner label and records the start label where they were
    drawn; built without it, it would have placed both elsewhere."""
    from likeness.disclosure.seal import Marker

    pixels = vf.resize(load_image(faces_dir / PHOTO).pixels, 640, 360)
    seen = [[(250, 40, 420, 230)]]
    job = _cn_footage_job(lambda: seen[0])
    output_id = new_output_id()
    first = Marker(output_id, job, 4.5, footage=True)
    drawn = first.label(pixels, 0.0)
    state = json.loads(json.dumps(first.checkpoint()))  # as the job folder stores it
    seen[0] = [(200, 180, 440, 360), (450, 170, 640, 360)]  # now faces at the bottom and bottom right

    resumed = Marker(output_id, job, 4.5, footage=True, resumed=state)
    later = resumed.label(pixels, 2.5)
    assert resumed.facts()["label"] == first.facts()["label"]
    assert resumed.facts()["start_label"] == first.facts()["start_label"] is not None
    left, top, right, bottom = _box(first.facts()["label"])
    assert np.array_equal(later[top:bottom, left:right], drawn[top:bottom, left:right])
    assert resumed.notes() == first.notes() == ()

    unaware = Marker(output_id, job, 4.5, footage=True)  # no checkpoint: placed from the faces seen now
    unaware.label(pixels, 2.5)
    assert unaware.facts()["label"] != first.facts()["label"]
    assert unaware.facts()["start_label"] != first.facts()["start_label"]

    # Killed after its last segment (during mux, self-check or signing): the rerun has no frame to
    # label, and its manifest still states the labels as drawn.
    idle = Marker(output_id, job, 4.5, footage=True, resumed=json.loads(json.dumps(resumed.checkpoint())))
    assert idle.facts() == first.facts() and idle.notes() == first.notes()
    assert Marker(output_id, job, 4.5, footage=True).facts()["label"] is None  # what it was without


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# -- the CLI -----------------------------------------------------------------------------------------
def _run(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--home", str(home), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", ["swap", "generate"])
def test_bad_profile_name_is_exit_2_with_a_clear_message(tmp_path: Path, command: str) -> None:
    args = {
        "swap": ["swap", "--source", "a.jpg", "--target", "b.jpg", "--purpose", "education"],
        "generate": ["generate", "--model", "m", "--prompt", "a cat", "--purpose", "education"],
    }[command]
    code, out, err = _run(
        tmp_path / "home", *args, "--out", str(tmp_path / "o.jpg"), "--disclosure-profile", "us"
    )
    assert code == 2, (out, err)
    assert "unknown disclosure profile 'us'" in err and "default, eu, cn" in err
    assert not (tmp_path / "o.jpg").exists()


@pytest.mark.parametrize(
    ("profile", "option", "expected"),
    [
        ("eu", ["--label-corner", "bottom-left"], "puts the label top-right, not bottom-left"),
        ("eu", ["--label-language", "de"], "sets the label's own wording"),
        ("cn", ["--label-language", "fr"], "sets the label's own wording"),
    ],
)
def test_a_label_option_the_profile_would_override_is_exit_2(
    tmp_path: Path, profile: str, option: list[str], expected: str
) -> None:
    code, out, err = _run(
        tmp_path / "home",
        *("swap", "--source", "a.jpg", "--target", "b.jpg", "--purpose", "education"),
        *("--out", str(tmp_path / "o.jpg"), "--disclosure-profile", profile, *option),
    )
    assert code == 2, (out, err)
    assert expected in err
    assert not (tmp_path / "o.jpg").exists()


def test_a_label_option_the_profile_allows_is_not_refused(tmp_path: Path) -> None:
    """top-right is the eu profile's own corner: the job goes on (and stops at the missing source)."""
    code, _out, err = _run(
        tmp_path / "home",
        *("swap", "--source", str(tmp_path / "a.jpg"), "--target", str(tmp_path / "b.jpg")),
        *("--purpose", "education", "--out", str(tmp_path / "o.jpg")),
        *("--disclosure-profile", "eu", "--label-corner", "top-right"),
    )
    assert "disclosure profile" not in err, err
    assert code == 4 and "a.jpg" in err, (code, err)


@pytest.fixture(scope="module")
def cn_home(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    """A home whose policy defaults to the cn profile, with a consenting source and target."""
    home = tmp_path_factory.mktemp("cn-policy") / "home"
    home.mkdir()
    text = (Path(__file__).parents[1] / "consent" / "policy.toml").read_text(encoding="utf-8")
    (home / "policy.toml").write_text(text.replace('default_profile = "default"', 'default_profile = "cn"'))
    for name, photos, role in (
        ("Barack Obama", ["obama/1.jpg", "obama/2.jpg"], "source"),
        ("Joe Biden", ["biden/2.jpg"], "target"),
    ):
        args = ["identity", "add", name, "--json"]
        for photo in photos:
            args += ["--photo", str(faces_dir / photo)]
        code, out, err = _run(home, *args)
        assert code == 0, err
        identity = json.loads(out)["id"]
        code, out, err = _run(
            home,
            *("consent", "grant", identity, "--purpose", "education", "--role", role, "--until", UNTIL),
            *("--uses", "Test of disclosure profiles: face replacement in a single still for the suite"),
        )
        assert code == 0, err
    return home


def test_cli_swap_takes_the_policy_default_and_the_option_overrides_it(
    cn_home: Path, faces_dir: Path, tmp_path: Path
) -> None:
    swap = ["swap", "--source", str(faces_dir / "obama/3.jpg"), "--target", str(faces_dir / "biden/1.jpg")]
    made = {}
    for name, extra in (("policy", []), ("eu", ["--disclosure-profile", "eu"])):
        out = tmp_path / f"{name}.jpg"
        code, stdout, err = _run(
            cn_home, *swap, "--purpose", "education", "--out", str(out), *extra, "--json"
        )
        assert code == 0, err
        made[name] = json.loads(stdout)
        code, stdout, err = _run(cn_home, "verify", str(out), "--json")
        assert code == 0, err
        made[name]["verify"] = json.loads(stdout)
    by_policy = made["policy"]["verify"]["profile"]
    assert by_policy["name"] == "cn" and by_policy["meets"] is True
    assert by_policy["aigc"]["in_file"]["ProduceID"] == made["policy"]["output_id"]
    assert _pillow_aigc(tmp_path / "policy.jpg") is not None
    asked = made["eu"]["verify"]["profile"]
    assert (
        asked["name"] == "eu"
        and asked["meets"] is True
        and asked["recorded"]["label"]["corner"] == "top-right"
    )
    assert _pillow_aigc(tmp_path / "eu.jpg") is None


def test_a_stripped_copy_is_judged_against_the_profile_its_signed_ledger_entry_states(
    cn_home: Path, faces_dir: Path, tmp_path: Path
) -> None:
    """A copy re-encoded without any metadata has no manifest to name its profile: verify finds the
    output in the ledger (watermark) and judges the copy against the profile that output's signed
    entry states. A forged entry (payload edited in the database) states nothing."""
    swap = ["swap", "--source", str(faces_dir / "obama/3.jpg"), "--target", str(faces_dir / "biden/1.jpg")]
    verdicts = {}
    for profile in ("cn", "eu"):
        out = tmp_path / f"{profile}.jpg"
        code, stdout, err = _run(
            cn_home, *swap, "--purpose", "education", "--out", str(out), "--disclosure-profile", profile
        )
        assert code == 0, err
        stripped = tmp_path / f"{profile}-stripped.jpg"
        Image.fromarray(load_image(out).pixels).save(stripped, quality=90)  # no XMP, no manifest
        code, stdout, err = _run(cn_home, "verify", str(stripped), "--json")
        assert code == 0, err
        verdicts[profile] = json.loads(stdout)
        report = verdicts[profile]["profile"]
        assert report["name"] == profile and report["source"] == "the output's signed ledger entry", report
        assert report["meets"] is False
        ok = {c["check"]: c["ok"] for c in report["checks"]}
        assert ok["content credentials present"] is False
        assert ok["machine-readable marking"] is True and ok["label in the pixels"] is True, report
        assert ok["label text height measured"] is True
        failed = {name for name, passed in ok.items() if not passed}
        expected = {"content credentials present"} | (
            {"AIGC implicit label in the metadata"} if profile == "cn" else set()
        )
        assert failed == expected, report
    assert verdicts["eu"]["profile"]["recorded"]["label"]["corner"] == "top-right"
    code, stdout, err = _run(cn_home, "verify", str(tmp_path / "eu-stripped.jpg"))
    assert "stated by the output's signed ledger entry" in stdout and "NO LONGER MEETS IT" in stdout

    output_id = verdicts["eu"]["ledger"]["output_id"]
    forged_home = shutil.copytree(cn_home, tmp_path / "forged-home")  # the module's home stays intact
    home = Home(forged_home)
    with sqlite3.connect(home.db_path) as conn:  # what an attacker does: edit the entry, not re-sign it
        (seq, payload) = conn.execute(
            "SELECT seq, payload FROM ledger WHERE kind = 'output' AND payload LIKE ?", (f"%{output_id}%",)
        ).fetchone()
        forged = json.loads(payload)
        forged["disclosure"]["profile"] = "default"
        conn.execute("UPDATE ledger SET payload = ? WHERE seq = ?", (json.dumps(forged), seq))
    code, stdout, err = _run(forged_home, "verify", str(tmp_path / "eu-stripped.jpg"), "--json")
    assert code == 0, err
    report = json.loads(stdout)["profile"]
    assert report["name"] is None and report["note"] == "no content credentials", report


def test_a_batch_job_takes_the_same_option_and_a_bad_one_stops_the_file_before_any_job(
    tmp_path: Path,
) -> None:
    from likeness.jobs.batch_file import read_jobs

    def jobs_file(profile: str) -> Path:
        path = tmp_path / f"{profile}.jsonl"
        lines = [
            {"kind": "swap", "source": "a.jpg", "target": "b.jpg", "purpose": "film", "out": "x.jpg"},
            {
                "kind": "swap",
                "source": "a.jpg",
                "target": "b.jpg",
                "purpose": "film",
                "out": "y.jpg",
                "disclosure-profile": profile,
            },
        ]
        path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
        return path

    first, second = read_jobs(jobs_file("CN"))
    assert "disclosure_profile" not in first.options and second.options["disclosure_profile"] == "cn"
    with pytest.raises(UsageError, match=r"us\.jsonl:2: job 2: unknown disclosure profile 'us'"):
        read_jobs(jobs_file("us"))
    code, _, err = _run(tmp_path / "home", "batch", str(jobs_file("us")))
    assert code == 2 and "unknown disclosure profile 'us'" in err
    assert not (tmp_path / "us.jsonl.results.jsonl").exists(), "nothing ran"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("label_corner", "top-left", r"puts the label top-right, not top-left"),
        ("label_language", "de", r"sets the label's own wording; label_language de does not apply"),
    ],
)
def test_a_batch_job_whose_label_choice_its_profile_would_override_is_refused_as_on_the_command_line(
    tmp_path: Path, key: str, value: str, message: str
) -> None:
    from likeness.jobs.batch_file import read_jobs

    path = tmp_path / "jobs.jsonl"
    job = {"kind": "swap", "source": "a.jpg", "target": "b.jpg", "purpose": "film", "out": "x.jpg"}
    path.write_text(json.dumps({**job, "disclosure_profile": "eu", key: value}) + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"jobs\.jsonl:1: job 1: the eu disclosure profile " + message):
        read_jobs(path)
    path.write_text(json.dumps({**job, "disclosure_profile": "default", key: value}) + "\n", encoding="utf-8")
    (only,) = read_jobs(path)  # the default profile takes the choice
    assert only.options[key] == value
