"""Generation and face edits under the same gate and disclosure (issue 12).

Tiny random-weight diffusers pipelines are built here (tests/tiny_diffusers.py), saved with
``save_pretrained`` and loaded from the folder by likeness's real loader; IP-Adapter FaceID weights are
random and go through diffusers' public ``load_ip_adapter``. 192×192 (about the smallest size the
visible label fits), 2 steps. The one place the model is replaced is the output gate on real
faces: a stand-in pipeline whose "generated" image is a real photo. No network: HF_HUB_OFFLINE=1,
every load is local_files_only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from likeness.cli import main
from likeness.consent.records import Reference
from likeness.consent.registry import Registry
from likeness.errors import BadInput, ConsentRefused, LicenceRefused, ModelMissing
from likeness.faces.backends import load_analyzer
from likeness.generate.pipeline import load_generator
from likeness.generate.prompt_names import people_named
from likeness.home import Home
from likeness.jobs.enrol import enrol_identity
from likeness.jobs.generation import run_generation
from likeness.jobs.requests import EditRequest, EnrolRequest, GenerateRequest
from likeness.jobs.verify import verify_file
from likeness.media.image import load_image
from tiny_diffusers import build_faceid_weights, build_sd_pipeline

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub (diffusers is imported lazily)
pytest.importorskip("diffusers")

ARCFACE_TEST_SPACE = "arcface_test_000000000000"
SMALL = {"steps": 2, "guidance": 2.0, "seed": 0, "operator": "t"}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("models")
    sd = build_sd_pipeline(root / "tiny-sd", licence="creativeml-openrail-m")
    dev = root / "tiny-flux-dev-licence"
    shutil.copytree(sd, dev)
    (dev / "README.md").write_text(
        "---\nlicense: other\nlicense_name: flux-1-dev-non-commercial-license\n---\n", encoding="utf-8"
    )
    unknown = root / "tiny-no-card"
    shutil.copytree(sd, unknown)
    (unknown / "README.md").unlink()
    inpaint = build_sd_pipeline(root / "tiny-inpaint", licence="creativeml-openrail-m", inpaint=True)
    faceid = build_faceid_weights(root / "faceid" / "ip-adapter-faceid_test.safetensors", sd)
    return SimpleNamespace(sd=sd, dev=dev, unknown=unknown, inpaint=inpaint, faceid=faceid)


def _grant(home: Home, identity_id: str, roles: list[str]) -> str:
    with Registry.open(home) as registry:
        return registry.grant(
            identity_id,
            purposes=["research", "film"],
            roles=roles,
            valid_until=dt.date.today() + dt.timedelta(days=30),
            uses="Test of generation under consent: tiny random models on test photos only",
            operator="t",
        ).id


@pytest.fixture(scope="module")
def cast(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> SimpleNamespace:
    """Obama consents to swaps only; Biden to be generated (and edited); Salley to nothing; Lacamoire
    to be generated but has no ArcFace reference."""
    home = Home(tmp_path_factory.mktemp("generate") / "home").ensure()
    ids = {}
    for key, name, photo in (
        ("obama", "Barack Obama", "obama/1.jpg"),
        ("biden", "Joe Biden", "biden/2.jpg"),
        ("salley", "John Salley", "John_Salley/1.jpg"),
        ("lacamoire", "Alex Lacamoire", "alex_lacamoire/2.jpg"),
    ):
        request = EnrolRequest(name=name, photos=[faces_dir / photo], operator="t", backend="dlib")
        ids[key] = enrol_identity(request, home=home).id
    consents = {
        "obama": _grant(home, ids["obama"], ["source", "target"]),
        "biden": _grant(home, ids["biden"], ["generate", "target"]),
        "lacamoire": _grant(home, ids["lacamoire"], ["generate"]),
    }
    # Biden's ArcFace reference for FaceID (a fixed unit vector standing in for insightface's output).
    vector = np.random.default_rng(7).normal(size=512).astype(np.float32)
    reference = Reference(
        embedding=vector / np.linalg.norm(vector),
        embedding_space=ARCFACE_TEST_SPACE,
        photo_sha256=hashlib.sha256(b"biden arcface").hexdigest(),
    )
    with Registry.open(home) as registry:
        registry.add_references(ids["biden"], [reference], operator="t")
    return SimpleNamespace(home=home, ids=ids, consents=consents)


@pytest.fixture(scope="module")
def dlib(cast: SimpleNamespace):
    return load_analyzer("dlib", cast.home)


def generate(models: SimpleNamespace, out: Path, **changes) -> GenerateRequest:
    fields = {"model": str(models.sd), "prompt": "a quiet harbour at dawn", "purpose": "research", "out": out}
    fields.update(SMALL)
    fields["size"] = (192, 192)
    fields.update(changes)
    return GenerateRequest(**fields)


def _ledger_output(home: Home, output_id: str) -> dict:
    with Registry.open(home) as registry:
        entries = registry.ledger_entries("output")
    return next(entry.payload for entry in entries if entry.payload["output_id"] == output_id)


# -- synthetic people ------------------------------------------------------------------------------------
def test_a_synthetic_image_is_sealed_recorded_and_verifies_as_generated(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, tmp_path: Path
) -> None:
    out = tmp_path / "harbour.png"
    outcome = run_generation(generate(models, out), home=cast.home, analyzer=dlib)

    assert out.is_file() and outcome.kind == "generated" and outcome.consents == []
    for stage in ("load model", "prompt encoding", "denoising", "decoding", "output gate", "sign"):
        assert stage in outcome.timings
    report = verify_file(out, home=cast.home).to_dict()
    c2pa = report["disclosure"]["c2pa"] if "disclosure" in report else report["c2pa"]
    assert c2pa["kind"] == "generated"
    assert c2pa["digital_source_type"].endswith("/trainedAlgorithmicMedia")
    assert report["watermark"]["output_id"] == outcome.output_id if "watermark" in report else True
    generation = c2pa["tools"]["generation"]
    assert generation["prompt_sha256"] == hashlib.sha256(b"a quiet harbour at dawn").hexdigest()
    assert "prompt" not in generation and generation["prompt_text_included"] is False
    assert "creativeml" in json.dumps(c2pa["tools"]["models"]).lower()
    entry = _ledger_output(cast.home, outcome.output_id)
    check = entry["output_check"]
    assert check["ran"] is True and check["embedding_space"] == "dlib_resnet_v1"
    assert check["threshold"] == entry["threshold"] and check["model"]


@pytest.mark.parametrize("profile", ["eu", "cn"])
def test_a_generated_image_takes_its_disclosure_profile(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, tmp_path: Path, profile: str
) -> None:
    out = tmp_path / f"{profile}.png"
    outcome = run_generation(
        generate(models, out, size=(256, 256), disclosure_profile=profile), home=cast.home, analyzer=dlib
    )
    profile_report = verify_file(out, home=cast.home).to_dict()["profile"]
    assert profile_report["name"] == profile and profile_report["meets"] is True, profile_report
    label = profile_report["recorded"]["label"]
    if profile == "eu":
        assert label["text"] == "AI GENERATED" and label["corner"] == "top-right"
        assert profile_report["aigc"]["in_file"] is None
    else:
        assert label["text"] == "AI生成"
        assert profile_report["aigc"]["in_file"]["ProduceID"] == outcome.output_id


def test_the_prompt_text_goes_into_the_manifest_only_when_asked(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, tmp_path: Path
) -> None:
    out = tmp_path / "opt-in.jpg"
    run_generation(generate(models, out, record_prompt=True), home=cast.home, analyzer=dlib)
    report = verify_file(out, home=cast.home).to_dict()
    c2pa = report["disclosure"]["c2pa"] if "disclosure" in report else report["c2pa"]
    assert c2pa["tools"]["generation"]["prompt"] == "a quiet harbour at dawn"


class PhotoPipe:
    """The stand-in model: its "generated" image is a real photo (so the output gate sees real faces)."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels
        self.device = "cpu"

    def __call__(self, **kwargs):
        return SimpleNamespace(images=[self.pixels.astype(np.float32) / 255.0], nsfw_content_detected=None)


