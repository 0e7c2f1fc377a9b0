"""`likeness verify` on a real consented swap and on what the internet does to it: the original
reads as made here (C2PA trusted, watermark and ledger agree); a flipped byte reads TAMPERED; a
metadata-stripped copy is still found by its watermark, a heavily shrunk one (watermark gone) by its
perceptual hash; the untouched target photo and clean photos are not taken for outputs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from likeness.cli import main
from likeness.consent.registry import Registry
from likeness.disclosure.phash import MAX_DISTANCE
from likeness.disclosure.read import ingredient_role, ledger_matches_by_phash
from likeness.home import Home
from likeness.jobs.enrol import enrol_identity
from likeness.jobs.requests import EnrolRequest, SwapRequest
from likeness.jobs.road import swap_image
from likeness.jobs.verify import verify_file
from likeness.media.image import load_image

SOURCE, TARGET = "obama/3.jpg", "biden/1.jpg"
CLEAN = [
    "obama/1.jpg",
    "biden/2.jpg",
    "John_Simm/1.jpg",
    "kit_harington/2.jpg",
    "rose_leslie/2.jpg",
    "deepface_person_05/2.jpg",
    "alex_lacamoire/1.png",
    "_multi/couple.jpg",
    "_hard/lowlight_voc_2008_001009.jpg",
    "_noface/landscape_view.jpg",
]


def _consenting_home(root: Path, faces_dir: Path, uses: str) -> Home:
    """A home where Obama (source) and Biden (target) consented to research."""
    home = Home(root / "home").ensure()
    for name, photos, role in (
        ("Barack Obama", ["obama/1.jpg", "obama/2.jpg"], "source"),
        ("Joe Biden", ["biden/2.jpg"], "target"),
    ):
        identity = enrol_identity(
            EnrolRequest(name=name, photos=[faces_dir / p for p in photos], operator="verifier"), home=home
        )
        with Registry.open(home) as registry:
            registry.grant(
                identity.id,
                purposes=["research"],
                roles=[role],
                valid_until=dt.date.today() + dt.timedelta(days=60),
                uses=uses,
                operator="verifier",
            )
    return home


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> dict:
    """A home where Obama (source) and Biden (target) consented to research; one swap made in it."""
    root = tmp_path_factory.mktemp("verify")
    home = _consenting_home(
        root, faces_dir, "Test of likeness verify: one face replacement in a single still"
    )
    out = root / "swap.jpg"
    outcome = swap_image(
        SwapRequest(
            source=faces_dir / SOURCE,
            target=faces_dir / TARGET,
            purpose="research",
            out=out,
            operator="verifier",
        ),
        home=home,
    )
    return {"home": home, "out": out, "outcome": outcome, "root": root}


def _copy(made: dict, name: str) -> Path:
    path = made["root"] / name
    shutil.copyfile(made["out"], path)
    return path


def _save(pixels: np.ndarray, path: Path, quality: int) -> Path:
    Image.fromarray(pixels).save(path, "JPEG", quality=quality)  # a fresh file: no metadata at all
    return path


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_an_output_reads_as_made_here_in_words_and_json(made: dict) -> None:
    outcome = made["outcome"]
    runner = CliRunner()
    result = runner.invoke(main, ["--home", str(made["home"].root), "verify", str(made["out"]), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "synthetic"
    assert data["watermark"] == {**data["watermark"], "found": True, "output_id": outcome.output_id}
    assert data["c2pa"]["state"] == "trusted" and data["c2pa"]["reasons"] == []
    assert data["c2pa"]["output_id"] == outcome.output_id
    assert data["c2pa"]["digital_source_type"].endswith("/compositeWithTrainedAlgorithmicMedia")
    assert sorted(data["c2pa"]["consent_ids"]) == sorted(outcome.consents)
    assert {i["role"] for i in data["c2pa"]["ingredients"]} == {"source", "target"}
    assert data["ledger"]["found"] and data["ledger"]["matched_by"] == "watermark"
    assert data["ledger"]["operator"] == "verifier" and data["ledger"]["output_id"] == outcome.output_id
    assert sorted(data["ledger"]["consent_ids"]) == sorted(outcome.consents)
    assert data["label"]["detected"] is True
    assert (
        "watermark and ledger agree" in data["verdict"] and "content credentials trusted" in data["verdict"]
    )

    words = runner.invoke(main, ["--home", str(made["home"].root), "verify", str(made["out"])])
    assert words.exit_code == 0
    assert words.stdout.splitlines()[0].endswith(data["verdict"])
    assert "content credentials (C2PA): trusted" in words.stdout
    assert f"watermark: output id {outcome.output_id}" in words.stdout
    assert "by verifier for research" in words.stdout


def test_the_manifest_soft_binds_the_watermark_and_verify_cross_checks_it(made: dict) -> None:
    """C2PA 2.x: a c2pa.soft-binding assertion names likeness's watermark algorithm and the id, with a
    c2pa.watermarked action; verify checks the id read from the pixels against it."""
    from likeness.disclosure.credentials import WATERMARK_ALG

    report = verify_file(made["out"], home=made["home"])
    c2pa = report.disclosure.c2pa
    assert "c2pa.watermarked" in c2pa.actions
    assert c2pa.soft_binding == {"alg": WATERMARK_ALG, "values": [made["outcome"].output_id]}
    assert report.to_dict()["soft_binding"] == {
        "alg": WATERMARK_ALG,
        "output_ids": [made["outcome"].output_id],
        "watermark_agrees": True,
    }
    assert "the watermark reads the same id" in report.describe()


def test_a_flipped_byte_reads_tampered(made: dict) -> None:
    path = _copy(made, "tampered.jpg")
    data = bytearray(path.read_bytes())
    index = next(i for i in range(data.rindex(b"\xff\xda") + 200, len(data)) if data[i] < 0xF0)
    data[index] ^= 0x01
    path.write_bytes(bytes(data))

    report = verify_file(path, home=made["home"])
    assert report.status == "tampered"
    assert report.disclosure.c2pa.state == "invalid"
    assert "assertion.dataHash.mismatch" in report.disclosure.c2pa.reasons
    assert report.verdict.startswith("tampered — the content credentials are INVALID (")
    assert "assertion.dataHash.mismatch" in report.verdict
    if report.disclosure.watermark.found:  # one flipped bit rarely breaks the mark
        assert report.ledger["found"] and report.ledger["output_id"] == made["outcome"].output_id
    assert "INVALID" in report.describe()


def test_a_metadata_stripped_copy_is_found_by_its_watermark(made: dict) -> None:
    path = _save(_pixels(made["out"]), made["root"] / "stripped.jpg", quality=85)
    report = verify_file(path, home=made["home"])
    assert report.disclosure.c2pa.state == "absent"
    assert report.disclosure.watermark.output_id == made["outcome"].output_id
    assert report.ledger["found"] and report.ledger["matched_by"] == "watermark"
    assert report.status == "synthetic" and "watermark and ledger agree" in report.verdict


def _same_apart_from_the_name(report, right) -> None:
    """``report`` (a file under a wrong name) reads exactly as ``right`` (the same bytes, rightly named)."""
    data, expected = report.to_dict(), right.to_dict()
    for item in (data, expected):
        item["file"].pop("path")
    assert data == expected
    words = report.describe().replace(str(report.file), "FILE")
    assert words == right.describe().replace(str(right.file), "FILE")


@pytest.mark.parametrize(("name", "fmt"), [("as.mp4", "JPEG"), ("as.mov", "JPEG"), ("png_as.mov", "PNG")])
def test_a_stripped_still_named_like_a_video_reads_as_the_still_it_is(
    made: dict, name: str, fmt: str
) -> None:
    """Renaming must not hide a disclosure: the video reader refuses a still, so the still reader reads it."""
    pixels = _pixels(made["out"])
    right = made["root"] / f"right_{name}.{fmt.lower()}"
    Image.fromarray(pixels).save(right, fmt, **({"quality": 90} if fmt == "JPEG" else {}))  # no C2PA
    wrong = made["root"] / name
    shutil.copyfile(right, wrong)
    report = verify_file(wrong, home=made["home"])
    assert report.disclosure.unreadable is None and report.disclosure.format == fmt
    assert report.disclosure.watermark.output_id == made["outcome"].output_id
    assert report.disclosure.label_detected and report.disclosure.c2pa.state == "absent"
    assert report.ledger["found"] and report.ledger["matched_by"] == "watermark"
    assert report.status == "synthetic" and "watermark and ledger agree" in report.verdict
    _same_apart_from_the_name(report, verify_file(right, home=made["home"]))


def test_a_signed_still_named_like_a_video_reads_its_watermark_and_its_credentials(made: dict) -> None:
    report = verify_file(_copy(made, "signed_as.mp4"), home=made["home"])
    assert report.disclosure.unreadable is None
    assert report.disclosure.watermark.output_id == made["outcome"].output_id
    assert report.disclosure.c2pa.state == "trusted"
    assert "watermark and ledger agree" in report.verdict and "content credentials trusted" in report.verdict
    _same_apart_from_the_name(report, verify_file(made["out"], home=made["home"]))


def test_a_damaged_still_named_like_a_video_says_what_is_wrong_with_the_still(made: dict) -> None:
    """Neither reader decodes it: the reason given is the still reader's (it is a still), not
    the video reader's "is a still image"."""
    data = _save(_pixels(made["out"]), made["root"] / "cut_src.jpg", 90).read_bytes()
    cut = made["root"] / "cut_as.mp4"
    cut.write_bytes(data[: len(data) // 2])
    report = verify_file(cut, home=made["home"])
    assert report.disclosure.unreadable and "truncated" in report.disclosure.unreadable
    assert "not a video" not in report.disclosure.unreadable
    assert report.status == "none" and "could not be decoded" in report.verdict


def _shrink(pixels: np.ndarray) -> np.ndarray:
    h, w = pixels.shape[:2]
    return np.asarray(
        Image.fromarray(pixels).resize((round(w * 0.12), round(h * 0.12)), Image.Resampling.BILINEAR)
    )


def _rotate(pixels: np.ndarray) -> np.ndarray:
    import cv2

    h, w = pixels.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 2.0, 1.0)
    return cv2.warpAffine(pixels, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)


def test_a_heavily_edited_copy_is_found_by_perceptual_hash(made: dict) -> None:
    path = _save(np.ascontiguousarray(_shrink(_pixels(made["out"]))), made["root"] / "edited.jpg", 40)
    report = verify_file(path, home=made["home"])
    assert not report.disclosure.watermark.found  # the edit broke the watermark …
    assert report.disclosure.c2pa.state == "absent"  # … and the metadata is gone
    assert report.ledger["found"] and report.ledger["matched_by"] == "perceptual hash"
    assert report.ledger["output_id"] == made["outcome"].output_id
    assert report.ledger["phash_distance"] <= MAX_DISTANCE == report.ledger["phash_threshold"]
    assert report.status == "probably-synthetic" and report.verdict.startswith("probably synthetic")
    assert "perceptual hash" in report.describe()


def test_a_rotated_recompressed_copy_is_found_by_its_watermark(made: dict) -> None:
    """Rotation is searched by the decoder (it used to break the mark and leave the perceptual hash)."""
    path = _save(np.ascontiguousarray(_rotate(_pixels(made["out"]))), made["root"] / "rotated.jpg", 60)
    report = verify_file(path, home=made["home"])
    assert report.disclosure.c2pa.state == "absent"
    assert report.disclosure.watermark.output_id == made["outcome"].output_id
    assert report.ledger["found"] and report.ledger["matched_by"] == "watermark"
    assert report.status == "synthetic"


def test_the_untouched_target_photo_is_not_taken_for_the_output(made: dict, faces_dir: Path) -> None:
    report = verify_file(faces_dir / TARGET, home=made["home"])
    assert report.status == "none" and not report.ledger["found"]
    assert report.ledger["ingredient_of"]["output_id"] == made["outcome"].output_id
    assert report.ledger["ingredient_of"]["role"] == "target"
    assert report.verdict.startswith("no likeness disclosure found — this is the unmodified target picture")


def test_clean_photos_find_nothing(made: dict, faces_dir: Path) -> None:
    for photo in CLEAN:
        report = verify_file(faces_dir / photo, home=made["home"])
        assert not report.disclosure.watermark.found, photo
        assert report.disclosure.c2pa.state == "absent", photo
        assert not report.ledger["found"] and "ingredient_of" not in report.ledger, photo
        assert report.status == "none", photo
        assert report.verdict == "no likeness disclosure found (this does not prove the file is authentic)"


def test_a_small_screenshot_in_a_frame_is_matched_inside_the_frame(made: dict) -> None:
    from likeness.disclosure.phash import hamming, phash

    small = _shrink(_pixels(made["out"]))  # too small for the watermark
    canvas = np.full((small.shape[0] + 90, small.shape[1] + 60, 3), 236, np.uint8)
    canvas[60 : 60 + small.shape[0], 30 : 30 + small.shape[1]] = small
    path = made["root"] / "screenshot.png"
    Image.fromarray(canvas).save(path, "PNG")
    stored = verify_file(made["out"], home=made["home"]).ledger["phash"]
    assert hamming(phash(canvas), stored) > MAX_DISTANCE  # the frame alone would hide it

    report = verify_file(path, home=made["home"])
    assert report.ledger["found"] and report.ledger["output_id"] == made["outcome"].output_id
    wm = report.disclosure.watermark
    assert not wm.found or wm.output_id == made["outcome"].output_id  # a read, if any, is right
    # Whatever the watermark did, the trimmed-frame hash alone finds the output.
    with Registry.open(made["home"]) as registry:
        matches = ledger_matches_by_phash(registry, list(report.disclosure.phash_variants))
    assert [record.output_id for record, _ in matches] == [made["outcome"].output_id]


def _flip(phash: str, bits: int) -> str:
    """``phash`` with its lowest ``bits`` bits inverted: exactly ``bits`` away."""
    return f"{int(phash, 16) ^ ((1 << bits) - 1):016x}"


def test_ledger_matches_by_phash_keeps_each_output_once_at_its_nearest(made: dict) -> None:
    with Registry.open(made["home"]) as registry:
        output = registry.get_output(made["outcome"].output_id)
        assert output is not None and output.phash
        far, near = _flip(output.phash, MAX_DISTANCE + 1), _flip(output.phash, 3)
        assert ledger_matches_by_phash(registry, [far]) == []
        assert ledger_matches_by_phash(registry, [far, near, near]) == [(output, 3)]
        assert ledger_matches_by_phash(registry, [near, output.phash]) == [(output, 0)]
        assert ledger_matches_by_phash(registry, [far], max_distance=MAX_DISTANCE + 1) == [
            (output, MAX_DISTANCE + 1)
        ]
        assert ledger_matches_by_phash(registry, []) == []


def test_ingredient_role_reads_the_recorded_input_hashes(made: dict, faces_dir: Path) -> None:
    """The registry's input hashes answer without the output file; outputs recorded without them
    (registry schema version 1) fall back to the credentials of the output file, if it is still there."""
    with Registry.open(made["home"]) as registry:
        output = registry.get_output(made["outcome"].output_id)
    target = load_image(faces_dir / TARGET).sha256
    file_gone = dataclasses.replace(
        output, path=None, ingredient_sha256={"source": "ab" * 32, "target": target}
    )
    assert ingredient_role(file_gone, target.upper(), made["home"]) == "target"
    assert ingredient_role(file_gone, "cd" * 32, made["home"]) is None
    recorded_without_target = dataclasses.replace(output, ingredient_sha256={"source": "ab" * 32})
    assert ingredient_role(recorded_without_target, target, made["home"]) is None  # the record decides
    legacy = dataclasses.replace(output, ingredient_sha256={})
    assert ingredient_role(legacy, target, made["home"]) == "target"  # from the output's C2PA manifest
    assert ingredient_role(dataclasses.replace(legacy, path=None), target, made["home"]) is None


def test_a_swap_records_the_hashes_of_its_inputs(made: dict, faces_dir: Path) -> None:
    with Registry.open(made["home"]) as registry:
        output = registry.get_output(made["outcome"].output_id)
    assert output.ingredient_sha256 == {
        "source": load_image(faces_dir / SOURCE).sha256,
        "target": load_image(faces_dir / TARGET).sha256,
    }


# -- verify never refuses a file it can partly read ---------------------------------------------------------


def _cli_verify(home: Home, path: Path) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["--home", str(home.root), "verify", str(path), "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_a_truncated_output_reads_as_tampered_not_as_bad_input(made: dict) -> None:
    data = made["out"].read_bytes()
    cut = made["root"] / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    code, report = _cli_verify(made["home"], cut)
    assert code == 0, report
    assert report["status"] == "tampered" and report["c2pa"]["state"] == "invalid"
    assert report["c2pa"]["output_id"] == made["outcome"].output_id
    assert report["unreadable"] and "truncated" in report["unreadable"].lower()
    assert "pixels no longer decode" in report["verdict"]
    words = verify_file(cut, home=made["home"]).describe()
    assert "pixels: could not be decoded" in words and "watermark and the label were not read" in words


def test_an_output_whose_picture_data_is_wiped_reads_as_tampered(made: dict) -> None:
    """c2pa cannot parse a JPEG whose scan data is gone (so the manifest's contents are not shown),
    but the file still reads as what it is: signed content credentials that no longer validate."""
    data = bytearray(made["out"].read_bytes())
    start = data.rfind(b"\xff\xda")  # start of scan: the picture data that follows is wiped
    data[start + 2 :] = b"\x00" * (len(data) - start - 2)
    wiped = made["root"] / "wiped.jpg"
    wiped.write_bytes(bytes(data))
    report = verify_file(wiped, home=made["home"])
    assert report.status == "tampered" and report.disclosure.c2pa.state == "invalid"
    assert report.disclosure.unreadable and "pixels no longer decode" in report.verdict


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.jpg", b""),
        ("text.jpg", b"hello, this is not a picture\n"),
        ("noise.png", bytes(range(256)) * 8),
    ],
)
def test_files_that_do_not_decode_are_reported_not_refused(made: dict, name: str, content: bytes) -> None:
    path = made["root"] / name
    path.write_bytes(content)
    code, report = _cli_verify(made["home"], path)
    assert code == 0, report
    assert report["status"] == "none" and report["unreadable"]
    assert report["c2pa"]["state"] == "absent" and report["watermark"]["found"] is False
    assert report["file"]["sha256"] and "could not be decoded" in report["verdict"]


