"""How visible the watermark is where the eye looks: flat backdrops, sky, skin, smooth gradients.

    python bench/watermark_visibility.py [--strength S] [--baseline FILE] [--crops DIR]

A global PSNR hides the problem: a mark spread evenly over a picture has a good PSNR and still
shows as a "dirty window" on a flat backdrop, where nothing masks it. So every number here is
taken in the **flat** part of the picture: the luma is cut into 32×32 blocks and the 20 % of blocks
with the lowest standard deviation of the original luma are "flat" (a plain backdrop, sky, a wall).
Per picture:

- ``flat RMS``: RMS of the luma change (grey levels) over the flat blocks: what shows as mottling;
- ``worst``: the largest luma-change RMS of any block whose own standard deviation is under 2
  grey levels (a blotch on a truly flat patch); ``-`` when there is no such block;
- ``flat SSIM``: mean SSIM (Gaussian window σ = 1.5, on luma) over the flat blocks, shown as
  ``(1 − SSIM) × 1000``: 0 is identical; structural change of a flat area counts fully here;
- ``masking``: the median, over flat blocks, of the change's RMS over (the block's own standard
  deviation + 1 grey level): how far the change stands above what could hide it (≪ 1 is hidden);
- ``busy RMS``: the change's RMS over the 20 % busiest blocks, where texture hides it (for
  reference: where the mark's energy went);
- ``PSNR`` of the whole picture.

Video frames: 12 frames of a 1280×720 pan (as the video tests make them) over a demo portrait and
two test photos, marked at the video writer's strength (``VIDEO_WATERMARK_STRENGTH``; the baseline
at ``--baseline-video-strength``, 3.75 before the visual mask); the table shows the median frame.
A static pattern on flat areas is what reads as a "dirty window" over moving content.

Pictures: public-domain demo portraits (plain studio backdrops, grain), the shared test photos
with the flattest backdrops (a grey and a white studio wall, bokeh, sky) and three synthetic ones
(flat grey, a smooth gradient and a smooth dark vignette, 1920×1080). ``--baseline FILE`` loads
another watermark module from a file (for example the previous version, written out with
``git show HEAD:src/likeness/disclosure/watermark.py > /tmp/old.py``) and prints it next to the
current one, measured on the same pictures and ids. ``--crops DIR`` writes, for the current
module, 256×256 crops of the flattest area of each picture: the original, the marked one at 200 %
and the change ×8 around grey, to look at (testdata people go under DIR only, never committed).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from likeness.disclosure import watermark  # noqa: E402
from likeness.disclosure.output_id import new_output_id  # noqa: E402
from likeness.media import load_image  # noqa: E402

cv2.setNumThreads(1)
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LIKENESS_SHARED", REPO.parent / "shared"))
FACES = SHARED / "testdata" / "faces"
DEMO = REPO / "src" / "likeness" / "demo_assets"
BLOCK = 32
FLAT_SHARE = 0.2
TRULY_FLAT_STD = 2.0

DEMO_PHOTOS = ["lincoln_1.jpg", "pasteur_1.jpg", "darwin_1.jpg", "stowe_1.jpg"]
TEST_PHOTOS = [
    "alex_lacamoire/3.jpg",  # mid-grey studio wall
    "deepface_person_09/3.jpg",  # light grey wall with a soft shadow
    "deepface_person_05/2.jpg",  # white backdrop, skin
    "rose_leslie/1.jpg",  # bokeh, skin
    "deepface_person_07/2.jpg",  # dark bokeh
    "_hard/head_up.jpg",  # white backdrop, bare shoulders
    "_noface/landscape_view.jpg",  # overcast sky, water
    "obama/1.jpg",  # the photo the video tests pan over
]


def luma(pixels: np.ndarray) -> np.ndarray:
    rgb = pixels.astype(np.float64)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def synthetic() -> dict[str, np.ndarray]:
    h, w = 1080, 1920
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    grey = np.full((h, w), 128.0)
    gradient = 40.0 + 180.0 * x / (w - 1) + 0.0 * y
    r = np.hypot((x - w / 2) / (w / 2), (y - h / 2) / (h / 2))
    vignette = 70.0 - 45.0 * r**2
    return {
        name: np.repeat(np.clip(np.rint(v), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
        for name, v in (
            ("synthetic flat grey 128", grey),
            ("synthetic gradient 40-220", gradient),
            ("synthetic dark vignette", vignette),
        )
    }


def _ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def g(v: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(v, (0, 0), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = g(a), g(b)
    var_a, var_b = g(a * a) - mu_a**2, g(b * b) - mu_b**2
    cov = g(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


@dataclass(frozen=True)
class Visibility:
    flat_rms: float
    worst: float | None
    flat_ssim_loss: float
    masking: float
    busy_rms: float
    psnr: float


def flat_blocks(original_luma: np.ndarray, share: float = FLAT_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """Block grid (rows, cols) of the picture, and the mask of its flattest ``share`` of blocks."""
    h, w = original_luma.shape
    rows, cols = h // BLOCK, w // BLOCK
    blocks = original_luma[: rows * BLOCK, : cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK)
    spread = blocks.std(axis=(1, 3))
    cut = np.quantile(spread, share)
    return spread, spread <= cut


def measure(original: np.ndarray, marked: np.ndarray) -> Visibility:
    a, b = luma(original), luma(marked)
    change = b - a
    h, w = a.shape
    rows, cols = h // BLOCK, w // BLOCK
    spread, flat = flat_blocks(a)
    block_rms = np.sqrt(
        (change[: rows * BLOCK, : cols * BLOCK] ** 2).reshape(rows, BLOCK, cols, BLOCK).mean(axis=(1, 3))
    )
    ssim = _ssim_map(a.astype(np.float32), b.astype(np.float32)).astype(np.float64)
    block_ssim = ssim[: rows * BLOCK, : cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK).mean(axis=(1, 3))
    truly_flat = spread < TRULY_FLAT_STD
    mse = float(np.mean((original.astype(np.float64) - marked.astype(np.float64)) ** 2))
    return Visibility(
        flat_rms=float(np.sqrt(np.mean(block_rms[flat] ** 2))),
        worst=float(block_rms[truly_flat].max()) if truly_flat.any() else None,
        flat_ssim_loss=float(1000 * (1 - block_ssim[flat].mean())),
        masking=float(np.median(block_rms[flat] / (spread[flat] + 1.0))),
        busy_rms=float(np.sqrt(np.mean(block_rms[spread >= np.quantile(spread, 1 - FLAT_SHARE)] ** 2))),
        psnr=float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse),
    )


def write_crops(folder: Path, name: str, original: np.ndarray, marked: np.ndarray) -> None:
    """Two 256×256 areas: the flattest one, and the one around the flat block the mark changed most
    (often beside an edge); each as original | marked | luma change ×8 around grey, at 200 %."""
    a = luma(original)
    change = luma(marked) - a
    size = min(256, *a.shape)
    step = max(1, size // 4)
    best, flattest = np.inf, (0, 0)
    for y in range(0, a.shape[0] - size + 1, step):
        for x in range(0, a.shape[1] - size + 1, step):
            s = float(a[y : y + size, x : x + size].std())
            if s < best:
                best, flattest = s, (y, x)
    spread, flat = flat_blocks(a)
    rows, cols = spread.shape
    block_rms = np.sqrt(
        (change[: rows * BLOCK, : cols * BLOCK] ** 2).reshape(rows, BLOCK, cols, BLOCK).mean(axis=(1, 3))
    )
    by, bx = np.unravel_index(int(np.argmax(np.where(flat, block_rms, -1.0))), flat.shape)
    worst = (
        int(np.clip(by * BLOCK + BLOCK // 2 - size // 2, 0, a.shape[0] - size)),
        int(np.clip(bx * BLOCK + BLOCK // 2 - size // 2, 0, a.shape[1] - size)),
    )

    def big(v: np.ndarray) -> np.ndarray:
        return cv2.resize(v, (2 * size, 2 * size), interpolation=cv2.INTER_NEAREST)

    stem = "".join(c if c.isalnum() else "_" for c in name)
    folder.mkdir(parents=True, exist_ok=True)
    for tag, (y, x) in (("flattest", flattest), ("worst", worst)):
        crop = (slice(y, y + size), slice(x, x + size))
        diff = np.clip(128 + 8 * change[crop], 0, 255).astype(np.uint8)
        sheet = np.concatenate(
            [big(original[crop]), big(marked[crop]), big(np.repeat(diff[..., None], 3, axis=2))], axis=1
        )
        cv2.imwrite(str(folder / f"{stem}_{tag}.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("baseline_watermark", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def pictures() -> dict[str, np.ndarray]:
    found = {f"demo {name}": load_image(DEMO / name).pixels for name in DEMO_PHOTOS}
    found.update({name: load_image(FACES / name).pixels for name in TEST_PHOTOS if (FACES / name).exists()})
    found.update(synthetic())
    return found


def pan_frames(photo: np.ndarray, size: tuple[int, int] = (1280, 720), count: int = 12) -> list[np.ndarray]:
    """A window panning over ``photo`` and zooming in slightly (like tests/video_fixtures.py)."""
    width, height = size
    ph, pw = photo.shape[:2]
    frames = []
    for i in range(count):
        t = i / max(1, count - 1)
        win_w = int(min(pw, ph * width / height) * (0.95 - 0.15 * t))
        win_h = int(win_w * height / width)
        x0, y0 = int((pw - win_w) * (0.35 + 0.3 * t)), int((ph - win_h) * 0.3)
        frames.append(cv2.resize(photo[y0 : y0 + win_h, x0 : x0 + win_w], size, interpolation=cv2.INTER_AREA))
    return frames


def clips() -> dict[str, list[np.ndarray]]:
    found = {"demo lincoln_1.jpg pan 720p": pan_frames(load_image(DEMO / "lincoln_1.jpg").pixels)}
    for name in ("alex_lacamoire/3.jpg", "obama/1.jpg"):
        if (FACES / name).exists():
            found[f"{name} pan 720p"] = pan_frames(load_image(FACES / name).pixels)
    return found


HEAD = "flatRMS worst  SSIM× mask busyRMS  PSNR"


def _fmt(v: Visibility) -> str:
    worst = "   -" if v.worst is None else f"{v.worst:4.2f}"
    return (
        f"{v.flat_rms:7.2f} {worst} {v.flat_ssim_loss:6.1f} {v.masking:4.2f} {v.busy_rms:7.2f} {v.psnr:5.1f}"
    )


def _median(values: list[Visibility]) -> Visibility:
    worst = [v.worst for v in values if v.worst is not None]
    return Visibility(
        flat_rms=float(np.median([v.flat_rms for v in values])),
        worst=float(np.median(worst)) if worst else None,
        flat_ssim_loss=float(np.median([v.flat_ssim_loss for v in values])),
        masking=float(np.median([v.masking for v in values])),
        busy_rms=float(np.median([v.busy_rms for v in values])),
        psnr=float(np.median([v.psnr for v in values])),
    )


def _table(rows: dict[str, dict[str, Visibility]], columns: list[str]) -> None:
    print(f"{'':34}" + "".join(f" | {name:^{len(HEAD)}}" for name in columns))
    print(f"{'':34}" + "".join(f" | {HEAD}" for _ in columns))
    for name, cells in rows.items():
        print(f"{name[:34]:34}" + "".join(f" | {_fmt(cells[c])}" for c in columns))


def main() -> int:
    from likeness.disclosure.footage_sink import VIDEO_WATERMARK_STRENGTH

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--strength", type=float, default=None, help="image strength (default: the module's)")
    parser.add_argument("--baseline", type=Path, default=None, help="another watermark.py to compare")
    parser.add_argument(
        "--baseline-video-strength",
        type=float,
        default=3.75,
        help="the video strength the baseline was used at (the video writer's constant then)",
    )
    parser.add_argument("--crops", type=Path, default=None, help="write flat-area crops here")
    args = parser.parse_args()

    modules: dict[str, ModuleType] = {"current": watermark}
    if args.baseline is not None:
        modules = {"baseline": load_module(args.baseline), "current": watermark}
    columns = list(modules)
    print(
        f"flat = flattest {FLAT_SHARE:.0%} of {BLOCK}×{BLOCK} blocks (luma change RMS, grey levels); "
        f"worst = largest block RMS where the block's std < {TRULY_FLAT_STD:g}; "
        f"SSIM× = (1 − SSIM)·1000 over the flat blocks; "
        f"mask = change / (block std + 1); busy = busiest {FLAT_SHARE:.0%} of blocks"
    )

    print(f"\nstill pictures, strength {'default' if args.strength is None else args.strength}")
    rows: dict[str, dict[str, Visibility]] = {}
    for name, pixels in pictures().items():
        output_id = new_output_id()
        h, w = pixels.shape[:2]
        row = {}
        for label, module in modules.items():
            marked = module.embed_id(pixels, output_id, strength=args.strength)
            row[label] = measure(pixels, marked)
            if args.crops is not None and label == "current":
                write_crops(args.crops, name, pixels, marked)
        rows[f"{name[:23]} {w}×{h}"] = row
    rows["median"] = {c: _median([row[c] for row in rows.values()]) for c in columns}
    _table(rows, columns)

    strengths = {"baseline": args.baseline_video_strength, "current": VIDEO_WATERMARK_STRENGTH}
    print(
        "\nvideo frames (12-frame 1280×720 pans, median per frame), at the video strength: "
        + ", ".join(f"{c} {strengths[c]:g}" for c in columns)
    )
    rows = {}
    for name, frames in clips().items():
        output_id = new_output_id()
        rows[name] = {
            label: _median(
                [measure(f, module.embed_id(f, output_id, strength=strengths[label])) for f in frames]
            )
            for label, module in modules.items()
        }
    _table(rows, columns)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
