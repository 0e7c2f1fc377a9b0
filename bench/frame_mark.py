"""The footage watermark per frame: ``watermark.embed_id`` (every frame on its own, as before) next to
``FrameMarker`` (the fixed pattern built once per output), on one thread.

    python bench/frame_mark.py [--sizes 720p,1080p] [--frames 48] [--seconds 6] [--photo FILE]
                               [--gains-every 24,12,1,0] [--no-readback] [--alone] [--compare FILE]

Frames: a pan that zooms in slowly over a photo (default: the public-domain demo portrait
``lincoln_1.jpg``; ``--photo`` any picture), made, encoded and re-encoded with the video tests'
helpers (tests/video_fixtures.py, tests/test_video_verify.py), so every frame's picture, and so
its visual mask, differs. For each size, three tables:

* **speed**: milliseconds per frame (CPU time of the one thread: mean, median, best and worst over
  ``--frames`` frames; and the mean wall time) for ``embed_id`` and for ``FrameMarker`` (including
  its refresh of the host-interference gains every ``GAINS_EVERY`` frames), the methods taking
  turns on every frame; OMP/BLAS threads and cv2's are set to 1 before anything is imported;
* **visibility** over the same frames (median frame): RMS of the luma change and PSNR of the whole
  frame, and bench/watermark_visibility.py's flat-area numbers (RMS of the change on the flattest
  20 % of 32×32 blocks, and its masking ratio);
* **read-back**: the whole pan (``--seconds`` at 25 fps) marked both ways, encoded with libx264
  (CRF 18, the writer's default quality; preset veryfast) and re-encoded as a platform would
  (CRF 28; CRF 28 at 480p), then read by ``read_video_disclosure`` in 2 s windows: windows that
  read the right id / all windows, wrong ids, and the mean window confidence. ``--gains-every``
  adds rows for other refresh intervals (0: only on the first frame).

``--compare FILE`` adds a row for the ``FrameMarker`` of another copy of
``likeness/disclosure/frame_mark.py`` (e.g. main's: ``git show main:src/likeness/disclosure/frame_mark.py
> /tmp/old.py``), loaded as its own module, so old and new are timed in one run, taking turns.

Numbers from a shared machine are noisy: compare the rows of one run, not runs.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import functools  # noqa: E402
import importlib.util  # noqa: E402
import inspect  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.setNumThreads(1)

from likeness.demo import asset  # noqa: E402
from likeness.disclosure import watermark  # noqa: E402
from likeness.disclosure.footage_read import read_video_disclosure  # noqa: E402
from likeness.disclosure.footage_sink import VIDEO_WATERMARK_STRENGTH  # noqa: E402
from likeness.disclosure.frame_mark import GAINS_EVERY, FrameMarker  # noqa: E402
from likeness.disclosure.output_id import new_output_id  # noqa: E402
from likeness.media import load_image  # noqa: E402

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))  # the clip helpers
import video_fixtures as vf  # noqa: E402
from test_video_verify import reencode  # noqa: E402
from watermark_visibility import measure  # noqa: E402

SIZES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080), "2160p": (3840, 2160)}
FPS = 25
Mark = Callable[[np.ndarray], np.ndarray]


def load_marker(path: Path) -> tuple[type[FrameMarker], int]:
    """``FrameMarker`` and its ``GAINS_EVERY`` from another copy of frame_mark.py (its imports are
    this checkout's)."""
    spec = importlib.util.spec_from_file_location(f"frame_mark_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FrameMarker, module.GAINS_EVERY


def markers(
    output_id: str, size: tuple[int, int], gains_every: list[int], compare: Path | None = None
) -> dict[str, Callable[[], Mark]]:
    width, height = size

    def frame_marker(every: int, kind: type[FrameMarker] = FrameMarker) -> Callable[[], Mark]:
        def make() -> Mark:
            marker = kind(
                height, width, output_id, strength=VIDEO_WATERMARK_STRENGTH, gains_every=every or 10**9
            )
            if "in_place" not in inspect.signature(marker.mark).parameters:
                return marker.mark  # an older frame_mark.py (--compare): marks a copy
            mark = functools.partial(marker.mark, in_place=True)
            setattr(mark, "in_place", True)  # noqa: B010
            return mark

        return make

    made: dict[str, Callable[[], Mark]] = {
        "embed_id": lambda: lambda f: watermark.embed_id(f, output_id, strength=VIDEO_WATERMARK_STRENGTH),
        f"FrameMarker (gains every {GAINS_EVERY})": frame_marker(GAINS_EVERY),
    }
    for every in gains_every:
        if every != GAINS_EVERY:
            label = f"every {every}" if every else "first frame only"
            made[f"FrameMarker (gains {label})"] = frame_marker(every)
    if compare is not None:
        kind, every = load_marker(compare)
        made[f"{compare.name} (gains every {every})"] = frame_marker(every, kind)
    return made


def timing(
    marks: dict[str, Mark], frames: list[np.ndarray], *, alone: bool = False
) -> dict[str, tuple[list[float], list[float], list, list]]:
    """Per method: CPU ms, wall ms and the marked frame, for every frame; the methods take turns on
    each frame, so a busy moment of the machine falls on all of them alike (each frame then starts
    with caches the other method filled). ``alone``: each method marks every frame in its own pass,
    as a footage job's marker does (frames still differ, so caches start cold for each). A mark that
    works in place (``FrameMarker.mark(..., in_place=True)``, as the sealing path calls it on the
    labelled copy of each frame) gets its own copy of every frame, all made before the first is
    timed (``--frames`` × 6 MB at 1080p per such method): alone, each copy is as cold as the frame
    itself; taking turns, a method that copies reads the frame the methods before it in the turn have
    just read, while the copy is cold, so the in-place method's times are the pessimistic ones.

    Only every fourth marked frame is kept (for the flat-area measure); the others are measured
    (luma change, PSNR) and dropped at once, as a job hands each frame to its encoder: keeping
    every 6 MB output makes each new one fresh memory, whose page faults would be timed too.
    Returns per method: CPU ms and wall ms per frame, (luma change, PSNR) per frame, and the kept
    (frame, marked) pairs."""
    timed: dict[str, tuple[list[float], list[float], list, list]] = {name: ([], [], [], []) for name in marks}
    turns = (
        [(index, name) for name in marks for index in range(len(frames))]
        if alone
        else [(index, name) for index in range(len(frames)) for name in marks]
    )
    copies = {
        name: [f.copy() for f in frames] for name, mark in marks.items() if getattr(mark, "in_place", False)
    }
    for index, name in turns:
        cpu, wall, changes, kept = timed[name]
        frame = frames[index]
        given = copies[name][index] if name in copies else frame
        start_cpu, start_wall = time.thread_time(), time.perf_counter()
        marked = marks[name](given)
        cpu.append((time.thread_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start_wall) * 1000)
        changes.append(luma_change(frame, marked))
        if index % 4 == 0:
            kept.append((frame, marked))
        del marked, given
        if name in copies:
            copies[name][index] = None
    return timed


def luma_change(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """RMS of the luma change (grey levels) and PSNR (dB, RGB) of one frame."""
    weights = np.array([0.299, 0.587, 0.114])
    diff = after.astype(np.float64) - before
    change = float(np.sqrt(np.mean((diff @ weights) ** 2)))
    mse = float(np.mean(diff * diff))
    return change, 10 * np.log10(255.0**2 / mse) if mse > 0 else float("inf")


def readback(marked: list[np.ndarray], output_id: str, folder: Path, name: str) -> list[str]:
    """Per attack: 'right/windows (wrong) confidence'."""
    clip = vf.write_clip(
        folder / f"{name}.mp4", marked, fps=FPS, audio=None, options={"preset": "veryfast", "crf": "18"}
    )
    attacks = {
        "CRF 18": clip,
        "CRF 28": reencode(clip, folder / f"{name}-28.mp4", crf=28),
        "480p CRF 28": reencode(clip, folder / f"{name}-480.mp4", crf=28, height=480),
    }
    cells = []
    for path in attacks.values():
        report = read_video_disclosure(path, window_seconds=2.0, credentials=False)
        right = sum(1 for w in report.windows if w.output_id == output_id)
        wrong = sum(1 for w in report.windows if w.output_id not in (None, output_id))
        confidence = statistics.fmean(w.confidence for w in report.windows)
        cells.append(f"{right}/{len(report.windows)} ({wrong}) {confidence:.2f}")
    return cells


def row(cells: list[str], widths: list[int]) -> str:
    return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"


def table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(row(header, widths))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for cells in rows:
        print(row(cells, widths))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="720p,1080p")
    parser.add_argument("--frames", type=int, default=48, help="frames timed per size and method")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the read-back clip")
    parser.add_argument(
        "--photo", type=Path, default=None, help="picture to pan over (default: a demo portrait)"
    )
    parser.add_argument(
        "--gains-every", default=str(GAINS_EVERY), help="refresh intervals to compare (0: once)"
    )
    parser.add_argument("--no-readback", action="store_true")
    parser.add_argument(
        "--alone", action="store_true", help="time each method in its own pass instead of taking turns"
    )
    parser.add_argument(
        "--compare", type=Path, default=None, help="another frame_mark.py whose FrameMarker is timed too"
    )
    args = parser.parse_args()

    photo = load_image(args.photo or asset("lincoln_1.jpg")).pixels
    gains_every = [int(v) for v in args.gains_every.split(",") if v.strip()]
    print(
        f"photo: {args.photo or 'demo lincoln_1.jpg'}; strength {VIDEO_WATERMARK_STRENGTH}; cv2 threads "
        f"{cv2.getNumThreads()}; {args.frames} frames timed per method; "
        f"{'each method alone' if args.alone else 'methods taking turns'}; "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n"
    )
    for size_name in args.sizes.split(","):
        size = SIZES[size_name.strip()]
        output_id = new_output_id()
        count = max(args.frames, round(args.seconds * FPS)) if not args.no_readback else args.frames
        frames = list(vf.pan_frames(photo, size=size, count=count))
        timed = frames[: args.frames]
        speed, looks, reads = [], [], []
        with tempfile.TemporaryDirectory(prefix="likeness-frame-mark-") as tmp:
            made = markers(output_id, size, gains_every, args.compare)
            results = timing({name: make() for name, make in made.items()}, timed, alone=args.alone)
            baseline_cpu = statistics.fmean(results["embed_id"][0])
            for name, (cpu, wall, changes, kept) in results.items():
                mean_cpu = statistics.fmean(cpu)
                speed.append(
                    [
                        name,
                        f"{mean_cpu:.1f}",
                        f"{statistics.median(cpu):.1f}",
                        f"{min(cpu):.1f}",
                        f"{max(cpu):.1f}",
                        f"{statistics.fmean(wall):.1f}",
                        f"{baseline_cpu / mean_cpu:.1f}×",
                    ]
                )
                flat = [measure(f, m) for f, m in kept]
                looks.append(
                    [
                        name,
                        f"{statistics.median(c for c, _ in changes):.2f}",
                        f"{statistics.median(p for _, p in changes):.1f}",
                        f"{statistics.median(v.flat_rms for v in flat):.2f}",
                        f"{statistics.median(v.masking for v in flat):.2f}",
                    ]
                )
            if not args.no_readback:
                for name, make in made.items():
                    mark = make()
                    marked = [mark(f.copy()) for f in frames]
                    reads.append([name, *readback(marked, output_id, Path(tmp), f"{size_name}-{len(reads)}")])
        print(f"## {size_name} ({size[0]}×{size[1]})\n")
        table(["method", "CPU ms/frame", "median", "best", "worst", "wall ms", "speed-up"], speed)
        table(["method", "luma RMS change", "PSNR dB", "flat RMS", "masking"], looks)
        if reads:
            print(
                f"read-back, {len(frames) / FPS:.0f} s clip, 2 s windows: "
                "right/windows (wrong ids) confidence\n"
            )
            table(["method", "CRF 18", "CRF 28", "480p CRF 28"], reads)


if __name__ == "__main__":
    main()
