"""Command-line interface: the click group is ``likeness.cli:main``; the console script runs it through
:func:`run`."""

from likeness.cli.main import main

__all__ = ["main", "run"]


def run() -> None:
    """The ``likeness`` console script: the command, with numpy's huge pages off, then an exit that
    skips the final garbage collections.

    numpy asks the kernel for huge pages for every array of 4 MB or more (a 1080p frame is 6 MB).
    Where the kernel then compacts memory to find them (transparent huge pages with ``defrag`` set to
    ``madvise``, the usual default), an allocation can stall: four stills swapped one after another
    in one process spent 52–408 ms watermarking each (2 of 4 over 300 ms), 64–68 ms every time with
    them off; a new ``likeness swap`` process ran 1,117–1,247 ms in 3 of 16 runs with them, never
    over 1,064 ms without (``NUMPY_MADVISE_HUGEPAGE=0``, numpy's documented switch, read when numpy
    is imported; set here unless the environment sets it).

    A process that ends anyway need not look for reference cycles among its ≈ 80 000 objects: after a
    ``likeness swap`` those collections took ≈ 65 ms of the ≈ 85 ms the interpreter spent exiting
    (measured: ``gc.freeze()`` first, 19–21 ms). ``gc.freeze`` only moves every object out of the
    collector's sight; exit handlers, ``weakref.finalize`` callbacks (temporary folders), module
    teardown and file closing all still run, and everything the commands write is closed and synced
    before they return."""
    import gc
    import os

    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    try:
        main()
    finally:
        gc.freeze()
