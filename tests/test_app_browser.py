"""The studio in a real browser: Playwright drives Debian's chromium through the daily work.

Sign in → enrol two people (with the photo check) → record their consent (images and video) → swap
one face picked in a two-face target → a refused swap → verify the downloaded output → verify an
edited copy (tampered) → swap the consenting face in a short clip (the bystander is left untouched)
→ revoke → the same swap is refused → people → audit with the model licences → an operator sees the
registry read-only. Only the public-domain demo portraits are used, so the screenshots may be
published: set LIKENESS_SCREENSHOTS=docs/screenshots to keep them.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"

import datetime as dt
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from likeness.home import Home
from likeness.users import UserStore
from test_app_api import bad_uploads, portrait_clip

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("LIKENESS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
]
DEMO = Path(__file__).resolve().parents[1] / "src" / "likeness" / "demo_assets"
ADMIN = ("ada", "admin passphrase 1")
OPERATOR = ("otto", "operator passphrase 2")
TIMEOUT_MS = 60_000
USES = "likeness studio walkthrough: swaps between public-domain 19th-century portraits, for teaching"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_face_target(folder: Path) -> Path:
    """Lincoln and Pasteur side by side (both portraits public domain): a target with two faces."""
    from PIL import Image

    height = 700
    portraits = [Image.open(DEMO / name).convert("RGB") for name in ("lincoln_1.jpg", "pasteur_1.jpg")]
    portraits = [
        p.resize((round(p.width * height / p.height), height), Image.Resampling.LANCZOS) for p in portraits
    ]
    canvas = Image.new("RGB", (sum(p.width for p in portraits) + 20, height), (255, 255, 255))
    canvas.paste(portraits[0], (0, 0))
    canvas.paste(portraits[1], (portraits[0].width + 20, 0))
    path = folder / "lincoln_and_pasteur.jpg"
    canvas.save(path, quality=92)
    return path


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Iterator[tuple[str, Home]]:
    from likeness.webapp.server import AppSettings, launch

    # named like a real installation: the admin's header shows the data home's last two parts
    home = Home(root=tmp_path_factory.mktemp("studio", numbered=False) / "likeness").ensure()
    users = UserStore.for_home(home)
    users.add(*ADMIN, "admin")
    users.add(*OPERATOR, "operator")
    app = launch(AppSettings(home=home, port=free_port(), quiet=True), prevent_thread_lock=True)
    yield app.url, home
    app.close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM}; install Debian's chromium or set LIKENESS_CHROMIUM")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("LIKENESS_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# -- page helpers -----------------------------------------------------------------------------------
def sign_in(page, url: str, who: tuple[str, str]) -> None:
    page.goto(url)
    page.get_by_label("username").fill(who[0])
    page.get_by_label("password").fill(who[1])
    page.get_by_role("button", name="Login").click()
    page.locator("#lk-header .lk-user").wait_for(timeout=TIMEOUT_MS)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def choose(page, elem_id: str, option: str) -> None:
    """Pick the dropdown option whose label starts with ``option``."""
    page.locator(f"#{elem_id} input").click()
    page.locator(f"#{elem_id} [role=option]").filter(
        has_text=re.compile("^\\W*" + re.escape(option))
    ).first.click()


def upload(page, elem_id: str, *files: Path) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files([str(f) for f in files])


def banner_of(page, elem_id: str, expected: str):
    """Wait until the result banner in ``elem_id`` shows ``expected`` in its title; return the banner."""
    banner = page.locator(f"#{elem_id} .lk-banner")
    banner.filter(has_text=expected).first.wait_for(timeout=TIMEOUT_MS)
    return banner.first


def fill(page, elem_id: str, text: str) -> None:
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(text)


def enrol(page, name: str, photo: Path, shots: Path | None) -> None:
    open_tab(page, "People & consent")
    open_tab(page, "Enrol")
    fill(page, "enrol-name", name)
    upload(page, "enrol-photos", photo)
    banner_of(page, "enrol-check", "usable")
    if shots is not None:
        page.screenshot(path=str(shots / "02-enrol-check.png"), full_page=True)
    page.locator("#enrol-run").click()
    banner_of(page, "enrol-result", f"Enrolled {name}")


def grant(page, name: str, died: str) -> None:
    open_tab(page, "People & consent")
    open_tab(page, "Grant consent")
    choose(page, "grant-identity", name)
    choose(page, "grant-capacity", "rights_expired")
    page.locator("#grant-purposes").get_by_text("education", exact=False).click()
    page.locator("#grant-roles").get_by_text("source", exact=False).click()
    page.locator("#grant-roles").get_by_text("target", exact=False).click()
    page.locator("#grant-media").get_by_text("video", exact=False).click()
    fill(page, "grant-until", (dt.date.today() + dt.timedelta(days=180)).isoformat())
    fill(page, "grant-uses", USES)
    fill(page, "grant-dod", died)
    fill(page, "grant-jurisdiction", "US-NY")
    fill(page, "grant-basis", f"{name} died {died}; rights of publicity expired; photograph public domain")
    page.locator("#grant-run").click()
    banner_of(page, "grant-result", "Consent recorded")


def swap(page, target: Path, face: str) -> None:
    """Swap Darwin's likeness onto ``target``; ``face`` is 'all' or the thumbnail index to click."""
    open_tab(page, "Swap")
    choose(page, "swap-purpose", "education")  # the people offered as source depend on the purpose
    choose(page, "swap-identity", "Charles Darwin")
    note = page.locator("#swap-faces-note")
    remove = page.locator("#swap-target button[aria-label='Remove Image']")
    if remove.count():  # start from an empty target so the face picker is fresh
        remove.first.click()
        page.wait_for_function(
            "() => !(document.querySelector('#swap-faces-note')?.innerText || '').includes('found')",
            timeout=TIMEOUT_MS,
        )
    upload(page, "swap-target", target)
    note.filter(has_text="faces found").wait_for(timeout=TIMEOUT_MS)
    if face == "all":
        choose(page, "swap-face", "All faces")
    else:
        page.locator("#swap-faces button.thumbnail-item").nth(int(face)).click()
        expect_value(page, "swap-face", f"Face #{face}")
    page.locator("#swap-run").click()
    page.locator("#swap-result .lk-working").wait_for(timeout=TIMEOUT_MS)


