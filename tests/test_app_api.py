"""The studio's API through gradio_client: roles enforced on the server, swaps, refusals, verify, audit.

One app runs in-process on a free port for the module, with its own data home and two app users.
Inputs are the public-domain demo portraits; outputs stay under pytest's tmp folder.
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


def seed(home: Home, name: str, photos: list[str], purposes: list[str]) -> tuple[str, str]:
    """Enrol through the pipeline and record a rights-expired consent; returns (identity id, consent id)."""
    from likeness.consent.registry import Registry
    from likeness.pipeline import EnrolRequest, enrol_identity

    identity = enrol_identity(
        EnrolRequest(name=name, photos=[DEMO / p for p in photos], operator="seed"), home=home
    )
    with Registry.open(home) as registry:
        record = registry.grant(
            identity.id,
            purposes=purposes,
            roles=["source", "target"],
            media=["image"],
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
        "douglass": seed(home, "Frederick Douglass", ["douglass_1.jpg"], ["research"]),
    }
    app = launch(
        AppSettings(home=home, port=free_port(), quiet=True, max_upload_mb=2), prevent_thread_lock=True
    )
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
    expected |= {"/revoke", "/erase", "/verify", "/audit_check", "/ledger", "/export_ledger"}
    assert expected <= names


def test_whoami_reports_the_signed_in_role(admin, operator) -> None:
    assert admin.predict(api_name="/whoami")[1] == {"user": "ada", "role": "admin"}
    assert operator.predict(api_name="/whoami")[1] == {"user": "otto", "role": "operator"}


def test_wrong_password_is_refused(studio_app) -> None:
    from gradio_client import Client

    with pytest.raises(ValueError, match=r"(?i)could not login|incorrect"):
        Client(studio_app[0].url, auth=(ADMIN[0], "not the password"), verbose=False)


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


def test_uploads_over_the_size_limit_are_refused(tmp_path, operator) -> None:
    from gradio_client import handle_file

    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(3 * 1024 * 1024))  # over the 2 MB limit of this app
    with pytest.raises(Exception, match=r"(?i)size|large|413"):
        operator.predict(handle_file(str(big)), api_name="/verify")


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
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    _, home, _ = studio_app
    fake = tmp_path / "portrait.jpg"
    fake.write_text("this is not a JPEG")
    before = outputs_on_disk(home)
    with pytest.raises(AppError):
        operator.predict(
            "identity", "Charles Darwin", None, handle_file(str(fake)), "education", "all", api_name="/swap"
        )
    assert outputs_on_disk(home) == before


def test_without_users_the_app_runs_on_localhost_only_and_the_local_user_is_admin(
    tmp_path, monkeypatch
) -> None:
    from gradio_client import Client

    # Gradio's upload folder is process-wide (GRADIO_TEMP_DIR): give it back to the module's app afterwards
    monkeypatch.setenv("GRADIO_TEMP_DIR", os.environ["GRADIO_TEMP_DIR"])

    from likeness.errors import UsageError
    from likeness.pipeline import default_operator
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
