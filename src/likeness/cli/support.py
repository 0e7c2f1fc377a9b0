"""Plumbing shared by the CLI commands: error → exit code mapping, JSON output, progress lines.

Kept apart from ``cli.py`` so the commands read as a list of what the tool does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from likeness.errors import LikenessError

F = TypeVar("F", bound=Callable[..., Any])

DEBUG_ENV = "LIKENESS_DEBUG"


def to_jsonable(value: Any) -> Any:
    """Dataclasses, paths, dates and numpy scalars/arrays → plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_dict"):
            return to_jsonable(value.to_dict())
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, bytes):
        return value.hex()
    return value


def emit_json(value: Any) -> None:
    click.echo(json.dumps(to_jsonable(value), indent=2, sort_keys=False, ensure_ascii=False))


def _report_error(error: LikenessError, as_json: bool) -> None:
    if as_json:
        emit_json(error.to_dict())
    label = {3: "refused", 4: "bad input", 2: "usage"}.get(error.exit_code, "error")
    rule = getattr(error, "rule", None)
    if error.kind == "policy":
        label = "refused by the consent policy"
    elif error.kind == "licence":
        label = "refused by the model licences"
    elif rule:
        label = f"refused (rule {rule})"
    click.echo(f"likeness: {label}: {error.reason}", err=True)
    if error.hint:
        click.echo(f"  → {error.hint}", err=True)


def handle_errors(command: F) -> F:
    """Map typed errors to the documented exit codes; never show a traceback unless debugging."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return command(*args, **kwargs)
        except LikenessError as error:
            _report_error(error, as_json)
            sys.exit(error.exit_code)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except KeyboardInterrupt:
            click.echo(
                "likeness: interrupted; nothing was written under the output name (run the same command "
                "again: a video job resumes from its finished segments)",
                err=True,
            )
            sys.exit(130)
        except Exception as error:
            if os.environ.get(DEBUG_ENV):
                raise
            message = f"unexpected internal error: {type(error).__name__}: {error}"
            if as_json:
                emit_json({"error": "internal", "reason": message, "exit_code": 1})
            click.echo(f"likeness: error: {message}", err=True)
            click.echo(
                f"  → nothing was written; rerun with {DEBUG_ENV}=1 for details and report it", err=True
            )
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


class ProgressLine:
    """Writes one progress line to stderr (rewritten in place on a terminal).

    Silent for jobs that finish within ``delay`` seconds, so quick commands stay quiet.
    """

    def __init__(self, title: str, *, enabled: bool = True, delay: float = 1.0) -> None:
        self.title = title
        self.enabled = enabled
        self.delay = delay
        self.started = time.monotonic()
        self.shown = False
        self.tty = sys.stderr.isatty()

    def __call__(self, stage: str, fraction: float) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        if elapsed < self.delay and fraction < 1.0:
            return
        if fraction >= 1.0 and not self.shown:
            return
        text = f"{self.title}: {stage:<12} {fraction * 100:3.0f}%  {elapsed:5.1f}s"
        if self.tty:
            click.echo(f"\r{text}", err=True, nl=fraction >= 1.0)
        else:
            click.echo(text, err=True)
        self.shown = True
