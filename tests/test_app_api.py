"""The studio's API through gradio_client: roles enforced on the server, swaps (images and video),
refusals, verify, audit, models, upload limits.

One app runs in-process on a free port for the module, with its own data home and two app users.
Inputs are the public-domain demo portraits (and short clips made from them here); outputs stay
under pytest's tmp folder.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"

import datetime as dt
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

import video_fixtures as vf
from likeness.home import Home
from likeness.users import UserStore

pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parents[1] / "src" / "likeness" / "demo_assets"
ADMIN = ("ada", "admin passphrase 1")
OPERATOR = ("otto", "operator passphrase 2")
USES = "likeness app API test: swaps between public-domain 19th-century portraits for teaching"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def portrait_clip(
    path: Path,
    names: tuple[str, ...] = ("lincoln_1.jpg", "pasteur_1.jpg"),
    *,
    size: tuple[int, int] = (320, 240),
    seconds: float = 2.0,
    fps: int = 15,
) -> Path:
    """A short H.264 + AAC clip of public-domain portraits side by side, drifting a few pixels (so the
    faces move as in footage). Each face is about 80 px tall at 320×240."""
    from PIL import Image

    width, height = size
    tile_w, drift = width // len(names), 8
    tiles = []
    for name in names:
        with Image.open(DEMO / name) as image:
            picture = image.convert("RGB")
        aspect = (tile_w + drift) / (height + drift)  # head and shoulders: the top of the portrait
        crop_h = min(picture.height, round(picture.width / aspect))
        crop_w = round(crop_h * aspect)
        left = (picture.width - crop_w) // 2
        head = picture.crop((left, 0, left + crop_w, crop_h))
        tiles.append(np.asarray(head.resize((tile_w + drift, height + drift), Image.Resampling.LANCZOS)))
    count = round(seconds * fps)
    frames = []
    for i in range(count):
        t = i / max(1, count - 1)
        frame = np.empty((height, width, 3), np.uint8)
        for k, tile in enumerate(tiles):
            dx, dy = round(drift * (t if k % 2 == 0 else 1 - t)), round(drift * t / 2)
            frame[:, k * tile_w : (k + 1) * tile_w] = tile[dy : dy + height, dx : dx + tile_w]
        frames.append(frame)
    return vf.write_clip(path, frames, fps=fps, audio="aac")


def seed(
    home: Home, name: str, photos: list[str], purposes: list[str], media: tuple[str, ...] = ("image",)
) -> tuple[str, str]:
    """Enrol through the pipeline and record a rights-expired consent; returns (identity id, consent id)."""
    from likeness.consent.registry import Registry
    from likeness.jobs.enrol import enrol_identity
    from likeness.jobs.requests import EnrolRequest

    identity = enrol_identity(
        EnrolRequest(name=name, photos=[DEMO / p for p in photos], operator="seed"), home=home
    )
    with Registry.open(home) as registry:
        record = registry.grant(
            identity.id,
            purposes=purposes,
            roles=["source", "target"],
            media=list(media),
            valid_until=dt.date.today() + dt.timedelta(days=90),
            uses=USES,
            operator="seed",
            capacity="rights_expired",
            date_of_death=dt.date(1870, 1, 1),
            jurisdiction="US-NY",
            basis="died over 150 years ago; photograph in the public domain",
        )
    return identity.id, record.id


@pytest.fixture(scope="module")
def studio_app(tmp_path_factory):
    from likeness.webapp.server import AppSettings, launch

    home = Home(root=tmp_path_factory.mktemp("app") / "home").ensure()
    users = UserStore.for_home(home)
    users.add(*ADMIN, "admin")
    users.add(*OPERATOR, "operator")
    ids = {
        "darwin": seed(home, "Charles Darwin", ["darwin_1.jpg"], ["education"]),
        "lincoln": seed(home, "Abraham Lincoln", ["lincoln_1.jpg"], ["education"]),
        # Douglass may also be filmed (research): the video tests replace him, and Pasteur (not
        # enrolled) stands beside him in the clip.
        "douglass": seed(home, "Frederick Douglass", ["douglass_1.jpg"], ["research"], ("image", "video")),
    }
    settings = AppSettings(
        home=home,
        port=free_port(),
        quiet=True,
        max_upload_mb=2,
        max_video_mb=3,
        video_segment_seconds=0.5,  # several resumable segments in a short clip
    )
    app = launch(settings, prevent_thread_lock=True)
    yield app, home, ids
    app.close()


def client(url: str, who: tuple[str, str], downloads: Path):
    from gradio_client import Client

    return Client(url, auth=who, verbose=False, download_files=str(downloads))


@pytest.fixture(scope="module")
def admin(studio_app, tmp_path_factory):
    return client(studio_app[0].url, ADMIN, tmp_path_factory.mktemp("admin-downloads"))


@pytest.fixture(scope="module")
def operator(studio_app, tmp_path_factory):
    return client(studio_app[0].url, OPERATOR, tmp_path_factory.mktemp("operator-downloads"))


@pytest.fixture(scope="module")
def made_output(operator) -> Path:
    """One disclosed output (Douglass onto his own portrait, for research), made through the API."""
    result = swap(operator, "douglass_1.jpg", source="Frederick Douglass", purpose="research")[3]
    assert result["status"] == "done", result
    return Path(result["output"])


def swap(c, target: str, *, source: str = "Charles Darwin", purpose: str = "education", face: str = "all"):
    from gradio_client import handle_file

    banner, before, after, download, result = c.predict(
        "identity", source, None, handle_file(str(DEMO / target)), purpose, face, api_name="/swap"
    )
    return banner, (before, after), download, result


def ledger_kinds(c) -> list[str]:
    _, data = c.predict("all", 100000, api_name="/ledger")
    return [e["kind"] for e in data["entries"]]


def outputs_on_disk(home: Home) -> list[Path]:
    return sorted((home.root / "outputs").rglob("likeness-*"))


def test_api_lists_every_documented_endpoint(admin) -> None:
    names = set(admin.view_api(print_info=False, return_format="dict")["named_endpoints"])
    expected = {"/whoami", "/faces", "/swap", "/people", "/person", "/check_photos", "/enrol", "/grant"}
    expected |= {"/revoke", "/erase", "/verify", "/audit_check", "/ledger", "/export_ledger", "/generate"}
    assert expected <= names


def test_whoami_reports_the_signed_in_role(admin, operator) -> None:
    assert admin.predict(api_name="/whoami")[1] == {"user": "ada", "role": "admin"}
    assert operator.predict(api_name="/whoami")[1] == {"user": "otto", "role": "operator"}


def test_wrong_password_is_refused(studio_app) -> None:
    from gradio_client import Client

    with pytest.raises(ValueError, match=r"(?i)could not login|incorrect"):
        Client(studio_app[0].url, auth=(ADMIN[0], "not the password"), verbose=False)


def test_repeated_failed_sign_ins_lock_that_client_and_name_and_say_so(studio_app) -> None:
    """Per client and name: the locked attempt is told it is locked (not 'incorrect credentials');
    the same client signing in as someone else, and so the named user elsewhere, are not locked."""
    from likeness.webapp.login_throttle import FAILURES

    app = studio_app[0]
    with httpx.Client(base_url=app.url.rstrip("/"), timeout=30) as http:
        for _ in range(FAILURES):
            refused = http.post("/login", data={"username": "mallory", "password": "guess"})
            assert refused.status_code == 400
        locked = http.post("/login", data={"username": "mallory", "password": "guess"})
        assert locked.status_code == 429
        assert "locked" in locked.json()["detail"] and "Other browsers" in locked.json()["detail"]
        assert http.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]}).status_code == 200


def test_operator_swap_writes_a_disclosed_output_into_their_session_folder(studio_app, operator) -> None:
    _, home, ids = studio_app
    banner, compare, download, result = swap(operator, "lincoln_1.jpg")
    assert result["status"] == "done", result
    assert "Done: disclosed output written" in banner and "consent" in banner.lower()
    assert set(result["consents"]) == {ids["darwin"][1], ids["lincoln"][1]}
    made = Path(result["output"])
    assert made.is_file() and made.parent.parent.name == "otto"
    assert made.is_relative_to(home.root / "outputs")
    assert Path(download).read_bytes() == made.read_bytes()  # the download is the sealed file, byte for byte
    assert (
        result["verify"]["watermark"]["found"]
        and result["verify"]["watermark"]["output_id"] == result["output_id"]
    )
    before, after = compare
    assert Path(before).read_bytes() == (DEMO / "lincoln_1.jpg").read_bytes()
    assert Path(after).read_bytes() == made.read_bytes()


def test_swap_takes_the_disclosure_profile_from_its_dropdown(studio_app, operator) -> None:
    """The Swap tab's profile dropdown (last input of /swap; it defaults to the policy's, 'default')."""
    from gradio_client import handle_file

    target = handle_file(str(DEMO / "lincoln_1.jpg"))
    *_, result = operator.predict(
        "identity", "Charles Darwin", None, target, "education", "all", "eu", api_name="/swap"
    )
    assert result["status"] == "done", result
    profile = result["verify"]["profile"]
    assert profile["name"] == "eu" and profile["meets"] is True, profile
    assert profile["recorded"]["label"]["corner"] == "top-right"
    *_, result = swap(operator, "lincoln_1.jpg")  # the dropdown left alone: the policy's default
    assert result["verify"]["profile"]["name"] == "default"


def test_face_picker_lists_the_target_faces(operator) -> None:
    from gradio_client import handle_file

    gallery, choice, note, data = operator.predict(handle_file(str(DEMO / "stowe_1.jpg")), api_name="/faces")
    assert data["status"] == "done" and len(data["faces"]) == 1 and data["faces"][0]["size_px"] >= 80
    assert len(gallery) == 1 and "One face" in note
    assert choice["value"] == "all" and [value for _, value in choice["choices"]] == ["all", "0"]


def test_unenrolled_target_is_refused_in_plain_words_and_nothing_is_written(studio_app, operator) -> None:
    _, home, _ = studio_app
    before = outputs_on_disk(home)
    banner, compare, download, result = swap(operator, "pasteur_1.jpg")
    assert result["status"] == "refused" and result["rule"] == "not_enrolled"
    assert "Refused by the consent gate" in banner and "No file was written" in banner
    assert compare == (None, None) and download is None
    assert outputs_on_disk(home) == before


def test_purpose_outside_the_consent_is_refused(operator) -> None:
    _, _, _, result = swap(operator, "lincoln_1.jpg", purpose="research")
    assert result["status"] == "refused" and result["rule"] == "wrong_purpose"


def test_operator_cannot_change_the_registry_through_the_api(studio_app, operator) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    _, _, ids = studio_app
    kinds_before = ledger_kinds(operator)
    grant_args = [
        "Frederick Douglass",
        ["education"],
        ["source"],
        ["image"],
        "",
        "2099-01-01",
        USES,
        "",
        "self",
    ]
    grant_args += ["", "", "", "", "", "", "", "", None]
    attempts = {
        "/grant": grant_args,
        "/revoke": [ids["darwin"][1], "operator tries to revoke"],
        "/erase": [ids["douglass"][0], "operator tries to erase", True],
        "/enrol": ["Louis Pasteur", [handle_file(str(DEMO / "pasteur_1.jpg"))]],
        "/check_photos": [[handle_file(str(DEMO / "pasteur_1.jpg"))]],
    }
    for api_name, args in attempts.items():
        with pytest.raises(AppError, match="only admin may"):
            operator.predict(*args, api_name=api_name)
    assert ledger_kinds(operator) == kinds_before  # nothing was recorded


def test_admin_enrols_grants_and_the_new_person_can_be_swapped(studio_app, admin) -> None:
    from gradio_client import handle_file

    photos = [handle_file(str(DEMO / "poe_1.jpg")), handle_file(str(DEMO / "poe_2.jpg"))]
    _, _, _, checked = admin.predict(photos, api_name="/check_photos")
    assert checked["ok"] and [p["faces"] for p in checked["photos"]] == [1, 1]
    _, enrolled = admin.predict("Edgar Allan Poe", photos, api_name="/enrol")
    assert enrolled["status"] == "done" and enrolled["identity"]["reference_count"] == 2
    poe_id = enrolled["identity"]["id"]
    banner, granted = admin.predict(
        poe_id,
        ["education"],
        ["source"],
        ["image"],
        "",
        "2026-12-31",
        USES,
        "app tests",
        "rights_expired",
        "",
        "died 1849; photograph in the public domain",
        "",
        "1849-10-07",
        "US-MD",
        "",
        "",
        "",
        None,
        api_name="/grant",
    )
    assert granted["status"] == "done" and granted["consent"]["identity_id"] == poe_id, granted
    assert granted["consent"]["status"] == "active"
    assert "Consent recorded" in banner
    _, _, _, result = swap(admin, "lincoln_1.jpg", source="Edgar Allan Poe")
    assert result["status"] == "done" and granted["consent"]["id"] in result["consents"]


def test_quality_check_rejects_a_photo_without_a_face(tmp_path, admin) -> None:
    from gradio_client import handle_file
    from PIL import Image

    blank = tmp_path / "sky.png"
    ramp = np.linspace(60, 200, 300 * 400, dtype=np.float64).reshape(300, 400).astype(np.uint8)
    Image.fromarray(np.stack([ramp, ramp, np.full_like(ramp, 230)], axis=-1)).save(blank)
    _, _, _, checked = admin.predict([handle_file(str(blank))], api_name="/check_photos")
    assert not checked["ok"] and checked["photos"][0]["faces"] == 0
    banner, result = admin.predict("Nobody", [handle_file(str(blank))], api_name="/enrol")
    assert result["status"] == "error" and result["error"] == "no_face" and "No face found" in banner


def test_grant_that_the_policy_forbids_is_explained(admin) -> None:
    banner, result = admin.predict(
        "Frederick Douglass",
        ["education"],
        ["source"],
        ["image"],
        "",
        "2099-01-01",
        "any use",
        "",
        "self",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        None,
        api_name="/grant",
    )
    assert result["status"] == "error" and result["exit_code"] == 2, result
    assert "lk-error" in banner


def test_revoke_takes_effect_for_the_next_swap(studio_app, admin, operator) -> None:
    ids = studio_app[2]
    lincoln_consent = ids["lincoln"][1]
    _, _, _, first = swap(operator, "lincoln_1.jpg")
    assert first["status"] == "done"
    banner, revoked = admin.predict(lincoln_consent, "withdrawn by the estate by e-mail", api_name="/revoke")
    assert revoked["consent"]["status"] == "revoked" and "Consent revoked" in banner
    _, _, _, again = swap(operator, "lincoln_1.jpg")
    assert again["status"] == "refused" and again["rule"] == "revoked", again
    _, person = admin.predict(ids["lincoln"][0], api_name="/person")[0:5:4]
    states = {c["id"]: c["status"] for c in person["consents"]}
    assert states[lincoln_consent] == "revoked"
    assert first["output_id"] in {o["output_id"] for o in person["outputs"]}


def test_verify_reads_a_disclosed_output_and_a_clean_photo(made_output, operator) -> None:
    from gradio_client import handle_file

    banner, report = operator.predict(handle_file(str(made_output)), api_name="/verify")
    assert report["watermark"]["found"] and report["ledger"]["found"], report
    assert report["ledger"]["output_id"] == report["watermark"]["output_id"]
    assert "AI-generated" in banner
    banner, clean = operator.predict(handle_file(str(DEMO / "stowe_1.jpg")), api_name="/verify")
    assert not clean["watermark"]["found"] and not clean["ledger"]["found"]
    assert "No likeness disclosure found" in banner


def test_audit_chain_check_and_export(studio_app, operator) -> None:
    banner, report = operator.predict(api_name="/audit_check")
    assert report["ok"] and report["entries"] >= 6 and "Ledger intact" in banner
    exported, _ = operator.predict(api_name="/export_ledger")
    lines = Path(exported).read_text().splitlines()
    header, entries = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    assert header["chain_check"]["ok"] and len(entries) == report["entries"]
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    assert {"enrol", "grant", "output", "refusal"} <= {e["kind"] for e in entries}


def test_two_users_swapping_at_once_get_their_own_results(studio_app, admin, operator) -> None:
    ids = studio_app[2]
    results: dict[str, dict] = {}

    def run(name: str, c, source: str) -> None:
        results[name] = swap(c, "douglass_1.jpg", source=source, purpose="research")[3]

    # Douglass consented to research as source and target, Darwin did not: one output, one refusal.
    threads = [
        threading.Thread(target=run, args=("otto", operator, "Frederick Douglass")),
        threading.Thread(target=run, args=("ada", admin, "Charles Darwin")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert (
        results["otto"]["status"] == "done" and Path(results["otto"]["output"]).parent.parent.name == "otto"
    )
    assert results["ada"]["status"] == "refused" and results["ada"]["rule"] == "wrong_purpose"
    assert results["otto"]["consents"] == [ids["douglass"][1]]


def test_cancelled_swap_writes_nothing(studio_app, operator) -> None:
    from gradio_client import handle_file

    _, home, _ = studio_app
    outputs_before = outputs_on_disk(home)
    kinds_before = ledger_kinds(operator)
    job = operator.submit(
        "identity",
        "Frederick Douglass",
        None,
        handle_file(str(DEMO / "douglass_1.jpg")),
        "research",
        "all",
        api_name="/swap",
    )
    deadline = time.monotonic() + 30
    while job.status().code.name not in ("PROCESSING", "PROGRESS") and time.monotonic() < deadline:
        assert not job.done(), "the swap finished before it could be cancelled"
        time.sleep(0.01)
    assert job.cancel()
    time.sleep(4)  # longer than a whole swap: the worker thread must have stopped by now
    assert outputs_on_disk(home) == outputs_before
    assert ledger_kinds(operator).count("output") == kinds_before.count("output")


def test_app_serves_outputs_but_not_the_registry_keys_or_users(studio_app, made_output) -> None:
    app, home, _ = studio_app
    with httpx.Client(base_url=app.url.rstrip("/"), timeout=30) as http:
        assert http.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]}).status_code == 200
        made = made_output
        assert http.get(f"/gradio_api/file={made}").status_code == 200
        secrets_on_disk = [home.db_path, home.root / "app_users.json", *sorted(home.keys_dir.iterdir())]
        for path in secrets_on_disk:
            assert http.get(f"/gradio_api/file={path}").status_code == 403, path
        assert http.get(f"/gradio_api/file={DEMO / 'lincoln_1.jpg'}").status_code == 403
    with httpx.Client(base_url=app.url.rstrip("/"), timeout=30) as anonymous:
        assert anonymous.get(f"/gradio_api/file={made}").status_code in (401, 403)


def test_uploads_over_the_size_limits_are_refused(tmp_path, operator) -> None:
    from gradio_client import handle_file

    # This app: images and documents up to 2 MB, videos up to 3 MB; Gradio itself stops anything over 3 MB.
    image = tmp_path / "big.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(int(2.5 * 1024 * 1024)))
    banner, report = operator.predict(handle_file(str(image)), api_name="/verify")
    assert report["status"] == "error" and report["error"] == "bad_input", report
    assert "accepts images and documents up to 2 MB" in banner
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(int(3.5 * 1024 * 1024)))
    with pytest.raises(Exception, match=r"(?i)size|large|413"):
        operator.predict(handle_file(str(huge)), api_name="/verify")


def test_erase_removes_the_reference_faces_and_revokes_every_consent(studio_app, admin, operator) -> None:
    _, home, _ = studio_app
    stowe_id, stowe_consent = seed(home, "Harriet Beecher Stowe", ["stowe_1.jpg"], ["education"])
    _, _, _, before = swap(operator, "stowe_1.jpg")
    assert before["status"] == "done"
    banner, erased = admin.predict(stowe_id, "erasure request of the estate (test)", False, api_name="/erase")
    assert erased["status"] == "error" and "confirmation" in banner  # the box must be ticked
    banner, erased = admin.predict(stowe_id, "erasure request of the estate (test)", True, api_name="/erase")
    assert erased["status"] == "done" and erased["identity"]["erased_at"] and "Erased" in banner
    _, person = admin.predict(stowe_id, api_name="/person")[0:5:4]
    assert {c["id"]: c["status"] for c in person["consents"]} == {stowe_consent: "revoked"}
    _, _, _, after = swap(operator, "stowe_1.jpg")
    assert after["status"] == "refused" and after["rule"] == "not_enrolled"


def test_consent_document_must_be_a_pdf_or_an_image(tmp_path, admin) -> None:
    from gradio_client import handle_file

    note = tmp_path / "consent.pdf"  # the name passes Gradio's extension check; the bytes are text
    note.write_text("I agree. (not a signed document)")
    form = ["Frederick Douglass", ["education"], ["source"], ["image"], "", "2026-12-31", USES, ""]
    form += ["rights_expired", "", "died 1895; photograph in the public domain", "", "1895-02-20", "US-DC"]
    form += ["", "", "", handle_file(str(note))]
    banner, result = admin.predict(*form, api_name="/grant")
    assert result["status"] == "error" and result["error"] == "bad_input"
    assert "not a PDF, JPEG or PNG" in banner


def test_a_target_that_is_not_an_image_is_refused(tmp_path, studio_app, operator) -> None:
    _, home, _ = studio_app
    fake = tmp_path / "portrait.jpg"
    fake.write_text("this is not a JPEG")
    before = outputs_on_disk(home)
    banner, _, _, result = swap(operator, str(fake))
    assert result["status"] == "error" and result["error"] == "bad_input", result
    assert "portrait.jpg: not an image that can be read (it looks like a text file)" in banner
    assert outputs_on_disk(home) == before


def test_without_users_the_app_runs_on_localhost_only_and_the_local_user_is_admin(
    tmp_path, monkeypatch
) -> None:
    from gradio_client import Client

    # Gradio's upload folder is process-wide (GRADIO_TEMP_DIR): give it back to the module's app afterwards
    monkeypatch.setenv("GRADIO_TEMP_DIR", os.environ["GRADIO_TEMP_DIR"])

    from likeness.errors import UsageError
    from likeness.jobs.requests import default_operator
    from likeness.webapp.server import AppSettings, launch

    home = Home(root=tmp_path / "open-home").ensure()
    with pytest.raises(UsageError, match="without app users"):
        launch(AppSettings(home=home, host="0.0.0.0", port=free_port(), quiet=True), prevent_thread_lock=True)
    app = launch(AppSettings(home=home, port=free_port(), quiet=True), prevent_thread_lock=True)
    try:
        assert not app.auth_required
        local = Client(app.url, verbose=False, download_files=str(tmp_path / "dl"))
        assert local.predict(api_name="/whoami")[1] == {"user": default_operator(), "role": "admin"}
    finally:
        app.close()


def test_source_can_be_an_uploaded_photo_of_an_enrolled_person(studio_app, operator) -> None:
    from gradio_client import handle_file

    douglass = handle_file(str(DEMO / "douglass_1.jpg"))
    *_, result = operator.predict("photo", None, douglass, douglass, "research", "0", api_name="/swap")
    assert result["status"] == "done", result
    assert result["consents"] == [studio_app[2]["douglass"][1]] and result["source"] == "douglass_1.jpg"
    assert [m["role"] for m in result["matches"]] == ["source", "target"]


def test_reference_faces_are_shown_to_admins_only(studio_app, admin, operator) -> None:
    darwin_id = studio_app[2]["darwin"][0]
    admin_view = admin.predict(darwin_id, api_name="/person")
    operator_view = operator.predict(darwin_id, api_name="/person")
    assert len(admin_view[1]) == 1 and operator_view[1] == []
    assert admin_view[4]["consents"] == operator_view[4]["consents"]


# -- tampering, models and licences ------------------------------------------------------------------
def test_verify_calls_a_changed_file_tampered_and_names_the_reasons(tmp_path, made_output, operator) -> None:
    from gradio_client import handle_file

    changed = tmp_path / "changed.jpg"
    data = bytearray(made_output.read_bytes())
    index = next(i for i in range(data.rindex(b"\xff\xda") + 200, len(data)) if data[i] < 0xF0)
    data[index] ^= 0x01  # one bit inside the picture data: the content credentials no longer hold
    changed.write_bytes(bytes(data))
    banner, report = operator.predict(handle_file(str(changed)), api_name="/verify")
    assert report["status"] == "tampered" and report["c2pa"]["state"] == "invalid", report
    assert "assertion.dataHash.mismatch" in report["c2pa"]["reasons"]
    assert "lk-refused" in banner and "TAMPERED" in banner and "assertion.dataHash.mismatch" in banner


def test_models_are_listed_with_hash_state_and_licence(admin, operator) -> None:
    banner, table, data = operator.predict(api_name="/models")
    rows = {row[0]: dict(zip(table["headers"], row, strict=True)) for row in table["data"]}
    assert (
        rows["dlib_landmarks_68"]["Present"] == "yes"
        and rows["dlib_landmarks_68"]["Hash state"] == "verified"
    )
    assert rows["dlib_landmarks_68"]["Commercial use"] == "no"  # trained on iBUG 300-W
    assert rows["dlib_resnet_v1"]["Commercial use"] == "yes"
    assert rows["inswapper_128"]["Present"] == "no"
    assert "dlib_landmarks_68" in banner
    assert all("/" not in item["file"] for item in data["files"])  # operators see file names only
    _, _, full = admin.predict(api_name="/models")
    assert all(Path(item["file"]).is_absolute() for item in full["files"])


def test_a_commercial_purpose_is_refused_while_a_model_licence_is_missing(operator) -> None:
    banner, _, _, result = swap(operator, "douglass_1.jpg", source="Frederick Douglass", purpose="film")
    assert result["status"] == "error" and result["error"] == "licence", result
    assert "licence does not allow this purpose" in banner and "dlib_landmarks_68" in banner


# -- loaded models ------------------------------------------------------------------------------------
def test_engine_pool_lends_each_loaded_copy_to_one_job_at_a_time(home) -> None:
    from likeness.webapp.engines import EnginePool

    pool = EnginePool("dlib", home, size=2)
    got: dict[str, object] = {}
    lent = threading.Event()

    def third_job() -> None:
        with pool.borrow() as engines:
            got["engines"] = engines
            lent.set()

    with pool.borrow() as first, pool.borrow() as second:
        assert first is not second and first.analyzer is not second.analyzer and pool.loaded == 2
        waiter = threading.Thread(target=third_job)
        waiter.start()
        assert not lent.wait(0.6)  # both copies are in use: the third job waits instead of sharing one
    assert lent.wait(10)
    waiter.join(timeout=10)
    assert got["engines"] in (first, second) and pool.loaded == 2  # reused, not loaded again


def test_the_app_keeps_its_loaded_models_between_swaps(studio_app, operator) -> None:
    app = studio_app[0]
    for _ in range(2):
        assert (
            swap(operator, "douglass_1.jpg", source="Frederick Douglass", purpose="research")[3]["status"]
            == "done"
        )
    assert 1 <= app.studio.engines.loaded <= app.studio.engines.size == 2


# -- video ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """Douglass (enrolled; consents to research on video) beside Pasteur (not enrolled): 2 s, with sound."""
    folder = tmp_path_factory.mktemp("clips")
    return portrait_clip(folder / "douglass_and_pasteur.mp4", ("douglass_1.jpg", "pasteur_1.jpg"))


def swap_video(c, clip: Path, *, faces: str = "consented", codec: str = "h264", crf: int = 18):
    from gradio_client import handle_file

    args = ["identity", "Frederick Douglass", None, handle_file(str(clip)), "research", faces, codec, crf]
    return c.predict(*args, api_name="/swap_video")


def pending_video_jobs(home: Home) -> list[Path]:
    return sorted((home.root / "app" / "work" / "video").glob("*/*"))


def video_job_folders(home: Home) -> list[Path]:
    return sorted((home.root / "outputs").rglob(".*.likeness-job"))


def test_video_swap_replaces_the_consented_face_and_leaves_the_bystander(studio_app, operator, clip) -> None:
    from gradio_client import handle_file

    from likeness.media.video import probe_video

    _, home, ids = studio_app
    banner, player, download, tracks, result = swap_video(operator, clip)
    assert result["status"] == "done", result
    made = Path(result["output"])
    assert made.suffix == ".mp4" and made.is_relative_to(home.root / "outputs" / "otto")
    assert Path(download).read_bytes() == made.read_bytes() == Path(player).read_bytes()
    info = probe_video(made)
    assert info.frame_count == probe_video(clip).frame_count == 30 and info.has_audio
    by_decision = {t["decision"]: t for t in result["tracks"]}
    assert set(by_decision) == {"swapped", "untouched"}
    assert by_decision["swapped"]["identity_name"] == "Frederick Douglass"
    assert by_decision["swapped"]["consent_id"] == ids["douglass"][1]
    assert by_decision["untouched"]["identity_id"] is None
    rows = {row[2]: row for row in tracks["data"]}
    assert rows["replaced"][3] == "Frederick Douglass" and "no enrolled identity" in rows["left untouched"][6]
    assert "Done: disclosed video written" in banner and "1 left untouched" in banner
    verify = result["verify"]
    assert verify["status"] == "synthetic" and verify["c2pa"]["state"] == "trusted"
    # every window that reads an id reads this one (a window of a small clip may read none: no evidence)
    assert {w["output_id"] for w in verify["video"]["windows"]} - {None} == {result["output_id"]}
    assert pending_video_jobs(home) == [] and video_job_folders(home) == []

    banner, report = operator.predict(handle_file(download), api_name="/verify")  # a video reads per window
    assert report["status"] == "synthetic" and report["ledger"]["output_id"] == result["output_id"]
    assert "Per time window" in banner and result["output_id"] in banner


def test_video_swap_of_every_face_is_refused_when_one_is_not_enrolled(studio_app, operator, clip) -> None:
    _, home, _ = studio_app
    before = outputs_on_disk(home)
    banner, player, download, _, result = swap_video(operator, clip, faces="all")
    assert result["status"] == "refused" and result["rule"] == "not_enrolled", result
    assert "Refused by the consent gate" in banner and player is None and download is None
    assert outputs_on_disk(home) == before
    assert pending_video_jobs(home) == [] and video_job_folders(home) == []


def test_lossless_video_is_offered_for_download_not_played(operator, clip) -> None:
    banner, player, download, _, result = swap_video(operator, clip, codec="ffv1")
    assert result["status"] == "done" and result["video"]["codec"] == "ffv1", result
    assert player is None and Path(download).read_bytes() == Path(result["output"]).read_bytes()
    assert "not playable in a browser" in banner


def test_an_image_is_refused_as_a_target_video(studio_app, operator) -> None:
    banner, _, _, _, result = swap_video(operator, DEMO / "lincoln_1.jpg")
    assert result["status"] == "error" and result["error"] == "bad_input", result
    assert "lincoln_1.jpg is not a video file" in banner


def test_video_uploads_are_held_to_their_own_size_and_duration_limits(tmp_path, clip) -> None:
    from likeness.errors import BadInput
    from likeness.webapp.studio import Studio, UploadLimits

    home = Home(root=tmp_path / "limits").ensure()
    limits = UploadLimits(image_mb=1, video_mb=1, video_seconds=1)
    studio = Studio(home, UserStore.for_home(home), auth_required=False, limits=limits)
    with pytest.raises(
        BadInput, match=r"douglass_and_pasteur.mp4 runs 2 s; this studio accepts videos up to 1 s"
    ):
        studio.check_video(clip)
    big = tmp_path / "big.mp4"
    big.write_bytes(clip.read_bytes() + os.urandom(1024 * 1024))
    with pytest.raises(BadInput, match=r"big.mp4 is 1\.\d MB; this studio accepts videos up to 1 MB"):
        studio.check_video(big)
    assert studio.check_upload(clip, "video") == clip and studio.limits.largest_mb == 1


@pytest.mark.video
def test_cancelled_video_job_keeps_its_segments_and_resumes(tmp_path, studio_app, operator) -> None:
    import re

    from gradio_client import handle_file

    app, home, _ = studio_app
    longer = portrait_clip(tmp_path / "longer.mp4", ("douglass_1.jpg", "pasteur_1.jpg"), seconds=3.0)
    before = outputs_on_disk(home)
    args = [
        "identity",
        "Frederick Douglass",
        None,
        handle_file(str(longer)),
        "research",
        "consented",
        "h264",
        18,
    ]
    job = operator.submit(*args, api_name="/swap_video")
    deadline = time.monotonic() + 60
    while True:  # cancel once a few 0.5 s segments are finished, well before the end (45 frames)
        assert time.monotonic() < deadline and not job.done(), "the job ended before it could be cancelled"
        units = job.status().progress_data or []
        found = re.search(r"frame (\d+)/45", units[-1].desc or "") if units else None
        if found and int(found.group(1)) >= 12:
            break
        time.sleep(0.02)
    assert job.cancel()
    while app.studio.video_jobs_running():  # the worker stops after its current frame
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert outputs_on_disk(home) == before  # nothing under an output name, nothing recorded
    (pending,) = pending_video_jobs(home)
    planned = Path(json.loads((pending / "job.json").read_text())["out"])
    (folder,) = video_job_folders(home)
    assert not planned.exists() and folder.name == f".{planned.name}.likeness-job"
    assert sorted(folder.glob("seg_*"))  # finished segments, kept for the rerun

    _, _, _, _, result = swap_video(operator, longer)  # the same job again: it resumes
    assert result["status"] == "done" and result["resumed"] and result["output"] == str(planned), result
    assert result["video"]["reused_segments"] >= 1 and result["video"]["frames"] == 45
    windows = result["verify"]["video"]["windows"]  # resumed segments carry the same id as the new ones
    assert {w["output_id"] for w in windows} - {None} == {result["output_id"]} and result["verify"][
        "status"
    ] == "synthetic"
    assert pending_video_jobs(home) == [] and video_job_folders(home) == []


def test_pending_video_jobs_not_resumed_in_time_are_deleted(tmp_path) -> None:
    from likeness.disclosure.footage_sink import job_folder
    from likeness.webapp.studio import PENDING_VIDEO_HOURS, Studio

    home = Home(root=tmp_path / "sweep").ensure()
    studio = Studio(home, UserStore.for_home(home), auth_required=False)
    jobs = {}
    for name, age_hours in (("stale", PENDING_VIDEO_HOURS + 1), ("recent", 1)):
        out = studio.outputs_root / "ada" / "session" / f"likeness-{name}.mp4"
        folder = job_folder(out)
        folder.mkdir(parents=True)
        (folder / "seg_00000.mp4").write_bytes(b"segment")
        pending = studio.work_root / "video" / "ada" / name
        pending.mkdir(parents=True)
        (pending / "job.json").write_text(json.dumps({"out": str(out), "target": "clip.mp4"}))
        stamp = time.time() - age_hours * 3600
        os.utime(pending / "job.json", (stamp, stamp))
        jobs[name] = (pending, folder)
    assert studio.sweep_video_jobs() == [jobs["stale"][0]]
    assert not jobs["stale"][0].exists() and not jobs["stale"][1].exists()
    assert jobs["recent"][0].exists() and jobs["recent"][1].exists()


def test_the_documented_api_example_runs(studio_app, clip, tmp_path, monkeypatch, capsys) -> None:
    """The gradio_client example in docs/app.md, run as written against this module's studio."""
    import re
    import shutil

    text = (Path(__file__).resolve().parents[1] / "docs" / "app.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert '"http://127.0.0.1:7860/"' in code and '("otto", "operator passphrase 2")' in code
    code = code.replace('"http://127.0.0.1:7860/"', repr(studio_app[0].url))
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(DEMO / "douglass_1.jpg", tmp_path / "target.jpg")
    shutil.copyfile(clip, tmp_path / "footage.mp4")
    namespace: dict[str, object] = {}
    exec(compile(code, "docs/app.md", "exec"), namespace)
    result, video, report = namespace["result"], namespace["video_result"], namespace["report"]
    assert result["status"] == "done" and report["status"] == "synthetic", (result, report)
    assert video["status"] == "done" and [t["decision"] for t in video["tracks"]].count("swapped") == 1
    assert "Frederick Douglass" in capsys.readouterr().out


# -- bad uploads and the start line ----------------------------------------------------------------
def png_bomb(path: Path, side: int = 30_000) -> Path:
    """A valid 1-bit PNG whose header claims side×side pixels (900 MP): about 110 kB on disk."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row, packer = b"\x00" * (1 + (side + 7) // 8), zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    png = chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png)
    return path


def bad_uploads(folder: Path) -> dict[str, Path]:
    """Six files that are not usable pictures, each named as if it were one (or a video)."""
    import wave

    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "notes.jpg"
    text.write_text("a shopping list, not a JPEG\n")
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    noise = folder / "noise.jpg"
    noise.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    broken = folder / "broken.mp4"  # an MP4 header, then garbage: no movie box anywhere
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + noise.read_bytes())
    sound = folder / "sound.jpg"
    with wave.open(str(sound), "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\x00\x00" * 8000)
    return {
        "text": text,
        "empty": empty,
        "noise": noise,
        "broken_mp4": broken,
        "wav": sound,
        "bomb": png_bomb(folder / "bomb.png"),
    }


PROBLEM_AS_IMAGE = {  # what likeness says about each file where a picture is expected
    "text": "not an image that can be read (it looks like a text file)",
    "empty": "the file is empty (0 bytes)",
    "noise": "not an image that can be read (it looks like unknown binary data)",
    "broken_mp4": "not an image that can be read (it looks like an MP4/MOV video",
    "wav": "not an image that can be read (it looks like a WAV audio file)",
    "bomb": "the image claims implausibly large dimensions",
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    return bad_uploads(tmp_path_factory.mktemp("bad-uploads"))


def said_clearly(banner: str, result: dict, name: str, problem: str) -> None:
    """The page names the file and the problem (no Gradio error, no server path)."""
    assert result["status"] == "error" and result["error"] == "bad_input", result
    assert f"{name}: {problem}" in result["reason"], result
    assert "This file cannot be used" in banner and name in banner
    assert "/app/cache/" not in banner + json.dumps(result)


@pytest.mark.parametrize("kind", list(PROBLEM_AS_IMAGE))
def test_a_bad_upload_is_named_with_its_problem_wherever_it_is_uploaded(
    kind, studio_app, admin, operator, bad_files
) -> None:
    from gradio_client import handle_file

    _, home, _ = studio_app
    bad = bad_files[kind]
    name, problem = bad.name, PROBLEM_AS_IMAGE[kind]
    before = outputs_on_disk(home)

    _, choice, note, faces = operator.predict(handle_file(str(bad)), api_name="/faces")
    said_clearly(note, faces, name, problem)
    assert [value for _, value in choice["choices"]] == ["all"]

    banner, _, _, result = swap(operator, str(bad))  # as the target
    said_clearly(banner, result, name, problem)
    lincoln = handle_file(str(DEMO / "lincoln_1.jpg"))
    *_, result = operator.predict(
        "photo", None, handle_file(str(bad)), lincoln, "education", "all", api_name="/swap"
    )
    assert result["status"] == "error" and f"{name}: {problem}" in result["reason"], result

    _, _, _, checked = admin.predict([handle_file(str(bad))], api_name="/check_photos")
    assert not checked["ok"] and checked["photos"][0]["message"].startswith(f"{name}: {problem}"), checked
    banner, enrolled = admin.predict("Nobody", [handle_file(str(bad))], api_name="/enrol")
    said_clearly(banner, enrolled, name, problem)

    # verify never refuses a file it can partly read: it reports what it found, and why the pixels
    # could not be read, naming the file and the problem
    banner, report = operator.predict(handle_file(str(bad)), api_name="/verify")
    video_problem = "not a video container that can be read"
    assert report["status"] == "none" and report["c2pa"]["state"] == "absent", report
    assert report["unreadable"].startswith(f"{name}: {video_problem if kind == 'broken_mp4' else problem}")
    assert "could not be decoded" in banner and name in banner
    assert "/app/cache/" not in banner + json.dumps(report)

    banner, _, _, _, video = swap_video(operator, bad)
    if kind == "broken_mp4":
        said_clearly(banner, video, name, video_problem)
    else:
        assert video["reason"] == f"{name} is not a video file" and name in banner, video
    assert outputs_on_disk(home) == before


def test_a_bad_consent_document_is_named_with_its_problem(admin, bad_files) -> None:
    from gradio_client import handle_file

    form = ["Frederick Douglass", ["education"], ["source"], ["image"], "", "2026-12-31", USES, ""]
    form += ["rights_expired", "", "died 1895; photograph in the public domain", "", "1895-02-20", "US-DC"]
    form += ["", "", ""]
    problems = {
        "empty": "the consent document is empty (0 bytes)",
        "wav": "the consent document is not a PDF, JPEG or PNG file",
        "broken_mp4": "the consent document is not a PDF, JPEG or PNG file",  # no Gradio "Invalid file type"
    }
    for kind, problem in problems.items():
        bad = bad_files[kind]
        banner, result = admin.predict(*form, handle_file(str(bad)), api_name="/grant")
        said_clearly(banner, result, bad.name, problem)


def test_the_start_line_gives_the_local_address_and_no_share_hint(tmp_path, monkeypatch, capfd) -> None:
    # Gradio's upload folder is process-wide (GRADIO_TEMP_DIR): give it back to the module's app afterwards
    monkeypatch.setenv("GRADIO_TEMP_DIR", os.environ["GRADIO_TEMP_DIR"])
    from likeness.webapp.server import AppSettings, launch, start_line

    capfd.readouterr()
    app = launch(
        AppSettings(home=Home(root=tmp_path / "home").ensure(), port=free_port()), prevent_thread_lock=True
    )
    try:
        out, err = capfd.readouterr()
    finally:
        app.close()
    assert f"likeness studio: {app.url} — reachable from this machine only" in out, out
    assert "data home" in err
    for gradio_line in ("share=True", "public link", "public URL", "Running on local URL"):
        assert gradio_line not in out + err
    wide = start_line("http://localhost:7860/", "0.0.0.0", auth_required=True)
    assert "reachable from other machines" in wide and "sign-in required" in wide


def test_generate_through_the_api_is_disclosed_and_a_likeness_without_consent_is_refused(
    studio_app, operator, tmp_path_factory
) -> None:
    """The Generate tab's endpoint: a tiny random-weight pipeline built here (nothing downloaded)."""
    pytest.importorskip("diffusers")
    from gradio_client import handle_file

    from tiny_diffusers import build_sd_pipeline

    ids = studio_app[2]
    model = build_sd_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd", licence="creativeml-openrail-m")
    banner, image, result = operator.predict(
        str(model), "a lighthouse at dusk", "education", "", "", 2, 1, "192x192", api_name="/generate"
    )
    assert result["status"] == "done", result
    assert "Generated and disclosed" in banner and result["output_id"] in banner
    _, report = operator.predict(handle_file(image), api_name="/verify")
    assert report["status"] == "synthetic" and report["watermark"]["output_id"] == result["output_id"]
    assert report["c2pa"]["digital_source_type"].endswith("/trainedAlgorithmicMedia")

    darwin = ids["darwin"][0]  # consented to swaps, not to new images of him
    banner, image, result = operator.predict(
        str(model), "a portrait", "education", darwin, "", 2, 1, "192x192", api_name="/generate"
    )
    assert result["status"] == "refused" and result["exit_code"] == 3, result
    assert image is None and "generate" in result["reason"]
