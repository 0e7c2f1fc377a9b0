"""Per-stage time of one consented, disclosed image swap onto a 1080p target.

    python bench/swap_image.py [--repeat 5] [--backend dlib] [--cli 3 [--against ../main/src]]

Uses the bundled public-domain portraits: Darwin's likeness onto Lincoln's portrait, which is
placed on a 1920×1080 canvas. The stages are called in the pipeline's order, each timed on its own
(median of --repeat runs); "pipeline total" is ``likeness.jobs.road.swap_image`` end to end in the
same run, model loading included (it is given no loaded engines).

``--cli N`` then times the whole ``likeness swap`` command (a new Python process: start-up, imports,
model load, the job, exit), as a user runs it, with compiled bytecode kept as an installation keeps
it (one untimed run first compiles it): once **cold** (the page cache dropped for every file
of the installation and the data home, with ``posix_fadvise(DONTNEED)``; pages other processes
still map stay cached, so this is a lower bound on a truly cold disk) and N times **warm**, with
the job's own stage times from ``--json`` and the rest (start-up + imports + exit) next to them.
``--against SRC`` alternates each warm run with one of another checkout's likeness (its ``src``
folder) and prints both medians: before and after, back to back, on a machine others share.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from likeness.consent.gate import Involvement, check_consent
from likeness.consent.registry import Registry
from likeness.demo import asset
from likeness.disclosure import watermark
from likeness.disclosure.label import apply_label
from likeness.disclosure.output_id import new_output_id
from likeness.disclosure.still_sink import encode
from likeness.faces.backends import load_analyzer
from likeness.home import Home
from likeness.jobs.enrol import enrol_identity
from likeness.jobs.requests import EnrolRequest, SwapRequest
from likeness.jobs.road import swap_image
from likeness.jobs.selection import find_source_face
from likeness.media.image import load_image
from likeness.swap.backends import load_swapper

USES = "benchmark of likeness's own pipeline on public-domain 19th-century portraits"


def make_cast(home: Home, backend: str) -> None:
    sitters = (
        ("Charles Darwin", "darwin_1.jpg", dt.date(1882, 4, 19)),
        ("Abraham Lincoln", "lincoln_1.jpg", dt.date(1865, 4, 15)),
    )
    for name, photo, died in sitters:
        ident = enrol_identity(EnrolRequest(name=name, photos=[asset(photo)], backend=backend), home=home)
        with Registry.open(home) as registry:
            registry.grant(
                ident.id,
                purposes=["education"],
                roles=["source", "target"],
                media=["image"],
                valid_until=dt.date.today() + dt.timedelta(days=30),
                uses=USES,
                operator="bench",
                capacity="rights_expired",
                date_of_death=died,
                jurisdiction="GB",
                basis="died over 125 years ago",
                grantor="bench",
            )


def make_1080p_target(folder: Path) -> Path:
    portrait = Image.open(asset("lincoln_1.jpg")).convert("RGB")
    scale = 1080 / portrait.height
    portrait = portrait.resize((round(portrait.width * scale), 1080), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (1920, 1080), (92, 88, 84))
    canvas.paste(portrait, ((1920 - portrait.width) // 2, 0))
    path = folder / "target_1080p.jpg"
    canvas.save(path, quality=92)
    return path


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backend", default="dlib")
    parser.add_argument("--cli", type=int, default=0, help="also time `likeness swap` N times (warm)")
    parser.add_argument(
        "--against",
        type=Path,
        default=None,
        help="with --cli: alternate each warm run with one of the likeness in this src folder (another "
        "checkout's), and print both medians: a before/after in one run on a shared machine",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        home = Home(root=folder / "home").ensure()
        target_path = make_1080p_target(folder)
        source_path = asset("darwin_1.jpg")
        make_cast(home, args.backend)

        rows: list[tuple[str, float]] = []
        load_start = time.perf_counter()
        analyzer = load_analyzer(args.backend, home)
        swapper = load_swapper(args.backend, home)
        load_s = time.perf_counter() - load_start

        t, target = timed(lambda: load_image(target_path), args.repeat)
        source = load_image(source_path)
        rows.append(("decode (1080p target)", t))
        if hasattr(analyzer, "_detect"):
            t, _ = timed(lambda: analyzer._detect(target.pixels), args.repeat)
            rows.append(("detect", t))
            t_all, faces = timed(lambda: analyzer.analyze(target.pixels), args.repeat)
            rows.append(("landmarks + embed", max(0.0, t_all - t)))
        else:
            t_all, faces = timed(lambda: analyzer.analyze(target.pixels), args.repeat)
            rows.append(("detect + landmarks + embed", t_all))
        target_face = faces[0]
        t, source_face = timed(lambda: find_source_face(analyzer, source), args.repeat)
        rows.append(("source photo (portrait rule)", t))
        involved = [
            Involvement(source_face, "source", "source photo"),
            Involvement(target_face, "target", "target face #0"),
        ]
        with Registry.open(home) as registry:
            t, _ = timed(
                lambda: check_consent(
                    registry,
                    involved,
                    purpose="education",
                    media_kind="image",
                    analyzer=analyzer,
                    operator="bench",
                ),
                args.repeat,
            )
        rows.append(("gate", t))
        t, swapped = timed(
            lambda: swapper.swap(target.pixels, target_face, source.pixels, source_face), args.repeat
        )
        rows.append(("swap", t))
        output_id = new_output_id()
        t, (labelled, _) = timed(lambda: apply_label(swapped, output_id), args.repeat)
        rows.append(("label", t))
        t, marked = timed(lambda: watermark.embed_id(labelled, output_id), args.repeat)
        rows.append(("watermark", t))
        t, data = timed(lambda: encode(np.asarray(marked), "JPEG"), args.repeat)
        rows.append(("encode (JPEG q95)", t))
        t, _ = timed(
            lambda: watermark.decode(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))), args.repeat
        )
        rows.append(("self-check (decode + read mark)", t))

        def whole() -> None:
            swap_image(
                SwapRequest(
                    source=source_path,
                    target=target_path,
                    purpose="education",
                    out=folder / "out.jpg",
                    backend=args.backend,
                ),
                home=home,
            )

        t_pipeline, _ = timed(whole, args.repeat)

        cli_rows: list[tuple[str, float, dict]] = []
        if args.cli:
            import os
            import site
            import sysconfig

            import likeness

            pycache = folder / "pycache"
            # One untimed run compiles likeness's modules into `pycache`, as installing does.
            cli_swap(home, source_path, target_path, folder / "cli.jpg", args.backend, pycache)
            installed = [Path(sysconfig.get_paths()["purelib"]), *map(Path, site.getsitepackages())]
            files = [*installed, Path(likeness.__file__).parent, home.root, target_path, pycache]
            drop_cache(list(dict.fromkeys(files)))
            wall, timings = cli_swap(
                home, source_path, target_path, folder / "cli.jpg", args.backend, pycache
            )
            cli_rows.append(("cold", wall, timings))
            if args.against is not None:  # its bytecode compiled, untimed
                other = folder / "pycache-against"
                cli_swap(
                    home, source_path, target_path, folder / "cli.jpg", args.backend, other, args.against
                )
            for i in range(args.cli):
                wall, timings = cli_swap(
                    home, source_path, target_path, folder / "cli.jpg", args.backend, pycache
                )
                cli_rows.append((f"warm {i + 1}", wall, timings))
                if args.against is not None:
                    wall, timings = cli_swap(
                        home, source_path, target_path, folder / "cli.jpg", args.backend, other, args.against
                    )
                    cli_rows.append((f"against {i + 1}", wall, timings))
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())

    width = max(len(name) for name, _ in rows) + 2
    print(f"backend: {args.backend}; target 1920×1080; median of {args.repeat} runs")
    print(f"{'stage':<{width}} {'ms':>8}")
    print("-" * (width + 9))
    for name, seconds in rows:
        print(f"{name:<{width}} {seconds * 1000:8.1f}")
    print("-" * (width + 9))
    print(f"{'sum of stages':<{width}} {sum(s for _, s in rows) * 1000:8.1f}")
    print(f"{'pipeline total':<{width}} {t_pipeline * 1000:8.1f}  (swap_image end to end, incl. model load)")
    print(f"{'model load':<{width}} {load_s * 1000:8.1f}  (once per process)")
    if cli_rows:
        print(f"\n`likeness swap` end to end (1920×1080 target, new process each; load average {load})")
        stages = list(dict.fromkeys(s for _, _, timings in cli_rows for s in timings if s != "CPU"))
        print(
            f"{'run':<11}{'wall ms':>9}{'CPU ms':>8}{'start+imports+exit':>20}"
            + "".join(f"{s:>13}" for s in stages)
        )
        for name, wall, timings in cli_rows:
            rest = wall - sum(timings.get(s, 0.0) for s in stages)
            print(
                f"{name:<11}{wall * 1000:>9.0f}{timings['CPU'] * 1000:>8.0f}{rest * 1000:>20.0f}"
                + "".join(f"{timings.get(s, 0.0) * 1000:>13.0f}" for s in stages)
            )
        for label, prefix in (("this tree", "warm"), (f"{args.against}", "against")):
            runs = [(wall, timings["CPU"]) for name, wall, timings in cli_rows if name.startswith(prefix)]
            if runs and args.against is not None:
                print(
                    f"median of {len(runs)} warm runs, {label}: "
                    f"wall {statistics.median(w for w, _ in runs) * 1000:.0f} ms, "
                    f"CPU {statistics.median(c for _, c in runs) * 1000:.0f} ms"
                )


def drop_cache(paths: list[Path]) -> int:
    """Ask the kernel to drop these files' pages from its cache; returns how many files were told."""
    import os

    told = 0
    for root in paths:
        for path in [root] if root.is_file() else root.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                told += 1
            finally:
                os.close(fd)
    return told


def cli_swap(
    home: Home, source: Path, target: Path, out: Path, backend: str, pycache: Path, src: Path | None = None
) -> tuple[float, dict]:
    """One ``likeness swap`` in a new process: wall seconds, and its CPU seconds and stage times.

    The child keeps compiled bytecode in ``pycache`` (``PYTHONPYCACHEPREFIX``) even where the caller
    runs with ``PYTHONDONTWRITEBYTECODE`` (this project's machines do): an installed package has its
    bytecode compiled, and compiling every likeness module at each start costs ≈ 0.1 s of CPU.
    ``src``: run the likeness found in this folder instead (``--against``)."""
    import json
    import os
    import subprocess
    import sys

    out.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-c",
        "from likeness import cli; getattr(cli, 'run', cli.main)()",
        "--home",
        str(home.root),
        "swap",
        "--source",
        str(source),
        "--target",
        str(target),
        "--purpose",
        "education",
        "--out",
        str(out),
        "--backend",
        backend,
        "--json",
    ]
    import resource

    paths = [str(src)] if src is not None else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, *(p for p in sys.path if p)])}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"likeness swap failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, {"CPU": cpu, **json.loads(done.stdout)["timings_s"]}


if __name__ == "__main__":
    main()
