"""Watermark robustness and speed: likeness next to invisible-watermark, in one run.

    python bench/watermark_robustness.py [--photos 24] [--rivagan 3] [--clean N] [--baseline FILE]

For each of ``--photos`` varied photos from the shared test set (shorter side ≥ 400 px, spread
over all folders), a fresh output id is embedded by each method and read back after each attack;
a row counts the photos whose exact id (all 50 bits) came back. invisible-watermark gets the same
50 id bits as raw bits (it has no error correction or check code of its own). PSNR is of the
marked image against the original. Speed is measured on one 1920×1080 frame with one thread
(OMP/BLAS/OpenCV threads set to 1 before anything is imported).

``--rivagan N`` adds invisible-watermark's rivaGan (ONNX models shipped in the package, run by
onnxruntime on the CPU) on the N smallest of those photos only: it costs about 34 s per 1080p
frame on this CPU. It carries exactly 32 bits, so it gets the first 32 id bits and a row counts
exact 32-bit recoveries (out of N).

Visibility: "flat-area RMS" is the luma change's RMS over the flattest 20 % of 32×32 blocks of each
photo (median over photos; see bench/watermark_visibility.py): what shows as mottling on plain
backdrops, sky and skin. PSNR alone hides it.

``--baseline FILE`` adds another likeness watermark module (for example the previous version:
``git show HEAD:src/likeness/disclosure/watermark.py > /tmp/old.py``) as a column, same photos.

``--clean N`` also decodes N unmarked images (random crops of every test photo, and noise) with
likeness's decoder and counts reported ids (expected: none; analytic bound 2.4e-7 per image).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import io  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageFilter  # noqa: E402

from likeness.disclosure import watermark  # noqa: E402
from likeness.disclosure.output_id import new_output_id, output_id_bits  # noqa: E402
from likeness.media import load_image  # noqa: E402
from watermark_visibility import load_module, measure  # noqa: E402

cv2.setNumThreads(1)
SHARED = Path(os.environ.get("LIKENESS_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
FACES = SHARED / "testdata" / "faces"


# ---- attacks (RGB uint8 in, RGB uint8 out) ---------------------------------------------------
def jpeg(pixels: np.ndarray, quality: int, subsampling: int = 2) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, subsampling=subsampling)
    return np.asarray(Image.open(buffer).convert("RGB"))


def resize(pixels: np.ndarray, factor: float) -> np.ndarray:
    h, w = pixels.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))


def centre_crop(pixels: np.ndarray, area: float = 0.8) -> np.ndarray:
    h, w = pixels.shape[:2]
    side = area**0.5
    ch, cw = round(h * side), round(w * side)
    y, x = (h - ch) // 2, (w - cw) // 2
    return pixels[y : y + ch, x : x + cw]


def brightness(pixels: np.ndarray, delta: int) -> np.ndarray:
    return np.clip(pixels.astype(np.int16) + delta, 0, 255).astype(np.uint8)


def blur(pixels: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(1.5)))


def screenshot(pixels: np.ndarray) -> np.ndarray:
    """Shown at 70 % inside a light UI frame (50/30 px bars), captured, saved as JPEG q80."""
    shown = resize(pixels, 0.7)
    h, w = shown.shape[:2]
    canvas = np.full((h + 80, w + 60, 3), 240, np.uint8)
    canvas[50 : 50 + h, 30 : 30 + w] = shown
    return jpeg(canvas, 80)


ATTACKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda p: p,
    "JPEG q50 4:2:0": lambda p: jpeg(p, 50),
    "resize 0.5x": lambda p: resize(p, 0.5),
    "resize 0.25x": lambda p: resize(p, 0.25),
    "centre crop 80% area": centre_crop,
    "brightness +30": lambda p: brightness(p, 30),
    "brightness -30": lambda p: brightness(p, -30),
    "blur (Gaussian 1.5 px)": blur,
    "screenshot (0.7x, frame, q80)": screenshot,
}


# ---- methods: embed(rgb, bits) -> rgb, decode(rgb) -> bits | None --------------------------------
def likeness_method(module=watermark) -> tuple[Callable, Callable]:
    def embed(pixels: np.ndarray, bits: np.ndarray) -> np.ndarray:
        return module.embed(pixels, bits)

    def decode(pixels: np.ndarray) -> np.ndarray | None:
        reading = module.decode(pixels)
        return output_id_bits(reading.output_id) if reading.found and reading.output_id else None

    return embed, decode


def imwatermark_method(method: str, length: int = 50) -> tuple[Callable, Callable]:
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    def embed(pixels: np.ndarray, bits: np.ndarray) -> np.ndarray:
        encoder = WatermarkEncoder()
        encoder.set_watermark("bits", [int(b) for b in bits])
        bgr = encoder.encode(np.ascontiguousarray(pixels[..., ::-1]), method)
        return np.ascontiguousarray(bgr[..., ::-1])

    def decode(pixels: np.ndarray) -> np.ndarray | None:
        if pixels.shape[0] * pixels.shape[1] < 256 * 256:
            return None  # it refuses images under 256×256
        decoder = WatermarkDecoder("bits", length)
        found = decoder.decode(np.ascontiguousarray(pixels[..., ::-1]), method)
        return np.asarray(found, dtype=np.uint8)

    return embed, decode


def _cell(count: int, total: int) -> str:
    return f"{count}/{total} {100 * count / total:3.0f}%"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def pick_photos(count: int) -> list[tuple[str, np.ndarray]]:
    paths = sorted(p for p in FACES.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    usable = []
    for path in paths:
        pixels = load_image(path).pixels
        if min(pixels.shape[:2]) >= 400:
            usable.append((str(path.relative_to(FACES)), pixels))
    step = max(1, len(usable) // count)
    return usable[::step][:count]


def timing_frame(photos: list[tuple[str, np.ndarray]]) -> np.ndarray:
    largest = max(photos, key=lambda item: item[1].size)[1]
    return cv2.resize(largest, (1920, 1080), interpolation=cv2.INTER_AREA)


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000.0


def clean_check(count: int) -> tuple[int, int]:
    rng = np.random.default_rng(20250101)
    paths = sorted(p for p in FACES.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    photos = [load_image(p).pixels for p in paths]
    found = 0
    for i in range(count):
        if i % 10 == 0:
            h, w = (int(v) for v in rng.integers(64, 900, 2))
            noise = rng.normal(128, rng.uniform(5, 60), (h, w, 3))
            image = np.clip(noise, 0, 255).astype(np.uint8)
        else:
            photo = photos[int(rng.integers(len(photos)))]
            H, W = photo.shape[:2]
            h = int(rng.integers(min(H, 64), H + 1))
            w = int(rng.integers(min(W, 64), W + 1))
            y, x = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
            image = photo[y : y + h, x : x + w]
            if i % 3 == 0:
                image = jpeg(np.ascontiguousarray(image), int(rng.integers(40, 95)))
        found += watermark.decode(np.ascontiguousarray(image)).found
    return found, count


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument(
        "--rivagan",
        type=int,
        default=0,
        metavar="N",
        help="also rivaGan on the N smallest photos (about 34 s per 1080p frame on CPU)",
    )
    parser.add_argument("--clean", type=int, default=0, help="decode this many unmarked images")
    parser.add_argument("--baseline", type=Path, default=None, help="another likeness watermark.py")
    args = parser.parse_args()

    photos = pick_photos(args.photos)
    methods: dict[str, tuple[Callable, Callable]] = {"likeness": likeness_method()}
    if args.baseline is not None:
        methods["likeness@baseline"] = likeness_method(load_module(args.baseline))
    methods.update({"dwtDct": imwatermark_method("dwtDct"), "dwtDctSvd": imwatermark_method("dwtDctSvd")})
    payload_bits = dict.fromkeys(methods, 50)
    likeness_like = {name for name in methods if name.startswith("likeness")}
    sample = {name: [index for index, _ in enumerate(photos)] for name in methods}
    if args.rivagan:
        from imwatermark import WatermarkEncoder

        WatermarkEncoder.loadModel()  # the two ONNX files inside the package
        methods["rivaGan"] = imwatermark_method("rivaGan", length=32)
        payload_bits["rivaGan"] = 32
        by_size = sorted(range(len(photos)), key=lambda i: photos[i][1].shape[0] * photos[i][1].shape[1])
        sample["rivaGan"] = sorted(by_size[: args.rivagan])
    shapes = sorted(min(p.shape[:2]) for _, p in photos)
    print(f"{len(photos)} photos, shorter side {shapes[0]}–{shapes[-1]} px; payload 50 bits; exact id needed")
    if args.rivagan:
        picked = ", ".join(
            f"{photos[i][0]} ({photos[i][1].shape[1]}×{photos[i][1].shape[0]})" for i in sample["rivaGan"]
        )
        print(f"rivaGan: 32-bit payload, on {len(sample['rivaGan'])} photo(s) only: {picked}")

    recovered = {name: dict.fromkeys(ATTACKS, 0) for name in methods}
    psnrs: dict[str, list[float]] = {name: [] for name in methods}
    flat_rms: dict[str, list[float]] = {name: [] for name in methods}
    rng = np.random.default_rng(7)
    for index, (name_of_photo, pixels) in enumerate(photos):
        for method, (embed, decode) in methods.items():
            if index not in sample[method]:
                continue
            bits = (
                output_id_bits(new_output_id())
                if method in likeness_like
                else rng.integers(0, 2, payload_bits[method]).astype(np.uint8)
            )
            marked = embed(pixels, bits)
            psnrs[method].append(psnr(pixels, marked))
            flat_rms[method].append(measure(pixels, marked).flat_rms)
            for attack, fn in ATTACKS.items():
                got = decode(fn(marked))
                recovered[method][attack] += bool(got is not None and np.array_equal(got, bits))
        print(f"  [{index + 1}/{len(photos)}] {name_of_photo}", file=sys.stderr, flush=True)

    frame = timing_frame(photos)
    speed = {}
    for method, (embed, decode) in methods.items():
        bits = output_id_bits(new_output_id())[: payload_bits[method]]
        repeat = 1 if method in ("dwtDctSvd", "rivaGan") else 3
        marked = embed(frame, bits)
        speed[method] = (
            best_ms(lambda e=embed, b=bits: e(frame, b), repeat),
            best_ms(lambda d=decode, m=marked: d(m), repeat),
        )

    names = list(methods)
    width = max(len(a) for a in ATTACKS) + 2
    print()
    print("exact id recovered (photos)".ljust(width) + "".join(f"{m:>18}" for m in names))
    for attack in ATTACKS:
        cells = "".join(f"{_cell(recovered[m][attack], len(sample[m])):>18}" for m in names)
        print(attack.ljust(width) + cells)
    print(
        "PSNR dB (min / mean)".ljust(width)
        + "".join(f"{min(psnrs[m]):>11.1f} /{np.mean(psnrs[m]):5.1f}" for m in names)
    )
    print("flat-area RMS (median)".ljust(width) + "".join(f"{np.median(flat_rms[m]):>18.2f}" for m in names))
    print("embed ms, 1080p, 1 thread".ljust(width) + "".join(f"{speed[m][0]:>18.0f}" for m in names))
    print("decode ms, 1080p, 1 thread".ljust(width) + "".join(f"{speed[m][1]:>18.0f}" for m in names))

    if args.clean:
        start = time.perf_counter()
        found, count = clean_check(args.clean)
        seconds = time.perf_counter() - start
        print(
            f"\nclean images: {found} ids reported in {count} decodes of unmarked images "
            f"({seconds:.0f} s); analytic bound {watermark.FALSE_POSITIVE_RATE:.1e} per image"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
