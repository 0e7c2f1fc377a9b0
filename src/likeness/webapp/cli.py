"""``likeness users …`` and ``likeness app``: click commands for the studio.

Register them under the ``likeness`` group in ``likeness/cli/main.py``::

    from likeness.webapp.cli import app, users
    main.add_command(users)
    main.add_command(app)

Importing this module imports click only (not even ``likeness.cli``, which imports it); Gradio
loads when ``likeness app`` runs.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


# likeness.cli imports this module to register the commands, so nothing from likeness.cli is
# imported here at module level (that would be an import cycle); it is looked up per call.
def handled(command: Callable[..., Any]) -> Callable[..., Any]:
    """The CLI's error handling (typed errors → exit codes, no tracebacks), bound at call time."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from likeness.cli.support import handle_errors

        return handle_errors(command)(*args, **kwargs)

    return wrapper


def emit_json(value: Any) -> None:
    from likeness.cli.support import emit_json as emit

    emit(value)


def _home(ctx: click.Context, explicit: Path | None):
    from likeness.home import resolve_home

    chosen = explicit if explicit is not None else ctx.find_root().params.get("home")
    return resolve_home(chosen).ensure()


def home_option(command):
    return click.option(
        "--home",
        "home",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="data home (registry, keys, ledger, app users); default: $LIKENESS_HOME or a per-user folder",
    )(command)


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    return click.prompt("password", hide_input=True, confirmation_prompt=True)


@click.group()
def users() -> None:
    """Manage the app's users (admin: registry administrators; operator: swap and verify)."""


@users.command("add")
@click.argument("name")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["admin", "operator"]),
    help="admin enrols, grants, revokes and erases (and may swap); operator swaps and verifies",
)
@click.option("--password-stdin", is_flag=True, help="read the password from the first line of stdin")
@home_option
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@click.pass_context
@handled
def users_add(
    ctx: click.Context, name: str, role: str, password_stdin: bool, home: Path | None, as_json: bool
) -> None:
    """Add app user NAME with a role; asks for the password (scrypt-hashed in the data home)."""
    from likeness.users import UserStore

    store = UserStore.for_home(_home(ctx, home))
    user = store.add(name, _read_password(password_stdin), role)
    if as_json:
        emit_json(user.to_dict())
    else:
        click.echo(f"added {user.name} ({user.role}) to {store.path}")


@users.command("list")
@home_option
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@click.pass_context
@handled
def users_list(ctx: click.Context, home: Path | None, as_json: bool) -> None:
    """List app users and their roles."""
    from likeness.users import UserStore

    found = UserStore.for_home(_home(ctx, home)).list()
    if as_json:
        emit_json([u.to_dict() for u in found])
        return
    if not found:
        click.echo("no app users; add one with `likeness users add NAME --role admin`")
    for user in found:
        click.echo(f"{user.name:<24} {user.role:<9} since {user.created_at}")


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the new password from the first line of stdin")
@home_option
@click.pass_context
@handled
def users_passwd(ctx: click.Context, name: str, password_stdin: bool, home: Path | None) -> None:
    """Set a new password for NAME."""
    from likeness.users import UserStore

    UserStore.for_home(_home(ctx, home)).set_password(name, _read_password(password_stdin))
    click.echo(f"password of {name} changed")


@users.command("role")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(["admin", "operator"]))
@home_option
@click.pass_context
@handled
def users_role(ctx: click.Context, name: str, role: str, home: Path | None) -> None:
    """Change the role of NAME (takes effect on their next action)."""
    from likeness.users import UserStore

    user = UserStore.for_home(_home(ctx, home)).set_role(name, role)
    click.echo(f"{user.name} is now {user.role}")


@users.command("remove")
@click.argument("name")
@home_option
@click.pass_context
@handled
def users_remove(ctx: click.Context, name: str, home: Path | None) -> None:
    """Remove app user NAME (their open sessions can do nothing more)."""
    from likeness.users import UserStore

    UserStore.for_home(_home(ctx, home)).remove(name)
    click.echo(f"removed {name}")


@click.command("app")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="address to listen on; anything but localhost requires app users",
)
@click.option("--port", type=int, default=7860, show_default=True, help="port (0: any free port)")
@click.option(
    "--max-upload-mb",
    type=click.IntRange(1, 2048),
    default=50,
    show_default=True,
    help="largest image or document a user may upload",
)
@click.option(
    "--max-video-mb",
    type=click.IntRange(1, 65536),
    default=1024,
    show_default=True,
    help="largest video a user may upload",
)
@click.option(
    "--max-video-seconds",
    type=click.FloatRange(1, 86400),
    default=600,
    show_default=True,
    help="longest video a user may swap in the app (longer footage: `likeness swap`)",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="heavy jobs (image swap, face detection, enrol, verify) run at once; more wait in the queue; "
    "also the number of loaded copies of the face models",
)
@click.option(
    "--video-concurrency",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="video swaps run at once (their own queue)",
)
@click.option("--backend", default="dlib", show_default=True, help="face backend")
@home_option
@click.pass_context
@handled
def app(
    ctx: click.Context,
    host: str,
    port: int,
    max_upload_mb: int,
    max_video_mb: int,
    max_video_seconds: float,
    concurrency: int,
    video_concurrency: int,
    backend: str,
    home: Path | None,
) -> None:
    """Start the likeness studio (Gradio web app) on HOST:PORT."""
    from likeness.webapp.server import AppSettings, launch

    settings = AppSettings(
        home=_home(ctx, home),
        host=host,
        port=port or None,
        max_upload_mb=max_upload_mb,
        max_video_mb=max_video_mb,
        max_video_seconds=max_video_seconds,
        concurrency=concurrency,
        video_concurrency=video_concurrency,
        backend=backend,
    )
    launch(settings)