def swap_video(page, clip: Path) -> None:
    """Swap Darwin's likeness onto the consenting faces of ``clip``."""
    open_tab(page, "Swap")
    choose(page, "swap-purpose", "education")  # the people offered as source depend on the purpose
    choose(page, "swap-identity", "Charles Darwin")
    page.locator("#swap-target-kind").get_by_text("Video", exact=True).click()
    page.locator("#swap-video-run").wait_for(timeout=TIMEOUT_MS)
    upload(page, "swap-target-video", clip)
    page.locator("#swap-target-video video").first.wait_for(timeout=TIMEOUT_MS)  # uploaded: its preview plays
    page.locator("#swap-video-run").click()
    page.locator("#swap-result .lk-working").wait_for(timeout=TIMEOUT_MS)


def tampered_copy(path: Path, out: Path) -> Path:
    """``path`` with one bit flipped inside its JPEG picture data (the way an edit or damage would)."""
    data = bytearray(path.read_bytes())
    index = next(i for i in range(data.rindex(b"\xff\xda") + 200, len(data)) if data[i] < 0xF0)
    data[index] ^= 0x01
    out.write_bytes(bytes(data))
    return out


def wait_for_text(page, elem_id: str, text: str) -> None:
    """Wait until the element's rendered text contains ``text`` (tables render cells lazily)."""
    page.wait_for_function(
        "([sel, text]) => (document.querySelector(sel)?.textContent || '').includes(text)",
        arg=[f"#{elem_id}", text],
        timeout=TIMEOUT_MS,
    )


def expect_value(page, elem_id: str, prefix: str) -> None:
    page.wait_for_function(
        "([sel, prefix]) => (document.querySelector(sel)?.value || '').startsWith(prefix)",
        arg=[f"#{elem_id} input", prefix],
        timeout=TIMEOUT_MS,
    )


