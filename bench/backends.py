"""Per-stage time of the two face backends on the same photos.

Usage: python bench/backends.py [--models DIR] [--repeat N] [--providers auto|cpu|cuda|tensorrt]
                                [--source PHOTO] [--target PHOTO ...]

Columns:
  dlib                  the embedded backend: HOG + 68 landmarks + ResNet embedding, classical swap;
  insightface stand-in  the insightface path with the tests' stand-in ONNX models (tiny graphs), i.e.
                        the pipeline's own overhead around the models: insightface's pre/post-processing,
                        alignment, onnxruntime calls, mask, colour match and paste-back;
  insightface real      buffalo_l + inswapper_128 from --models, when present (insightface's layout in a
                        folder called models: models/buffalo_l/*.onnx, models/inswapper_128.onnx, e.g.
                        ~/.insightface/models; likeness records their hashes there on first use).
Both insightface columns load through likeness.faces.backends.load_analyzer / swap.backends.load_swapper
("insightface", home), as the pipeline does. Rows are median seconds over --repeat runs after one
warm-up run, per image; "analyze" is detect + landmarks + embed of every
face in the target, "swap" and "paste-back" are for one face (the leftmost). The stand-in detector is
configured with the faces dlib found, so both backends handle the same number of faces.
No output image is written (the test photos show people who did not consent to being swapped).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("LIKENESS_SHARED", REPO.parent / "shared")) / "testdata" / "faces"
sys.path.insert(0, str(REPO / "tests"))  # the stand-in model builders live with the tests

STAGES = ("load", "detect", "landmarks", "embed", "analyze", "swap", "paste-back", "restore", "total")


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def median_runs(run: Callable[[], dict[str, float]], repeat: int) -> dict[str, float]:
    run()  # warm-up (first-call allocations, lazy imports): not counted
    runs = [run() for _ in range(repeat)]
    return {key: statistics.median(r.get(key, 0.0) for r in runs) for key in runs[0]}


def bench_dlib(
    home, source: np.ndarray, target: np.ndarray, repeat: int
) -> tuple[dict[str, float], list, str]:
    from likeness.faces.backends import load_analyzer
    from likeness.swap.backends import load_swapper

    started = time.perf_counter()
    analyzer = load_analyzer("dlib", home)
    swapper = load_swapper("dlib", home)
    load = time.perf_counter() - started
    [source_face, *_] = analyzer.analyze(source)
    takes_timings = "timings" in inspect.signature(swapper.swap).parameters

    def run() -> dict[str, float]:
        times: dict[str, float] = {}
        start = time.perf_counter()
        faces = analyzer.analyze(target)
        times["analyze"] = time.perf_counter() - start
        if faces:
            inner: dict[str, float] = {}
            start = time.perf_counter()
            if takes_timings:
                swapper.swap(target, faces[0], source, source_face, timings=inner)
            else:
                swapper.swap(target, faces[0], source, source_face)
            whole = time.perf_counter() - start
            times["paste-back"] = sum(
                v for k, v in inner.items() if k in ("mask", "colour", "blend", "compose")
            )
            times["swap"] = whole - times["paste-back"]
        times["total"] = sum(times.values())
        return times

    result = median_runs(run, repeat)
    result["load"] = load
    faces = analyzer.analyze(target)
    return result, faces, f"{len(faces)} face(s)"


def bench_insightface(
    home, source_home, source: np.ndarray, target: np.ndarray, repeat: int, providers: str
) -> tuple[dict[str, float], str]:
    """Load by name from ``home`` (as the pipeline does); the source face is analysed with the models in
    ``source_home`` (the same home for real models; its own stand-in detector for stand-ins)."""
    from likeness.faces.backends import load_analyzer
    from likeness.swap.backends import load_swapper

    started = time.perf_counter()
    analyzer = load_analyzer("insightface", home, providers=providers)
    swapper = load_swapper("insightface", home, providers=providers)
    load = time.perf_counter() - started
    source_analyzer = analyzer if source_home == home else load_analyzer("insightface", source_home)
    source_faces = source_analyzer.analyze(source)
    if not source_faces:
        return {"load": load}, "no face in the source"

    def run() -> dict[str, float]:
        timer = Timer()
        faces = analyzer.analyze(target, timer=timer)
        if faces:
            swapper.swap(target, faces[0], source, source_faces[0], timer=timer)
        times = dict(timer.seconds)
        times["analyze"] = sum(times.get(k, 0.0) for k in ("detect", "landmarks", "embed"))
        times["total"] = times["analyze"] + sum(times.get(k, 0.0) for k in ("swap", "paste-back", "restore"))
        return times

    result = median_runs(run, repeat)
    result["load"] = load
    return result, f"{len(analyzer.analyze(target))} face(s); {analyzer.providers.providers[0]}"


def build_standins(root: Path, images: list[tuple[np.ndarray, list]]) -> list:
    """One data home per image with stand-in models, the detector configured with the faces' boxes."""
    import standin_models as standin
    from likeness.home import Home

    homes = []
    for index, (pixels, faces) in enumerate(images):
        size = (pixels.shape[1], pixels.shape[0])
        configured = [standin.StandinFace.for_image(size, face.box) for face in faces[:3]]
        home = Home(root=root / f"standin_{index}").ensure()
        standin.build_buffalo_pack(home.models_dir, configured)
        standin.build_inswapper(home.models_dir / "inswapper_128.onnx")
        homes.append(home)
    return homes


