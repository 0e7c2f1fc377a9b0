"""Choosing a swapper by backend name: the one place that maps ``--backend`` to a swapper.

* ``dlib`` (or ``classical``) — the classical landmark swapper, no model file of its own.
* ``insightface`` (or ``inswapper``) — inswapper_128 on onnxruntime, loaded from the data home's
  ``models/inswapper_128.onnx`` (upstream has no public download: ``likeness models fetch inswapper_128``
  says what to do), with optional face restoration from ``models/restore/``. Execution providers: the
  ``providers`` argument, else ``LIKENESS_PROVIDERS`` (``auto`` | ``cpu`` | ``cuda`` | ``tensorrt``);
  restoration: the ``restore`` argument, else ``LIKENESS_RESTORE`` = ``auto`` (the first restoration
  model present) | ``none`` | ``gfpgan_1.4`` | ``codeformer``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from likeness.errors import UsageError
from likeness.home import Home
from likeness.onnx_runtime import requested_providers
from likeness.swap.types import Swapper

SWAPPERS = {
    "dlib": "classical",
    "classical": "classical",
    "insightface": "inswapper",
    "inswapper": "inswapper",
}
RESTORE_ENV = "LIKENESS_RESTORE"


def requested_restore(environ: Mapping[str, str] | None = None) -> str:
    """The face restoration set in ``LIKENESS_RESTORE`` (``auto`` when unset); checked by the swapper."""
    value = (os.environ if environ is None else environ).get(RESTORE_ENV, "").strip()
    return value or "auto"


def load_swapper(
    name: str, home: Home | None = None, *, providers: str | None = None, restore: str | None = None
) -> Swapper:
    """The swapper for backend ``name`` (see the module docstring), its model files verified."""
    if SWAPPERS.get(name) == "classical":
        from likeness.swap.classical import ClassicalSwapper

        return ClassicalSwapper()
    if SWAPPERS.get(name) == "inswapper":
        from likeness.swap.inswapper import InswapperSwapper

        if home is None:
            raise UsageError(
                "the insightface swapper is not available without a data home (its model file is there)",
                hint="pass the data home (the CLI uses --home or LIKENESS_HOME)",
            )
        return InswapperSwapper.load(
            home.models_dir,
            providers=providers or requested_providers(),
            restore=restore or requested_restore(),
        )
    raise UsageError(f"unknown swap backend {name!r}", hint="choose one of: dlib, insightface")