# -- the walkthrough ----------------------------------------------------------------------------------
def test_admin_walkthrough_enrol_grant_swap_refuse_verify_revoke(studio, browser, shots, tmp_path) -> None:
    url, home = studio
    target = two_face_target(tmp_path)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()

    page.goto(url)
    page.get_by_role("button", name="Login").wait_for(timeout=TIMEOUT_MS)
    page.screenshot(path=str(shots / "01-sign-in.png"))
    sign_in(page, url, ADMIN)
    header = page.locator("#lk-header").inner_text()
    assert "ada" in header and "admin" in header
    assert "data home …/studio/likeness" in header and "pytest" not in header  # shortened, for admins

    # enrolment with the photo quality check, then consent with the full record form
    enrol(page, "Charles Darwin", DEMO / "darwin_1.jpg", shots)
    page.reload()
    page.locator("#lk-header .lk-user").wait_for(timeout=TIMEOUT_MS)
    enrol(page, "Abraham Lincoln", DEMO / "lincoln_1.jpg", None)
    grant(page, "Charles Darwin", "1882-04-19")
    page.screenshot(path=str(shots / "03-grant.png"), full_page=True)
    page.reload()
    page.locator("#lk-header .lk-user").wait_for(timeout=TIMEOUT_MS)
    grant(page, "Abraham Lincoln", "1865-04-15")

    # a swap of the face picked in the face picker: Lincoln (#0), not Pasteur (#1)
    swap(page, target, face="0")
    done = banner_of(page, "swap-result", "Done: disclosed output written")
    text = done.inner_text()
    assert "Charles Darwin as source" in text and "Abraham Lincoln as target" in text
    assert "Invisible watermark reads back: yes" in text
    page.locator("#swap-after img").first.wait_for(timeout=TIMEOUT_MS)
    page.screenshot(path=str(shots / "04-swap.png"), full_page=True)
    with page.expect_download(timeout=TIMEOUT_MS) as download_info:
        page.locator("#swap-download a").first.click()
    downloaded = tmp_path / "downloaded.jpg"
    download_info.value.save_as(downloaded)
    written = sorted((home.root / "outputs" / "ada").rglob("likeness-*"))
    assert len(written) == 1 and downloaded.read_bytes() == written[0].read_bytes()

    # a refusal: replacing every face involves Pasteur, who is not enrolled
    swap(page, target, face="all")
    refused = banner_of(page, "swap-result", "Refused by the consent gate")
    assert "not an enrolled person" in refused.inner_text() and "No file was written" in refused.inner_text()
    page.screenshot(path=str(shots / "05-refused.png"), full_page=True)
    assert len(sorted((home.root / "outputs" / "ada").rglob("likeness-*"))) == 1

    # verify the downloaded file, then an edited copy of it
    open_tab(page, "Verify")
    upload(page, "verify-file", downloaded)
    verdict = banner_of(page, "verify-result", "AI-generated")
    assert "watermark and ledger agree" in verdict.inner_text()
    assert "Content credentials (C2PA): trusted" in verdict.inner_text()
    page.screenshot(path=str(shots / "06-verify.png"), full_page=True)
    page.locator("#verify-file button[aria-label='Clear']").first.click()
    upload(page, "verify-file", tampered_copy(downloaded, tmp_path / "edited.jpg"))
    tampered = banner_of(page, "verify-result", "TAMPERED")
    assert "assertion.dataHash.mismatch" in tampered.inner_text()
    page.screenshot(path=str(shots / "10-tampered.png"), full_page=True)

    # a short clip: Lincoln (consenting target) is replaced, Pasteur (not enrolled) is left as he was
    swap_video(page, portrait_clip(tmp_path / "lincoln_and_pasteur.mp4"))
    video_done = banner_of(page, "swap-result", "Done: disclosed video written")
    assert "1 left untouched" in video_done.inner_text()
    wait_for_text(page, "swap-tracks", "left untouched")
    page.locator("#swap-video-out video").first.wait_for(timeout=TIMEOUT_MS)
    page.screenshot(path=str(shots / "09-video.png"), full_page=True)
    page.locator("#swap-target-kind").get_by_text("Image", exact=True).click()

    # revoke Lincoln's consent; the same swap is refused at once
    open_tab(page, "People & consent")
    open_tab(page, "Revoke")
    choose(page, "revoke-consent", "Abraham Lincoln")
    fill(page, "revoke-reason", "withdrawn by the rights holder (walkthrough)")
    page.locator("#revoke-run").click()
    banner_of(page, "revoke-result", "Consent revoked")
    swap(page, target, face="0")
    again = banner_of(page, "swap-result", "Refused by the consent gate")
    assert "revoked" in again.inner_text()
    # the source picker offers only people whose consent could cover the purpose: not Lincoln now
    page.locator("#swap-identity input").first.click()  # opening it refreshes who is offered
    note = page.locator("#swap-identity-note")
    note.filter(has_text="Abraham Lincoln").wait_for(timeout=TIMEOUT_MS)
    assert "withdrawn on" in note.inner_text() and "Charles Darwin" not in note.inner_text()
    options = page.locator("#swap-identity [role=option]")
    options.first.wait_for(timeout=TIMEOUT_MS)
    offered = options.all_inner_texts()
    assert any("Charles Darwin" in o for o in offered) and not any("Lincoln" in o for o in offered), offered
    page.keyboard.press("Escape")

    # the person page shows the consents and the output; the audit chain checks out
    open_tab(page, "People & consent")
    open_tab(page, "People")
    choose(page, "person-pick", "Abraham Lincoln")
    page.locator("#person-banner .lk-banner").filter(has_text="Abraham Lincoln").wait_for(timeout=TIMEOUT_MS)
    wait_for_text(page, "person-consents", "revoked")
    wait_for_text(page, "person-outputs", "education")
    page.screenshot(path=str(shots / "07-people.png"), full_page=True)
    open_tab(page, "Audit")
    page.locator("#audit-check").click()
    banner_of(page, "audit-result", "Ledger intact")
    page.locator("#audit-load").click()
    wait_for_text(page, "audit-table", "refusal")
    page.screenshot(path=str(shots / "08-audit.png"), full_page=True)
    page.locator("#audit-models").get_by_text("Models and licences").first.click()
    wait_for_text(page, "models-table", "dlib_landmarks_68")
    page.locator("#audit-models").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "11-models.png"), full_page=True)
    context.close()