def test_an_exact_copy_with_undecodable_pixels_is_still_found_in_the_ledger_by_hash(
    made: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the pixels cannot be decoded at all (here: the image limits refuse it), the file's
    hash still finds its ledger record."""
    from likeness.disclosure import read

    def refuse(path, **_):
        from likeness.errors import BadInput

        raise BadInput(f"{path}: too large to decode here")

    monkeypatch.setattr(read, "read_disclosure", refuse)
    report = verify_file(made["out"], home=made["home"])
    assert report.disclosure.unreadable and report.ledger["found"] is True
    assert report.ledger["matched_by"] in ("content credentials", "sha256")
    assert report.status == "synthetic"


def test_a_missing_file_is_still_bad_input(made: dict) -> None:
    missing = made["root"] / "nope.jpg"
    result = CliRunner().invoke(main, ["--home", str(made["home"].root), "verify", str(missing)])
    assert result.exit_code == 4 and "no such file" in result.stderr


@pytest.mark.slow
def test_verify_says_when_an_outputs_consent_was_withdrawn(faces_dir: Path, tmp_path: Path) -> None:
    home = Home(tmp_path / "home").ensure()
    consents = []
    for name, photos, role in (
        ("Barack Obama", ["obama/1.jpg"], "source"),
        ("Joe Biden", ["biden/2.jpg"], "target"),
    ):
        identity = enrol_identity(
            EnrolRequest(name=name, photos=[faces_dir / p for p in photos], operator="v", backend="dlib"),
            home=home,
        )
        with Registry.open(home) as registry:
            consents.append(
                registry.grant(
                    identity.id,
                    purposes=["research"],
                    roles=[role],
                    valid_until=dt.date.today() + dt.timedelta(days=60),
                    uses="Test of likeness verify: one face replacement in a single still",
                    operator="v",
                ).id
            )
    out = tmp_path / "swap.jpg"
    swap_image(
        SwapRequest(
            source=faces_dir / SOURCE, target=faces_dir / TARGET, purpose="research", out=out, operator="v"
        ),
        home=home,
    )
    assert "WITHDRAWN" not in verify_file(out, home=home).verdict
    with Registry.open(home) as registry:
        registry.revoke(consents[1], reason="withdrawn by the rights holder", operator="v")
    report = verify_file(out, home=home)
    assert report.status == "synthetic"
    assert f"consent {consents[1]} was WITHDRAWN on {dt.date.today().isoformat()}" in report.verdict
    assert "withdrawn by the rights holder" in report.verdict and "no longer consents" in report.verdict
    assert [w["consent_id"] for w in report.to_dict()["ledger"]["withdrawn"]] == [consents[1]]
    assert f"consent {consents[1]} withdrawn" in report.describe()


# -- a perceptual-hash match that fits several outputs names none of them ----------------------------------


@pytest.fixture(scope="module")
def takes(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> dict:
    """Three outputs of one scene (Obama on Biden's photo): the same take twice, and one from another
    photo of Obama; their perceptual hashes are within the threshold of each other."""
    root = tmp_path_factory.mktemp("takes")
    home = _consenting_home(root, faces_dir, "Test of likeness verify: several takes of one scene")
    ids = []
    for take, source in enumerate([SOURCE, SOURCE, "obama/1.jpg"]):
        request = SwapRequest(
            source=faces_dir / source,
            target=faces_dir / TARGET,
            purpose="research",
            out=root / f"take{take}.jpg",
            operator="verifier",
        )
        ids.append(swap_image(request, home=home).output_id)
    # a heavily edited copy of the last take: its watermark and metadata are gone
    copy = _save(np.ascontiguousarray(_shrink(_pixels(root / "take2.jpg"))), root / "copy.jpg", 40)
    return {"home": home, "ids": ids, "copy": copy}


def _distances(report, home: Home, ids: list[str]) -> dict[str, int]:
    """Each output's perceptual-hash distance to the file, computed here from the recorded hashes."""
    from likeness.disclosure.phash import hamming

    with Registry.open(home) as registry:
        recorded = {output_id: registry.get_output(output_id).phash for output_id in ids}
    hashes = report.disclosure.phash_variants
    return {output_id: min(hamming(h, value) for h in hashes) for output_id, value in recorded.items()}


def test_a_match_within_the_threshold_of_several_outputs_is_ambiguous(takes: dict) -> None:
    report = verify_file(takes["copy"], home=takes["home"])
    assert not report.disclosure.watermark.found and report.disclosure.c2pa.state == "absent"
    distances = _distances(report, takes["home"], takes["ids"])
    # The takes' hashes differ by a bit or two from run to run (each carries its own watermark id):
    # the order is checked against these distances, whether the copy's own take comes first or ties.
    assert max(distances.values()) <= MAX_DISTANCE, distances
    nearest = sorted(distances.items(), key=lambda item: (item[1], takes["ids"].index(item[0])))
    closest_id, closest = nearest[0]
    ties = sum(1 for _, d in nearest[1:] if d == closest)

    ledger = report.ledger
    assert ledger["found"] and ledger["matched_by"] == "perceptual hash" and ledger["ambiguous"] is True
    assert ledger["phash_match_count"] == 3 and ledger["phash_ties"] == ties
    assert [(m["output_id"], m["phash_distance"]) for m in ledger["phash_matches"]] == nearest
    # still there for --json readers of before: the closest output's fields, the other ids
    assert ledger["output_id"] == closest_id and ledger["phash_distance"] == closest
    assert ledger["other_matches"] == [output_id for output_id, _ in nearest[1:]]
    assert ledger["consent_ids"] and "disclosure" in ledger

    assert report.status == "probably-synthetic"
    tied = f", tied with {ties} other{'s' * (ties != 1)}" if ties else ""
    assert report.verdict.startswith(
        "probably synthetic — no watermark or content credentials, but it looks like 3 outputs made by "
        f"this installation (perceptual hash within the threshold of {MAX_DISTANCE} of 64 bits; closest "
        f"{closest_id} at distance {closest}{tied}): AMBIGUOUS"
    )
    assert "made by this installation on" not in report.verdict  # no one output is named as the origin
    assert report.profile.name is None  # not the profile of one arbitrary output's ledger entry

    words = report.describe()
    assert "under consent(s)" not in words and "found by perceptual hash" not in words
    assert (
        f"ledger: AMBIGUOUS — 3 recorded outputs are within the perceptual-hash threshold ({MAX_DISTANCE})"
        in (words)
    )
    rows = [line.split() for line in words.splitlines() if line.startswith("    lk-")]
    assert [(row[0], int(row[2])) for row in rows] == nearest

    from likeness.webapp.views import disclosure_items

    line = disclosure_items(report)[-1]
    assert line.startswith("Ledger: <b>ambiguous</b> — 3 recorded outputs") and "under consent" not in line
    assert all(f"<code>{i}</code> (distance {d})" in line for i, d in nearest)


def test_the_list_of_ambiguous_matches_is_capped_and_says_how_many_more(
    takes: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from likeness.jobs import verify

    monkeypatch.setattr(verify, "PHASH_MATCHES_LISTED", 2)
    report = verify_file(takes["copy"], home=takes["home"])
    assert report.ledger["phash_match_count"] == 3 and len(report.ledger["phash_matches"]) == 2
    assert len(report.ledger["other_matches"]) == 2  # every other id, as before
    words = report.describe()
    assert sum(line.startswith("    lk-") for line in words.splitlines()) == 2
    assert "    … and 1 more (their ids: --json, ledger.other_matches)" in words


def test_a_match_of_one_output_still_names_it(made: dict) -> None:
    path = _save(np.ascontiguousarray(_shrink(_pixels(made["out"]))), made["root"] / "edited1.jpg", 40)
    report = verify_file(path, home=made["home"])
    assert report.ledger["matched_by"] == "perceptual hash" and report.ledger["ambiguous"] is False
    assert report.ledger["phash_match_count"] == 1 and report.ledger["phash_ties"] == 0
    assert [m["output_id"] for m in report.ledger["phash_matches"]] == [made["outcome"].output_id]
    assert f"looks like output {made['outcome'].output_id} made by this installation" in report.verdict
    assert "found by perceptual hash, distance" in report.describe()


def test_each_ambiguous_match_says_if_a_consent_behind_it_was_withdrawn(takes: dict, tmp_path: Path) -> None:
    home = Home(shutil.copytree(takes["home"].root, tmp_path / "home"))  # the revocation stays in the copy
    with Registry.open(home) as registry:
        consent = registry.get_output(takes["ids"][0]).consent_ids[-1]
        registry.revoke(consent, reason="withdrawn by the rights holder", operator="verifier")
    report = verify_file(takes["copy"], home=home)
    assert report.ambiguous
    for match in report.ledger["phash_matches"]:  # all three takes were made under the same consents
        assert [w["consent_id"] for w in match["withdrawn"]] == [consent]
    rows = [line for line in report.describe().splitlines() if line.startswith("    lk-")]
    assert len(rows) == 3 and all(row.endswith(f"(consent {consent} withdrawn since)") for row in rows)
