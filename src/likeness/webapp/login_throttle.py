"""Sign-in back-off per client, with a message that says so.

Gradio's login route only asks a password check yes or no, and its page says "incorrect
credentials" on every refusal. Locking a *user name* after failures (what the app did before) let a
stranger who knows only the name lock that user out forever. This ASGI middleware sits in front of
``POST /login`` instead:

* it counts failed sign-ins per **client address and user name**: after ``FAILURES`` in a row that
  client must wait ``BASE_SECONDS``, doubling with every further failure up to ``MAX_SECONDS``;
  other clients (the user's own browser) are not affected;
* while a client waits, it answers ``429`` with a JSON ``detail`` saying that sign-in is locked,
  for how long and why; ``LOGIN_PAGE_SCRIPT``, which the middleware adds to every HTML page it
  serves (Gradio leaves its own ``head`` option out of the login page), shows that text on the
  login form, where Gradio would show nothing for a 429;
* a successful sign-in clears that client's count.

State lives in the middleware instance of one app (nothing global).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

FAILURES = 5
BASE_SECONDS = 30.0
MAX_SECONDS = 900.0
LOGIN_PATHS = ("/login", "/login/")
MAX_BODY = 64 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOGIN_PAGE_SCRIPT = """<script>
(() => {
  const fetch0 = window.fetch;
  window.fetch = async (...args) => {
    const response = await fetch0(...args);
    try {
      const url = String((args[0] && args[0].url) || args[0]);
      if (/\\/login\\/?$/.test(url) && response.status === 429) {
        const detail = (await response.clone().json()).detail;
        let note = document.getElementById("lk-login-locked");
        if (!note) {
          note = document.createElement("p");
          note.id = "lk-login-locked";
          note.style.cssText = "color:#b42318;font-weight:600;margin:0.5em 0";
          const form = document.querySelector("form") || document.body;
          form.prepend(note);
        }
        note.textContent = detail;
      }
    } catch (error) { /* never break sign-in over a message */ }
    return response;
  };
})();
</script>"""


@dataclass
class _Count:
    failures: int = 0
    locked_until: float = 0.0


@dataclass
class Throttle:
    """The per-(client, name) counts; ``clock`` is injectable for tests."""

    clock: Callable[[], float] = time.monotonic
    counts: dict[tuple[str, str], _Count] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_seconds(self, client: str, name: str) -> float:
        with self.lock:
            count = self.counts.get((client, name))
            return 0.0 if count is None else max(0.0, count.locked_until - self.clock())

    def failed(self, client: str, name: str) -> None:
        with self.lock:
            count = self.counts.setdefault((client, name), _Count())
            count.failures += 1
            if count.failures >= FAILURES:
                wait = min(MAX_SECONDS, BASE_SECONDS * 2 ** (count.failures - FAILURES))
                count.locked_until = self.clock() + wait

    def succeeded(self, client: str, name: str) -> None:
        with self.lock:
            self.counts.pop((client, name), None)

    def message(self, name: str, wait: float) -> str:
        return (
            f"Sign-in for '{name}' from this browser is locked for {wait:.0f} more seconds after "
            f"{FAILURES} or more failed attempts. Other browsers and devices are not affected; "
            "ask an administrator if you forgot the password."
        )


class LoginThrottle:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp, throttle: Throttle | None = None) -> None:
        self.app = app
        self.throttle = throttle or Throttle()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "http" and scope.get("method") == "GET":
            await self.app(scope, receive, _with_script(send))
            return
        if (
            scope.get("type") != "http"
            or scope.get("method") != "POST"
            or scope.get("path") not in LOGIN_PATHS
        ):
            await self.app(scope, receive, send)
            return
        body, messages = await _read_body(receive)
        headers = dict(scope.get("headers") or [])
        name = _username(headers.get(b"content-type", b""), body)
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.throttle.wait_seconds(client, name)
        if wait > 0:
            await _json(send, 429, {"detail": self.throttle.message(name, wait)})
            return

        replay = list(messages)

        async def replayed() -> Message:
            return replay.pop(0) if replay else {"type": "http.request", "body": b"", "more_body": False}

        status: dict[str, int] = {}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        await self.app(scope, replayed, watch)
        if status.get("code") == 200:
            self.throttle.succeeded(client, name)
        elif status.get("code") == 400:
            self.throttle.failed(client, name)


def _with_script(send: Send) -> Send:
    """``send`` for an HTML page: the page with :data:`LOGIN_PAGE_SCRIPT` before ``</head>``."""
    start: dict[str, Message] = {}
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers") or [])
            html = headers.get(b"content-type", b"").startswith(b"text/html")
            if not html or headers.get(b"content-encoding"):
                await send(message)
                return
            start["message"] = message
            return
        if "message" not in start:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        page = b"".join(chunks).replace(b"</head>", LOGIN_PAGE_SCRIPT.encode() + b"</head>", 1)
        head = start.pop("message")
        headers = [(k, v) for k, v in head.get("headers") or [] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(page)).encode()))
        await send({**head, "headers": headers})
        await send({"type": "http.response.body", "body": page})

    return wrapped


def _username(content_type: bytes, body: bytes) -> str:
    """The ``username`` field of a login form, URL-encoded (API clients) or multipart (the page)."""
    if content_type.lower().startswith(b"multipart/form-data"):
        import email.parser
        import email.policy

        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type + b"\r\n\r\n" + body
        )
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "username":
                return str(part.get_content()).strip()
        return ""
    fields = parse_qs(body.decode("utf-8", "replace"))
    return (fields.get("username") or [""])[0].strip()


async def _read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    messages: list[Message] = []
    body = b""
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body") or len(body) > MAX_BODY:
            break
    return body, messages


async def _json(send: Send, status: int, data: dict[str, Any]) -> None:
    payload = json.dumps(data).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
