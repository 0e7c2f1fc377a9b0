"""Temporary alias while the app is integrated; use likeness.cli.support."""

from likeness.cli.support import *  # noqa: F403
from likeness.cli.support import emit_json, handle_errors, to_jsonable  # noqa: F401