def test_operator_sees_the_registry_read_only(studio, browser) -> None:
    url, _ = studio
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, url, OPERATOR)
    header = page.locator("#lk-header").inner_text()
    assert "operator" in header and "data home" not in header  # the server's layout is for admins
    open_tab(page, "People & consent")
    page.get_by_text("Read-only for your role").wait_for(timeout=TIMEOUT_MS)
    for admin_only in ("Enrol", "Grant consent", "Revoke", "Erase"):
        tab = page.get_by_role("tab", name=admin_only, exact=True)
        page.wait_for_function("(el) => el.disabled", arg=tab.element_handle(), timeout=TIMEOUT_MS)
    context.close()


def test_a_locked_sign_in_says_it_is_locked(studio, browser) -> None:
    from likeness.webapp.login_throttle import FAILURES

    url, _ = studio
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(url)
    for _ in range(FAILURES):
        page.get_by_label("username").fill("mallory-browser")
        page.get_by_label("password").fill("a wrong guess")
        with page.expect_response(lambda response: response.url.rstrip("/").endswith("/login")):
            page.get_by_role("button", name="Login").click()
    page.get_by_label("username").fill("mallory-browser")
    page.get_by_label("password").fill("a wrong guess")
    page.get_by_role("button", name="Login").click()
    note = page.locator("#lk-login-locked")
    note.wait_for(timeout=TIMEOUT_MS)
    assert "locked" in note.inner_text() and "Other browsers" in note.inner_text()
    sign_in(page, url, OPERATOR)  # the same browser signing in as someone else is not locked out
    context.close()


def test_bad_uploads_are_named_with_their_problem_in_the_page(studio, browser, tmp_path) -> None:
    """A text file named .jpg as the swap target, a WAV renamed .jpg to verify: likeness's own message
    (file name and problem) in the page's banner, not Gradio's generic error."""
    url, _ = studio
    bad = bad_uploads(tmp_path / "bad")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, url, OPERATOR)
    open_tab(page, "Swap")
    upload(page, "swap-target", bad["text"])
    note = banner_of(page, "swap-faces-note", "This file cannot be used").inner_text()
    assert "notes.jpg: not an image that can be read (it looks like a text file)" in note
    open_tab(page, "Verify")
    upload(page, "verify-file", bad["wav"])
    verdict = banner_of(page, "verify-result", "could not be decoded").inner_text()
    assert "sound.jpg: not an image that can be read (it looks like a WAV audio file)" in verdict
    assert "upstream Gradio app" not in page.content()
    assert not page.locator(".toast-body").filter(has_text=re.compile("(?i)error")).count()
    context.close()
