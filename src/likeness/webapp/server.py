"""Starting the studio: environment, auth, file-serving limits, queue, launch.

``prepare_environment`` must run before Gradio is imported (it switches analytics and hub lookups
off and points Gradio's upload cache into the data home); ``launch`` does that itself.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from likeness.errors import UsageError
from likeness.home import Home
from likeness.users import USERS_FILE, UserStore
from likeness.webapp.login_throttle import LoginThrottle
from likeness.webapp.studio import Studio, UploadLimits

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_UPLOAD_MB = 50
DEFAULT_MAX_VIDEO_MB = 1024
DEFAULT_MAX_VIDEO_SECONDS = 600


@dataclass(frozen=True)
class AppSettings:
    home: Home
    host: str = DEFAULT_HOST
    port: int | None = DEFAULT_PORT
    """``None`` or 0 picks a free port."""
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB
    """Largest image or document a user may upload."""
    max_video_mb: int = DEFAULT_MAX_VIDEO_MB
    """Largest video a user may upload (Gradio's own limit is the larger of the two)."""
    max_video_seconds: float = DEFAULT_MAX_VIDEO_SECONDS
    concurrency: int = 2
    """How many heavy jobs (image swap, face detection, enrol, verify) run at once; the rest wait in
    the queue. Also the number of loaded copies of the face models the app keeps."""
    video_concurrency: int = 1
    """How many video swaps run at once (a queue of their own, so footage never blocks image work)."""
    queue_size: int = 64
    backend: str = "dlib"
    quiet: bool = False
    video_segment_seconds: float = 10.0
    """Seconds per resumable segment of a video job: Cancel loses at most this much finished work."""

    def limits(self) -> UploadLimits:
        return UploadLimits(
            image_mb=self.max_upload_mb, video_mb=self.max_video_mb, video_seconds=self.max_video_seconds
        )


@dataclass
class RunningApp:
    """A launched app: ``url`` to open, ``close()`` to stop it."""

    blocks: Any
    url: str
    auth_required: bool
    started_s: float
    studio: Studio | None = None
    """The :class:`~likeness.webapp.studio.Studio` behind the page (its engine pool, its limits)."""

    def close(self) -> None:
        self.blocks.close()


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def needs_auth(host: str, users: UserStore) -> bool:
    """Auth is on whenever app users exist; off only on a loopback address with no users at all."""
    if users.has_users():
        return True
    if is_loopback(host):
        return False
    raise UsageError(
        f"refusing to listen on {host} without app users: anyone who can reach this machine "
        "could use the registry",
        hint="add one first: `likeness users add NAME --role admin` (and operators with --role operator), "
        "or bind to 127.0.0.1",
    )


def prepare_environment(home: Home) -> Path:
    """Set Gradio's environment before it is imported; returns the upload cache folder.

    These are process-wide: run one app per process (tests that start a second app restore them).
    """
    cache = home.root / "app" / "cache"
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    return cache


@dataclass
class LoginGuard:
    """Checks passwords against the user file. Back-off after failed attempts is per client and
    name, in front of the login route (:mod:`likeness.webapp.login_throttle`), so a stranger who
    knows only a user name cannot lock that user out."""

    users: UserStore

    def __call__(self, username: str, password: str) -> bool:
        return self.users.authenticate(username.strip(), password) is not None


def launch(settings: AppSettings, *, prevent_thread_lock: bool = False) -> RunningApp:
    """Build and start the app. Blocks until stopped unless ``prevent_thread_lock``."""
    started = time.perf_counter()
    home = settings.home.ensure()
    users = UserStore.for_home(home)
    auth_required = needs_auth(settings.host, users)
    prepare_environment(home)

    from starlette.middleware import Middleware

    from likeness.webapp.theme import CSS, make_theme
    from likeness.webapp.ui import StudioPage

    studio = Studio(
        home,
        users,
        auth_required=auth_required,
        backend=settings.backend,
        limits=settings.limits(),
        engine_slots=max(1, settings.concurrency),
        video_segment_seconds=settings.video_segment_seconds,
    )
    studio.outputs_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    studio.sweep_video_jobs()
    page = StudioPage(
        studio,
        swap_concurrency=max(1, settings.concurrency),
        video_concurrency=max(1, settings.video_concurrency),
    )
    blocks = page.build()
    blocks.queue(max_size=settings.queue_size, default_concurrency_limit=max(1, settings.concurrency * 2))
    blocked = [
        str(home.keys_dir),
        str(home.db_path),
        str(home.root / USERS_FILE),
        str(studio.work_root),
        str(home.models_dir),
    ]
    _, url, _ = blocks.launch(
        server_name=settings.host,
        server_port=settings.port or None,
        auth=LoginGuard(users) if auth_required else None,
        auth_message=(
            "Sign in with your likeness studio user. An administrator creates users with "
            "<code>likeness users add NAME --role admin|operator</code>."
        ),
        allowed_paths=[str(studio.outputs_root)],
        blocked_paths=blocked,
        max_file_size=f"{settings.limits().largest_mb}mb",
        prevent_thread_lock=True,  # blocks below, after saying where the studio is
        quiet=True,  # Gradio's own lines would invite a public share link (share=True)
        show_error=False,
        ssr_mode=False,
        share=False,
        enable_monitoring=False,
        mcp_server=False,
        pwa=False,
        run_history=False,
        footer_links=["api", "settings"],
        theme=make_theme(),
        css=CSS,
        app_kwargs={"middleware": [Middleware(LoginThrottle)]} if auth_required else None,
    )
    running = RunningApp(
        blocks=blocks,
        url=url,
        auth_required=auth_required,
        started_s=time.perf_counter() - started,
        studio=studio,
    )
    if not settings.quiet:
        print(start_line(url, settings.host, auth_required), flush=True)
        print(f"likeness studio: data home {home.root}", file=sys.stderr, flush=True)
    if not prevent_thread_lock:
        blocks.block_thread()  # until Ctrl+C
    return running


def start_line(url: str, host: str, auth_required: bool) -> str:
    """Where the studio is and who can reach it (likeness never opens a public share link)."""
    access = "sign-in required" if auth_required else "no sign-in: there are no app users yet"
    if is_loopback(host):
        return f"likeness studio: {url} — reachable from this machine only ({access}). Ctrl+C stops it."
    return (
        f"likeness studio: {url} — listening on {host}: reachable from other machines on this network "
        f"({access}). Ctrl+C stops it."
    )