def real_models_home(models_dir: Path | None):
    """A data home whose ``models/`` is ``models_dir`` (a folder called ``models``, e.g.
    ``~/.insightface/models``), when the real detector, recogniser and swapper are all there."""
    if models_dir is None:
        return None
    from likeness.home import Home
    from likeness.model_store import MISSING, ModelStore, model_file

    models_dir = models_dir.expanduser().resolve()
    if models_dir.name != "models":
        print(
            f"--models must be a folder called models (insightface's layout), not {models_dir}",
            file=sys.stderr,
        )
        return None
    store = ModelStore(models_dir)
    names = ("insightface_det_10g", "insightface_arcface_r50", "inswapper_128")
    if any(store.check(model_file(name)).state == MISSING for name in names):
        return None
    return Home(root=models_dir.parent)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", type=Path, default=None, help="a folder called models holding the real files (optional)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--providers", default="auto")
    parser.add_argument("--source", type=Path, default=FACES / "biden" / "1.jpg")
    parser.add_argument(
        "--target",
        type=Path,
        action="append",
        default=None,
        help="target photo(s); default obama/1.jpg and _multi/obama_and_biden.jpg",
    )
    args = parser.parse_args()
    targets = args.target or [FACES / "obama" / "1.jpg", FACES / "_multi" / "obama_and_biden.jpg"]

    from likeness.home import Home
    from likeness.media.image import load_image

    source = load_image(args.source).pixels
    pictures = [load_image(path) for path in targets]
    with tempfile.TemporaryDirectory(prefix="likeness-bench-") as tmp:
        home = Home(root=Path(tmp) / "home").ensure()
        columns: dict[str, list[tuple[dict[str, float], str]]] = {}
        dlib_faces: list[list] = []
        dlib_source_faces: list = []
        try:
            from likeness.faces.backends import load_analyzer

            dlib_source_faces = load_analyzer("dlib", home).analyze(source)
            for picture in pictures:
                timings, faces, note = bench_dlib(home, source, picture.pixels, args.repeat)
                columns.setdefault("dlib", []).append((timings, note))
                dlib_faces.append(faces)
        except Exception as exc:  # noqa: BLE001 - a bench reports what it could not run
            print(f"dlib backend not benchmarked: {type(exc).__name__}: {exc}", file=sys.stderr)
            dlib_faces = [[] for _ in pictures]
        if not dlib_source_faces:
            print("no source face from dlib: the stand-in column cannot be configured", file=sys.stderr)
        else:
            source_home = build_standins(Path(tmp) / "source", [(source, dlib_source_faces)])[0]
            homes = build_standins(
                Path(tmp), [(p.pixels, f) for p, f in zip(pictures, dlib_faces, strict=True)]
            )
            for picture, standin_home in zip(pictures, homes, strict=True):
                timings = bench_insightface(
                    standin_home, source_home, source, picture.pixels, args.repeat, args.providers
                )
                columns.setdefault("insightface stand-in", []).append(timings)
        real_home = real_models_home(args.models)
        if real_home is not None:
            for picture in pictures:
                columns.setdefault("insightface real", []).append(
                    bench_insightface(
                        real_home, real_home, source, picture.pixels, args.repeat, args.providers
                    )
                )
        else:
            where = args.models or "(no --models given)"
            print(f"real insightface models not found in {where}: column left out", file=sys.stderr)

    for index, picture in enumerate(pictures):
        print(f"\n{picture.path} ({picture.width}×{picture.height}), median of {args.repeat} run(s), seconds")
        names = list(columns)
        print(f"| stage | {' | '.join(names)} |")
        print(f"|---|{'---|' * len(names)}")
        for stage in STAGES:
            cells = []
            for name in names:
                timings = columns[name][index][0]
                cells.append(f"{timings[stage]:.3f}" if stage in timings else "–")
            if any(cell != "–" for cell in cells):
                print(f"| {stage} | {' | '.join(cells)} |")
        print(f"| faces | {' | '.join(columns[name][index][1] for name in names)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
