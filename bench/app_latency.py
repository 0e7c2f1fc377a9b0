"""How quickly the studio is usable, and how long one swap takes through the browser.

Usage: python bench/app_latency.py [--swaps N] [--videos N] [--chromium /usr/bin/chromium] [--keep DIR]

Starts the app the way a user does (`likeness app`, or `python app/launch.py` if the `app` command is
not registered), in a fresh data home with one admin user and two enrolled, consenting public-domain
portraits (Darwin, Lincoln), then drives Debian's chromium with Playwright and prints:

  * start → HTTP up: the server answers on its port;
  * start → sign-in page usable: the login form is on screen;
  * sign-in → studio usable: the Swap tab is on screen with the signed-in user;
  * per swap through the UI: click on Swap → the result banner (consent + disclosure) is shown; the
    first one also loads the face models (the app keeps them loaded for the next jobs);
  * per swap through gradio_client, for comparison, with the "load models" stage the pipeline reports;
  * per video swap through the UI: click on Swap video → the result (player, per-track report), for a
    2 s 320×240 clip of two portraits (Lincoln consents, Pasteur is left untouched) with an AAC track.

Only the bundled demo portraits are used (the clip is made from them with tests/test_app_api.py's helper).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "src" / "likeness" / "demo_assets"
sys.path.insert(0, str(REPO / "tests"))  # the clip helper and video_fixtures
ADMIN = ("bench", "bench passphrase 1")
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_home(root: Path) -> None:
    from likeness.consent.registry import Registry
    from likeness.home import Home
    from likeness.jobs.enrol import enrol_identity
    from likeness.jobs.requests import EnrolRequest
    from likeness.users import UserStore

    home = Home(root=root).ensure()
    UserStore.for_home(home).add(*ADMIN, "admin")
    for name, photo, died in (
        ("Charles Darwin", "darwin_1.jpg", "1882-04-19"),
        ("Abraham Lincoln", "lincoln_1.jpg", "1865-04-15"),
    ):
        identity = enrol_identity(EnrolRequest(name=name, photos=[DEMO / photo], operator="bench"), home=home)
        with Registry.open(home) as registry:
            registry.grant(
                identity.id,
                purposes=["education"],
                roles=["source", "target"],
                media=["image", "video"],
                valid_until=dt.date.today() + dt.timedelta(days=30),
                uses="likeness app latency benchmark on public-domain portraits",
                operator="bench",
                capacity="rights_expired",
                date_of_death=dt.date.fromisoformat(died),
                jurisdiction="US-NY",
                basis="died over 100 years ago; photograph in the public domain",
            )


def app_command(home: Path, port: int) -> list[str]:
    likeness = shutil.which("likeness")
    if likeness:
        probe = subprocess.run([likeness, "app", "--help"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return [likeness, "app", "--home", str(home), "--port", str(port)]
    return [sys.executable, str(REPO / "app" / "launch.py"), "--home", str(home), "--port", str(port)]


def wait_http(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer")


def ui_swap(page, timeout_ms: int) -> float:
    page.get_by_role("tab", name="Swap", exact=True).click()
    page.locator("#swap-identity input").click()
    page.locator("#swap-identity [role=option]").filter(has_text="Charles Darwin").first.click()
    page.locator("#swap-purpose input").click()
    page.locator("#swap-purpose [role=option]").filter(has_text="education").first.click()
    remove = page.locator("#swap-target button[aria-label='Remove Image']")
    if remove.count():
        remove.first.click()
        page.wait_for_function(
            "() => !(document.querySelector('#swap-faces-note')?.innerText || '').includes('found')",
            timeout=timeout_ms,
        )
    page.locator("#swap-target input[type=file]").set_input_files(str(DEMO / "lincoln_1.jpg"))
    page.locator("#swap-faces-note").filter(has_text="found").wait_for(timeout=timeout_ms)
    started = time.perf_counter()
    page.locator("#swap-run").click()
    page.locator("#swap-result .lk-working").wait_for(timeout=timeout_ms)
    page.locator("#swap-result .lk-ok").wait_for(timeout=timeout_ms)
    return time.perf_counter() - started


def ui_video_swap(page, clip: Path, timeout_ms: int) -> float:
    page.get_by_role("tab", name="Swap", exact=True).click()
    page.locator("#swap-target-kind").get_by_text("Video", exact=True).click()
    remove = page.locator("#swap-target-video button[aria-label='Clear']")
    if remove.count():
        remove.first.click()
    page.locator("#swap-target-video input[type=file]").set_input_files(str(clip))
    page.locator("#swap-target-video video").first.wait_for(timeout=timeout_ms)
    started = time.perf_counter()
    page.locator("#swap-video-run").click()
    page.locator("#swap-result .lk-working").wait_for(timeout=timeout_ms)
    page.locator("#swap-result .lk-ok").filter(has_text="disclosed video").wait_for(timeout=timeout_ms)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--swaps", type=int, default=3, help="swaps through the UI (and through the API)")
    parser.add_argument("--videos", type=int, default=1, help="video swaps through the UI")
    parser.add_argument("--chromium", default=os.environ.get("LIKENESS_CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the data home here instead of a temp dir"
    )
    args = parser.parse_args()
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_OFFLINE"] = "1"

    work = Path(tempfile.mkdtemp(prefix="likeness-app-bench-")) if args.keep is None else args.keep
    home = work / "home"
    prepare_home(home)
    from test_app_api import portrait_clip

    clip = portrait_clip(work / "lincoln_and_pasteur.mp4")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    command = app_command(home, port)
    timeout_ms = 120_000
    rows: list[tuple[str, float]] = []

    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        started = time.perf_counter()
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_http(url, time.monotonic() + 120)
            rows.append(("start → HTTP up", time.perf_counter() - started))
            page.goto(url)
            page.get_by_role("button", name="Login").wait_for(timeout=timeout_ms)
            rows.append(("start → sign-in page usable", time.perf_counter() - started))
            signing_in = time.perf_counter()
            page.get_by_label("username").fill(ADMIN[0])
            page.get_by_label("password").fill(ADMIN[1])
            page.get_by_role("button", name="Login").click()
            page.locator("#lk-header .lk-user").wait_for(timeout=timeout_ms)
            page.locator("#swap-run").wait_for(timeout=timeout_ms)
            rows.append(("sign-in → studio usable", time.perf_counter() - signing_in))
            ui_times = [ui_swap(page, timeout_ms) for _ in range(args.swaps)]
            video_times = [ui_video_swap(page, clip, timeout_ms) for _ in range(args.videos)]

            from gradio_client import Client, handle_file

            client = Client(url, auth=ADMIN, verbose=False, download_files=str(work / "downloads"))
            api_times, load_times = [], []
            for _ in range(args.swaps):
                begun = time.perf_counter()
                result = client.predict(
                    "identity",
                    "Charles Darwin",
                    None,
                    handle_file(str(DEMO / "lincoln_1.jpg")),
                    "education",
                    "all",
                    api_name="/swap",
                )[-1]
                api_times.append(time.perf_counter() - begun)
                assert result["status"] == "done", result
                load_times.append(result["timings_s"].get("load models", 0.0))
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
            browser.close()

    launcher = "likeness app" if command[1] == "app" else "python app/launch.py"
    print(f"likeness studio latency ({launcher}; {os.cpu_count()} CPUs; target lincoln_1.jpg 1024×1320)")
    width = 52
    print(f"{'step':<{width}}{'seconds':>10}")
    for name, seconds in rows:
        print(f"{name:<{width}}{seconds:>10.2f}")
    for label, times in (
        ("swap through the UI (click → result)", ui_times),
        ("swap through gradio_client", api_times),
        ("  of which 'load models' (pipeline stage)", load_times),
        ("video swap through the UI, 2 s 320×240 clip", video_times),
    ):
        if not times:
            continue
        print(f"{label + f', median of {len(times)}':<{width}}{statistics.median(times):>10.2f}")
        print(f"{'  each':<{width}}{'  '.join(f'{t:.2f}' for t in times):>10}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
