"""The command's start-up: the garbage collector paused while a job's imports run."""

from __future__ import annotations

import gc

import pytest

from likeness.cli.startup import collector_paused_while_importing


def test_the_collector_is_paused_until_imported_then_frozen_objects_are_released() -> None:
    assert gc.isenabled() and gc.get_freeze_count() == 0
    with collector_paused_while_importing() as imported:
        assert not gc.isenabled()
        made = [[index] for index in range(1000)]  # objects the collector tracks
        imported()
        assert gc.isenabled()
        frozen = gc.get_freeze_count()
        assert not _tracked(made), "frozen: out of the collector's sight"
        imported()  # a second call freezes nothing more
        assert gc.get_freeze_count() == frozen
    assert gc.isenabled() and gc.get_freeze_count() == 0, "unfrozen: a process that goes on collects them"
    assert _tracked(made)


def _tracked(item: object) -> bool:
    """Whether the collector's generations hold ``item`` (frozen objects are in none of them)."""
    return any(candidate is item for candidate in gc.get_objects())


def test_what_someone_else_froze_stays_frozen() -> None:
    theirs = [[index] for index in range(10)]
    gc.freeze()  # as the landmark helper does before it forks
    try:
        with collector_paused_while_importing() as imported:
            ours = [[index] for index in range(10)]
            imported()
        assert not _tracked(theirs) and not _tracked(ours), "gc.unfreeze would have released theirs too"
    finally:
        gc.unfreeze()
    assert _tracked(theirs) and _tracked(ours)


def test_an_error_before_the_imports_finish_restores_the_collector() -> None:
    with pytest.raises(RuntimeError), collector_paused_while_importing():
        assert not gc.isenabled()
        raise RuntimeError("an import failed")
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused_while_importing() as imported:
            imported()
            assert not gc.isenabled()
        assert not gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        gc.enable()


def test_the_console_script_turns_numpys_huge_pages_off_unless_the_environment_says() -> None:
    """numpy reads ``NUMPY_MADVISE_HUGEPAGE`` when it is imported: the console script sets it first
    (huge-page allocations stalled jobs by up to 0.4 s), and leaves a value the user set alone."""
    import os
    import subprocess
    import sys

    probe = (
        "import sys; sys.argv = ['likeness', '--version']\n"
        "from likeness.cli import run\n"
        "try:\n    run()\nexcept SystemExit:\n    pass\n"
        "import numpy\n"
        "print(numpy._core.multiarray._set_madvise_hugepage(True))\n"  # returns the setting it replaces
    )
    env = {key: value for key, value in os.environ.items() if key != "NUMPY_MADVISE_HUGEPAGE"}
    plain = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert plain.stdout.splitlines()[-1] == "False"
    chosen = subprocess.run(
        [sys.executable, "-c", probe],
        env={**env, "NUMPY_MADVISE_HUGEPAGE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert chosen.stdout.splitlines()[-1] == "True"
