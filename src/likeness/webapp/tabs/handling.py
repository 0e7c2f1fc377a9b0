"""What every tab's handlers share: the signed-in user, errors turned into results, tables, help.

A handler finds the signed-in user from ``gr.Request``, calls the studio (which checks the role)
and turns the result or the typed error into what the page shows. A refusal or a bad input is a
result, shown in plain words (and ``status: error`` for API clients); only a role violation raises
``gr.Error`` (an exception for API clients, a modal in the browser). Nothing here keeps state
between requests.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import gradio as gr

from likeness.errors import LikenessError
from likeness.users import AppUser, NotAllowed
from likeness.webapp import views
from likeness.webapp.help_texts import HELP
from likeness.webapp.studio import Studio

log = logging.getLogger("likeness.webapp")

PRIVATE: Mapping[str, Any] = MappingProxyType({"api_visibility": "private", "queue": False})
"""Event options for page-only updates: no API endpoint, no queue."""

Failed = Callable[[LikenessError], Any]


@dataclass
class TabParts:
    """What a tab hands the page frame, so that the frame can wire what spans tabs."""

    person_pickers: list[Any] = field(default_factory=list)
    """Dropdowns of enrolled people, refreshed after every registry change."""
    consent_pickers: list[Any] = field(default_factory=list)
    people_tables: list[Any] = field(default_factory=list)
    admin_tabs: list[Any] = field(default_factory=list)
    """Tabs greyed out for operators (the server checks the role too)."""
    role_notes: list[Any] = field(default_factory=list)
    """Where a read-only note is shown to operators."""
    changes: list[Any] = field(default_factory=list)
    """Events after which every picker is refreshed (enrol, grant, revoke, erase, Refresh)."""

    def __add__(self, other: TabParts) -> TabParts:
        return TabParts(
            self.person_pickers + other.person_pickers,
            self.consent_pickers + other.consent_pickers,
            self.people_tables + other.people_tables,
            self.admin_tabs + other.admin_tabs,
            self.role_notes + other.role_notes,
            self.changes + other.changes,
        )


def table(headers: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"headers": headers, "data": rows}


def help_block(key: str) -> None:
    gr.Markdown(HELP[key], elem_classes=["lk-help"])


def labelled(choices: dict[str, object]) -> list[tuple[str, str]]:
    """Policy entries as dropdown choices: "name — description" shown, the name as the value."""
    return [(f"{name} — {getattr(text, 'description', text)}", name) for name, text in choices.items()]


PROFILE_CHOICES = [
    ("default — the label in a corner that avoids faces", "default"),
    ("EU — AI Act Art. 50: 'AI GENERATED' / 'AI MODIFIED' top right", "eu"),
    ("China — GB 45438-2025: large text, AIGC metadata", "cn"),
]


def profile_dropdown(studio: Studio, elem_id: str) -> Any:
    """The disclosure profile picker of a tab that writes media, set to the policy's default."""
    return gr.Dropdown(
        PROFILE_CHOICES,
        value=studio.policy().disclosure_profile,
        label="Disclosure profile",
        info="how the output discloses itself (the label's wording and place; China adds AIGC metadata)",
        elem_id=elem_id,
    )


def banner_and_json(error: LikenessError) -> tuple[str, dict[str, Any]]:
    """The usual failure result: the error's banner and its JSON for API clients."""
    return views.error_banner(error), views.error_json(error)


def not_allowed(error: NotAllowed) -> gr.Error:
    text = error.reason + (f". {error.hint}" if error.hint else "")
    return gr.Error(text, title="Not allowed for your role", print_exception=False)


def internal_error(error: Exception) -> LikenessError:
    log.exception("unexpected error in the app")
    return LikenessError(
        f"unexpected internal error: {type(error).__name__}: {error}",
        hint="nothing was written; the server log has the details — please report it",
    )


def failure(
    error: Exception, failed: Failed, tidy: Callable[[LikenessError], LikenessError] = lambda e: e
) -> Any:
    """A role violation becomes gr.Error; any other error becomes ``failed(tidy(error))``."""
    if isinstance(error, NotAllowed):
        raise not_allowed(error) from None
    if isinstance(error, LikenessError):
        return failed(tidy(error))
    return failed(internal_error(error))


def attempt(
    call: Callable[[], Any], failed: Failed, tidy: Callable[[LikenessError], LikenessError] = lambda e: e
) -> Any:
    """Run ``call``; an error becomes a result (see :func:`failure`), never a traceback on the page."""
    try:
        return call()
    except Exception as error:  # noqa: BLE001 - never a traceback on the page
        return failure(error, failed, tidy)


def stage_reporter(progress: Any) -> Callable[[str, float], None]:
    """A pipeline progress callback that moves Gradio's progress bar, in the page's words."""

    def report(stage: str, fraction: float) -> None:
        progress(min(max(fraction, 0.0), 1.0), desc=views.stage_words(stage))

    return report


class TabBase:
    """A tab's handlers over one ``Studio``; ``swap_concurrency`` heavy jobs (face models) run at once."""

    def __init__(self, studio: Studio, *, swap_concurrency: int = 2, video_concurrency: int = 1) -> None:
        self.studio = studio
        self.swap_concurrency = swap_concurrency
        self.video_concurrency = video_concurrency

    def heavy(self) -> dict[str, Any]:
        """Event options for a job that borrows the face models: it waits in the shared heavy queue."""
        return {"concurrency_id": "heavy", "concurrency_limit": self.swap_concurrency}

    def user(self, request: gr.Request | None) -> AppUser | None:
        return self.studio.user(getattr(request, "username", None) if request is not None else None)

    def attempt(self, call: Callable[[], Any], failed: Failed) -> Any:
        return attempt(call, failed, self.studio.public)

    async def attempt_in_thread(
        self, call: Callable[[], Any], failed: Failed, *, cancel: threading.Event, what: str, user: Any
    ) -> Any:
        """:meth:`attempt` for a long job in a worker thread. A cancel (Cancel, or the API client's)
        sets ``cancel`` so that the worker stops at its next check, and is passed on to Gradio."""
        try:
            return await asyncio.to_thread(call)  # to_thread keeps Gradio's context for progress
        except asyncio.CancelledError:
            cancel.set()
            log.info("%s cancelled by %s", what, getattr(user, "name", None))
            raise
        except Exception as error:  # noqa: BLE001 - never a traceback on the page
            return failure(error, failed, self.studio.public)