def _photo_generator(cast: SimpleNamespace, models: SimpleNamespace, photo: Path):
    generator = load_generator(cast.home, str(models.sd))
    generator.pipe = PhotoPipe(load_image(photo).pixels)
    return generator


def test_a_generated_face_of_an_enrolled_person_without_consent_is_refused_and_nothing_written(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, faces_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "salley.png"
    generator = _photo_generator(cast, models, faces_dir / "John_Salley" / "2.jpg")
    with pytest.raises(ConsentRefused) as refused:
        run_generation(generate(models, out), home=cast.home, analyzer=dlib, generator=generator)
    assert refused.value.exit_code == 3 and refused.value.identity_id == cast.ids["salley"]
    assert refused.value.rule == "no_consent" and "generated image" in refused.value.reason
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_generated_face_of_someone_consented_for_swaps_only_is_refused(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, faces_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "obama.png"
    generator = _photo_generator(cast, models, faces_dir / "obama" / "2.jpg")
    with pytest.raises(ConsentRefused) as refused:
        run_generation(generate(models, out), home=cast.home, analyzer=dlib, generator=generator)
    assert refused.value.rule == "wrong_role" and not out.exists()


def test_a_generated_face_that_matches_no_one_is_recorded_as_synthetic(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, faces_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "stranger.png"
    generator = _photo_generator(cast, models, faces_dir / "John_Savage" / "1.jpg")
    outcome = run_generation(generate(models, out), home=cast.home, analyzer=dlib, generator=generator)
    assert [face["outcome"] for face in outcome.faces] == ["synthetic"]
    check = _ledger_output(cast.home, outcome.output_id)["output_check"]
    assert check["faces"] == 1 and check["synthetic"] == 1 and check["identities_compared"] == 4


def test_likeness_marks_on_top_of_the_sdxl_watermark_and_keeps_it(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, faces_dir: Path, tmp_path: Path
) -> None:
    """SDXL pipelines add invisible-watermark's dwtDct mark (48 fixed bits) when that package is
    installed. likeness keeps it (it is what others look for) and its own mark reads on top of it."""
    from diffusers.pipelines.stable_diffusion_xl.watermark import WATERMARK_BITS
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", WATERMARK_BITS)
    import cv2

    photo = cv2.resize(
        load_image(faces_dir / "John_Savage" / "1.jpg").pixels, (384, 384), interpolation=cv2.INTER_CUBIC
    )
    marked = encoder.encode(np.ascontiguousarray(photo[..., ::-1]), "dwtDct")[..., ::-1]  # as diffusers does
    decoder = WatermarkDecoder("bits", len(WATERMARK_BITS))

    def sdxl_bits(pixels: np.ndarray) -> float:
        found = decoder.decode(np.ascontiguousarray(pixels[..., ::-1]), "dwtDct")
        return float(np.mean(np.asarray(found) == np.asarray(WATERMARK_BITS)))

    assert sdxl_bits(marked) >= 0.9  # the stand-in's output carries the SDXL mark
    generator = load_generator(cast.home, str(models.sd))
    generator.pipe = PhotoPipe(np.clip(marked, 0, 255).astype(np.uint8))
    generator.diffusers_watermark = True
    out = tmp_path / "sdxl.png"
    outcome = run_generation(generate(models, out), home=cast.home, analyzer=dlib, generator=generator)
    assert outcome.diffusers_watermark is True
    report = verify_file(out, home=cast.home)
    assert report.disclosure.watermark.output_id == outcome.output_id  # likeness's mark reads on top
    kept = sdxl_bits(load_image(out).pixels)
    assert kept >= 0.85, f"only {kept:.0%} of the SDXL mark's bits survived likeness's disclosure"


def test_a_generated_face_of_a_person_who_consented_to_generation_passes(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, faces_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "biden.png"
    generator = _photo_generator(cast, models, faces_dir / "biden" / "1.jpg")
    outcome = run_generation(generate(models, out), home=cast.home, analyzer=dlib, generator=generator)
    assert outcome.consents == [cast.consents["biden"]]
    assert outcome.faces[0]["outcome"] == "consented"


@pytest.mark.parametrize(
    ("prompt", "rule"),
    [("a portrait of John Salley on a boat", "no_consent"), ("OBAMA giving a speech", "wrong_role")],
)
def test_a_prompt_naming_an_enrolled_person_needs_their_consent(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, tmp_path: Path, prompt: str, rule: str
) -> None:
    out = tmp_path / "named.png"
    with pytest.raises(ConsentRefused) as refused:
        run_generation(generate(models, out, prompt=prompt), home=cast.home, analyzer=dlib)
    assert refused.value.rule == rule and "named in the prompt" in refused.value.reason
    assert not out.exists()


def test_people_named_matches_whole_words_and_unique_surnames() -> None:
    def person(name: str):
        return SimpleNamespace(id=name, name=name, erased_at=None)

    people = [person("Joe Biden"), person("Ada Lovelace"), person("Ada Smith")]
    found = people_named("Lovelace and joe   BIDEN; adamant", people)  # type: ignore[arg-type]
    assert [n.identity.name for n in found] == ["Joe Biden", "Ada Lovelace"]
    assert people_named("a bidenesque look", people) == []  # type: ignore[arg-type]


# -- consented likeness (IP-Adapter FaceID) --------------------------------------------------------------
def test_an_identity_without_consent_is_refused_before_the_model_loads(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from likeness.jobs import generation

    monkeypatch.setattr(generation, "load_generator", lambda *a, **k: pytest.fail("model loaded"))
    out = tmp_path / "salley.png"
    request = generate(models, out, identity="John Salley", ip_adapter=models.faceid)
    with pytest.raises(ConsentRefused) as refused:
        run_generation(request, home=cast.home, analyzer=dlib)
    assert refused.value.rule == "no_consent" and not out.exists()


def test_an_identity_consented_for_swaps_only_is_refused(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, tmp_path: Path
) -> None:
    out = tmp_path / "obama.png"
    request = generate(models, out, identity=cast.ids["obama"], ip_adapter=models.faceid)
    with pytest.raises(ConsentRefused) as refused:
        run_generation(request, home=cast.home, analyzer=dlib)
    assert refused.value.rule == "wrong_role" and "--role generate" in (refused.value.hint or "")
    assert not out.exists()


def test_an_identity_without_an_arcface_reference_is_refused_with_what_to_do(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, tmp_path: Path
) -> None:
    request = generate(models, tmp_path / "x.png", identity="Alex Lacamoire", ip_adapter=models.faceid)
    with pytest.raises(BadInput) as refused:
        run_generation(request, home=cast.home, analyzer=dlib)
    assert (
        refused.value.exit_code == 4 and "ArcFace" in refused.value.reason and "128-d" in refused.value.reason
    )
    assert "reembed" in (refused.value.hint or "")


def test_a_consented_identity_conditions_the_model_through_faceid(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, tmp_path: Path
) -> None:
    out = tmp_path / "biden-faceid.png"
    request = generate(models, out, identity="Joe Biden", ip_adapter=models.faceid)
    outcome = run_generation(request, home=cast.home, analyzer=dlib)
    assert outcome.consents[0] == cast.consents["biden"] and out.is_file()
    report = verify_file(out, home=cast.home).to_dict()
    c2pa = report["disclosure"]["c2pa"] if "disclosure" in report else report["c2pa"]
    assert cast.consents["biden"] in c2pa["consent_ids"]
    assert "ip-adapter-faceid" in json.dumps(c2pa["tools"]["models"])
    # FaceID changes the picture: the same seed without the identity differs.
    plain = run_generation(generate(models, tmp_path / "plain.png"), home=cast.home, analyzer=dlib)
    assert load_image(plain.output).sha256 != load_image(out).sha256


def test_a_non_commercial_identity_adapter_is_refused_for_a_commercial_purpose(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, tmp_path: Path
) -> None:
    request = generate(
        models, tmp_path / "x.png", identity="Joe Biden", ip_adapter=models.faceid, purpose="film"
    )
    with pytest.raises(LicenceRefused) as refused:
        run_generation(request, home=cast.home, analyzer=dlib)
    assert refused.value.exit_code == 2 and "ip-adapter-faceid" in refused.value.reason


# -- models: licences, missing ---------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["dev", "unknown"])
def test_a_non_commercial_or_unlicensed_model_is_refused_for_a_commercial_purpose(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, tmp_path: Path, which: str
) -> None:
    out = tmp_path / "film.png"
    request = generate(models, out, model=str(getattr(models, which)), purpose="film")
    with pytest.raises(LicenceRefused) as refused:
        run_generation(request, home=cast.home, analyzer=dlib)
    assert refused.value.exit_code == 2 and not out.exists()
    assert getattr(models, which).name in refused.value.reason


def test_a_size_too_small_for_the_label_is_refused_before_any_work(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, tmp_path: Path
) -> None:
    from likeness.errors import UsageError

    with pytest.raises(UsageError, match="too small"):
        run_generation(generate(models, tmp_path / "x.png", size=(64, 64)), home=cast.home, analyzer=dlib)


def test_a_commercially_licensed_model_runs_for_a_commercial_purpose(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, tmp_path: Path
) -> None:
    from likeness.licences import record_licence

    # dlib's 68-point landmarks are non-commercial too: the studio records its licence for them.
    evidence = tmp_path / "licence.txt"
    evidence.write_text("test licence agreement", encoding="utf-8")
    record_licence(
        cast.home, "dlib_landmarks_68", holder="Test Studio", evidence=evidence, note="test", operator="t"
    )
    out = tmp_path / "film.jpg"
    outcome = run_generation(generate(models, out, purpose="film"), home=cast.home, analyzer=dlib)
    assert outcome.output.is_file()


@pytest.mark.parametrize("model", ["/nonexistent/model", "sd15", "flux1-dev"])
def test_a_missing_model_exits_4_and_says_what_to_put_where(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, tmp_path: Path, model: str
) -> None:
    with pytest.raises(ModelMissing) as missing:
        run_generation(generate(models, tmp_path / "x.png", model=model), home=cast.home, analyzer=dlib)
    assert missing.value.exit_code == 4
    if model != "/nonexistent/model":
        assert str(cast.home.models_dir / "diffusers" / model) in (missing.value.hint or "")


def test_a_folder_that_is_not_a_pipeline_is_a_missing_model(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, tmp_path: Path
) -> None:
    with pytest.raises(ModelMissing, match=r"model_index\.json"):
        run_generation(
            generate(models, tmp_path / "x.png", model=str(tmp_path)), home=cast.home, analyzer=dlib
        )


def test_models_list_shows_the_generation_models_with_their_licences(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["models", "list", "--home", str(tmp_path / "h"), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)["files"]}
    assert rows["sd15"]["commercial_use"] is True and "OpenRAIL-M" in rows["sd15"]["licence"]
    assert rows["sdxl-base"]["commercial_use"] is True and "OpenRAIL++" in rows["sdxl-base"]["licence"]
    assert rows["flux1-schnell"]["commercial_use"] is True
    assert rows["flux1-dev"]["commercial_use"] is False
    assert rows["ip-adapter-faceid"]["commercial_use"] is False
    assert rows["arc2face"]["commercial_use"] is False
    assert rows["sd15"]["state"] == "missing"


# -- face edit ----------------------------------------------------------------------------------------------
def test_a_consented_face_edit_is_composite_and_keeps_the_rest_of_the_photo(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, faces_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "edited.png"
    request = EditRequest(
        model=str(models.inpaint),
        target=faces_dir / "biden" / "1.jpg",
        prompt="a smiling face",
        purpose="research",
        out=out,
        work_size=192,
        **SMALL,
    )
    outcome = run_generation(request, home=cast.home, analyzer=dlib)
    assert outcome.kind == "edit" and cast.consents["biden"] in outcome.consents
    report = verify_file(out, home=cast.home).to_dict()
    c2pa = report["disclosure"]["c2pa"] if "disclosure" in report else report["c2pa"]
    assert c2pa["kind"] == "edit" and c2pa["digital_source_type"].endswith(
        "/compositeWithTrainedAlgorithmicMedia"
    )
    assert [item["role"] for item in c2pa["ingredients"]] == ["target"]


def test_editing_the_face_of_someone_who_did_not_consent_is_refused(
    models: SimpleNamespace, cast: SimpleNamespace, dlib, faces_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "edited.png"
    request = EditRequest(
        model=str(models.inpaint),
        target=faces_dir / "John_Salley" / "3.jpg",
        prompt="a smiling face",
        purpose="research",
        out=out,
        work_size=192,
        **SMALL,
    )
    with pytest.raises(ConsentRefused) as refused:
        run_generation(request, home=cast.home, analyzer=dlib)
    assert refused.value.rule == "no_consent" and "edited face" in refused.value.reason and not out.exists()


# -- the command line ---------------------------------------------------------------------------------------
def test_the_generate_command_prints_json_and_exits_3_on_refusal(
    models: SimpleNamespace, cast: SimpleNamespace, tmp_path: Path
) -> None:
    base = ["generate", "--home", str(cast.home.root), "--model", str(models.sd), "--purpose", "research"]
    base += ["--steps", "2", "--size", "192x192", "--seed", "1", "--json"]
    out = tmp_path / "cli.png"
    result = CliRunner().invoke(main, [*base, "--prompt", "a lighthouse", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"output", "output_id", "consents", "faces"} <= set(data) and Path(data["output"]) == out
    refused = tmp_path / "refused.png"
    result = CliRunner().invoke(
        main, [*base, "--prompt", "a lighthouse", "--identity", "John Salley", "--out", str(refused)]
    )
    assert result.exit_code == 3 and not refused.exists()
