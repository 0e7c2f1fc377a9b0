"""Watermark robustness and speed: likeness next to invisible-watermark, in one run.

    python bench/watermark_robustness.py [--photos 24] [--suites likeness,geometric,imagecorruptions,augly]
        [--svd] [--rivagan 3] [--clean N] [--baseline FILE] [--severities 1,2] [--attacks gaussian,zoom]
        [--first 0] [--cache DIR]

Suites of attacks (``--suites``, all by default):

- ``likeness``: JPEG, resizes, crop, brightness, blur, a screenshot (the first table);
- ``geometric``: rotation ±5/±10/±15°, keystone 5/10 %, pad to square and letterbox to 16:9, the
  picture inside a screenshot with UI chrome at 40/70/100 %, horizontal mirror, zoom and motion
  blur, each alone and followed by JPEG q70;
- ``imagecorruptions``: every corruption of the ImageNet-C package at severities 1, 2 and 3;
- ``augly``: every AugLy image operation with its defaults (those that need a second picture get
  another test photo).

Cost: every photo is decoded after every attack (about 240 with all suites); imagecorruptions'
glass_blur is a pure-Python loop over the pixels. The suites can run as separate processes
(``--suites geometric`` …); on a shared 2-core machine one imagecorruptions photo took minutes.

Subsets: ``--severities 1,2`` keeps only those imagecorruptions severities; ``--attacks a,b`` keeps
only attacks whose name contains one of the given words (case-insensitive; "none" always runs);
``--first K`` skips the first K of the picked photos (to split a long run over processes:
``--photos 24 --first 12`` runs photos 13–24 of the same 24).

Tables list exact / missing / wrong ids per attack (wrong: an id was reported that is not the
embedded one). dwtDctSvd (slow) only with ``--svd``. imagecorruptions 1.1.2 and AugLy 1.0.0 were
written for numpy 1 and Pillow < 10: the shims for that live in ``_shim_third_party`` below, in
this bench only.

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

``--cache DIR`` keeps every attacked picture on disk (PNG, under a folder named by a hash of the
marked picture, so a change of the embedder or of the id starts afresh) and reads it back on the
next run instead of attacking again: iterating on the decoder then costs the decodes only (some
imagecorruptions, glass blur above all, take seconds per picture). With it, each photo's id is
derived from the photo's name (the same on every run), not fresh.

``--clean N`` also decodes N unmarked images (random crops of every test photo, and noise) with
likeness's decoder and counts reported ids (expected: none; the analytic bound is printed).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageFilter  # noqa: E402

from likeness.disclosure import watermark  # noqa: E402
from likeness.disclosure.output_id import is_balanced, new_output_id, output_id_bits  # noqa: E402
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


def rotate(pixels: np.ndarray, degrees: float) -> np.ndarray:
    """Rotated about the centre, same canvas, black corners."""
    h, w = pixels.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(pixels, matrix, (w, h), flags=cv2.INTER_LINEAR)


def keystone(pixels: np.ndarray, amount: float) -> np.ndarray:
    """Top edge narrowed by ``amount`` of the width (a photo of a screen from below)."""
    h, w = pixels.shape[:2]
    inset = amount * w / 2
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[inset, 0], [w - inset, 0], [w, h], [0, h]])
    return cv2.warpPerspective(pixels, cv2.getPerspectiveTransform(src, dst), (w, h), flags=cv2.INTER_LINEAR)


def pad_to(pixels: np.ndarray, aspect: float) -> np.ndarray:
    """Letterboxed (black bars) to width/height ``aspect``."""
    h, w = pixels.shape[:2]
    height, width = (h, max(w, round(h * aspect))) if w / h < aspect else (max(h, round(w / aspect)), w)
    canvas = np.zeros((height, width, 3), np.uint8)
    y, x = (height - h) // 2, (width - w) // 2
    canvas[y : y + h, x : x + w] = pixels
    return canvas


def ui_screenshot(pixels: np.ndarray, scale: float) -> np.ndarray:
    """Shown at ``scale`` inside app chrome: a dark title bar, a sidebar with text lines, margins."""
    shown = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = shown.shape[:2]
    canvas = np.full((h + 140, w + 260, 3), 245, np.uint8)
    canvas[:60] = (40, 44, 52)
    canvas[60:, :200] = (230, 232, 236)
    rng = np.random.default_rng(h * 7919 + w)
    for row in range(80, canvas.shape[0] - 12, 28):
        canvas[row : row + 10, 20 : 20 + int(rng.integers(60, 170))] = 90
    canvas[20:40, 240 : 240 + min(300, w)] = 200
    canvas[100 : 100 + h, 230 : 230 + w] = shown
    return canvas


def motion_blur(pixels: np.ndarray, length: int = 9) -> np.ndarray:
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    return cv2.filter2D(pixels, -1, kernel)


def zoom_blur(pixels: np.ndarray, amount: float = 0.06, steps: int = 8) -> np.ndarray:
    """The average of the picture zoomed about its centre by 1 … 1 + ``amount``."""
    h, w = pixels.shape[:2]
    total = np.zeros(pixels.shape, np.float32)
    for k in range(steps):
        factor = 1.0 + amount * k / (steps - 1)
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, factor)
        total += cv2.warpAffine(pixels, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.clip(np.rint(total / steps), 0, 255).astype(np.uint8)


GEOMETRIC_BASE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    **{f"rotate {d:+d}°": (lambda p, d=d: rotate(p, d)) for d in (-15, -10, -5, 5, 10, 15)},
    "keystone 5%": lambda p: keystone(p, 0.05),
    "keystone 10%": lambda p: keystone(p, 0.10),
    "pad to square": lambda p: pad_to(p, 1.0),
    "letterbox 16:9": lambda p: pad_to(p, 16 / 9),
    **{f"UI screenshot {s}%": (lambda p, s=s: ui_screenshot(p, s / 100)) for s in (40, 70, 100)},
    "mirror": lambda p: np.ascontiguousarray(p[:, ::-1]),
    "zoom blur 6%": zoom_blur,
    "motion blur 9 px": motion_blur,
}
GEOMETRIC: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
for _name, _fn in GEOMETRIC_BASE.items():
    GEOMETRIC[_name] = _fn
    GEOMETRIC[_name + " + q70"] = lambda p, f=_fn: jpeg(f(p), 70)


def _shim_third_party() -> None:
    """imagecorruptions 1.1.2 imports pkg_resources (gone from new setuptools) and calls
    skimage's gaussian(multichannel=) and np.float_; AugLy 1.0.0 calls np.float and Pillow's
    removed getsize / getsize_multiline. Patched here, for this process only."""
    import importlib.util
    import types

    if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, resource: str) -> str:
            spec = importlib.util.find_spec(package)
            return os.path.join(os.path.dirname(spec.origin), resource)

        shim.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    for alias, value in (("float_", np.float64), ("float", float)):
        if alias not in np.__dict__:
            setattr(np, alias, value)
    from PIL import ImageDraw, ImageFont

    def multiline_size(font, text, *args, **kwargs):
        box = ImageDraw.Draw(Image.new("L", (1, 1))).multiline_textbbox((0, 0), text, font=font)
        return box[2] - box[0], box[3] - box[1]

    if not hasattr(ImageFont.FreeTypeFont, "getsize_multiline"):
        ImageFont.FreeTypeFont.getsize_multiline = multiline_size  # type: ignore[attr-defined]
    if not hasattr(ImageFont.FreeTypeFont, "getsize"):
        ImageFont.FreeTypeFont.getsize = multiline_size  # type: ignore[attr-defined]

    import skimage.filters
    from imagecorruptions import corruptions

    def gaussian(image, *args, multichannel=None, **kwargs):
        if multichannel is not None:
            kwargs["channel_axis"] = -1 if multichannel else None
        return skimage.filters.gaussian(image, *args, **kwargs)

    corruptions.gaussian = gaussian


def imagecorruption_attacks(
    severities: tuple[int, ...] = (1, 2, 3),
) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    _shim_third_party()
    from imagecorruptions import corrupt, get_corruption_names

    def attack(name: str, severity: int) -> Callable[[np.ndarray], np.ndarray]:
        def run(pixels: np.ndarray) -> np.ndarray:
            out = corrupt(np.ascontiguousarray(pixels), corruption_name=name, severity=severity)
            return np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8)[..., :3])

        return run

    return {
        f"ic {name} s{severity}": attack(name, severity)
        for name in get_corruption_names("all")
        for severity in severities
    }


def augly_attacks(other: np.ndarray) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Every AugLy image operation with its defaults; ``other`` is the second picture where one
    is needed."""
    _shim_third_party()
    import augly.image as imaugs

    second = Image.fromarray(other)
    plain = [
        "blur", "brightness", "change_aspect_ratio", "clip_image_size", "color_jitter", "contrast",
        "convert_color", "crop", "encoding_quality", "grayscale", "hflip", "meme_format", "opacity",
        "overlay_emoji", "overlay_onto_screenshot", "overlay_stripes", "overlay_text", "pad",
        "pad_square", "perspective_transform", "pixelization", "random_noise", "resize", "rotate",
        "saturation", "scale", "sharpen", "shuffle_pixels", "skew", "vflip",
    ]  # fmt: skip

    def attack(name: str) -> Callable[[np.ndarray], np.ndarray]:
        def run(pixels: np.ndarray) -> np.ndarray:
            image = Image.fromarray(pixels)
            if name == "overlay_image":
                out = imaugs.overlay_image(image, second)
            elif name == "overlay_onto_background_image":
                out = imaugs.overlay_onto_background_image(image, background_image=second)
            else:
                out = getattr(imaugs, name)(image)
            return np.asarray(out.convert("RGB"))

        return run

    names = [*plain, "overlay_image", "overlay_onto_background_image"]
    return {f"augly {name}": attack(name) for name in sorted(names)}


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


def fixed_bits(name: str, method: str, count: int) -> np.ndarray:
    """Payload bits derived from the photo's and method's names (the same on every run): a
    balanced id for likeness, raw bits for the others."""
    seed = int.from_bytes(hashlib.sha1(f"{method}|{name}".encode()).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    while True:
        bits = rng.integers(0, 2, count).astype(np.uint8)
        if not method.startswith("likeness") or is_balanced(bits):
            return bits


class AttackCache:
    """Attacked pictures on disk, keyed by a hash of the marked picture and the attack's name."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def attacked(self, marked: np.ndarray, attack: str, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        if self.root is None:
            return np.ascontiguousarray(fn(marked))
        digest = hashlib.sha1(np.ascontiguousarray(marked).tobytes()).hexdigest()[:16]
        slug = "".join(c if c.isalnum() else "_" for c in attack)
        path = self.root / f"{digest}-{marked.shape[0]}x{marked.shape[1]}" / f"{slug}.png"
        if path.exists():
            stored = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if stored is not None:
                return np.ascontiguousarray(stored[..., ::-1])
        attacked = np.ascontiguousarray(fn(marked))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part.png")
        cv2.imwrite(str(partial), np.ascontiguousarray(attacked[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        partial.replace(path)
        return attacked


def _tally(total: int, exact: int, wrong: int) -> str:
    return (
        f"{exact:>3}/{total:<3} {100 * exact / max(total, 1):3.0f}% m{total - exact - wrong:<3} w{wrong:<3}"
    )


def _summary(
    names: list[str],
    sample: dict[str, list[int]],
    exact: dict[str, dict[str, int]],
    wrong: dict[str, dict[str, int]],
    attacks: list[str],
    column: int,
) -> str:
    cells = []
    for m in names:
        total = len(sample[m]) * len(attacks)
        cells.append(
            f"{_tally(total, sum(exact[m][a] for a in attacks), sum(wrong[m][a] for a in attacks)):>{column}}"
        )
    return "".join(cells)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--suites", default="likeness,geometric,imagecorruptions,augly")
    parser.add_argument("--svd", action="store_true", help="also invisible-watermark's dwtDctSvd (slow)")
    parser.add_argument(
        "--rivagan",
        type=int,
        default=0,
        metavar="N",
        help="also rivaGan on the N smallest photos (about 34 s per 1080p frame on CPU)",
    )
    parser.add_argument("--clean", type=int, default=0, help="decode this many unmarked images")
    parser.add_argument("--baseline", type=Path, default=None, help="another likeness watermark.py")
    parser.add_argument("--severities", default="1,2,3", help="imagecorruptions severities to run")
    parser.add_argument("--attacks", default="", help="only attacks whose name contains one of these words")
    parser.add_argument("--first", type=int, default=0, help="skip this many of the picked photos")
    parser.add_argument("--cache", type=Path, default=None, help="keep attacked pictures in this folder")
    args = parser.parse_args()

    photos = pick_photos(args.photos)[args.first :]
    methods: dict[str, tuple[Callable, Callable]] = {"likeness": likeness_method()}
    if args.baseline is not None:
        methods["likeness@baseline"] = likeness_method(load_module(args.baseline))
    methods["dwtDct"] = imwatermark_method("dwtDct")
    if args.svd:
        methods["dwtDctSvd"] = imwatermark_method("dwtDctSvd")
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

    suites = {name.strip() for name in args.suites.split(",") if name.strip()}
    groups: dict[str, dict[str, Callable[[np.ndarray], np.ndarray]]] = {}
    if "likeness" in suites:
        groups["likeness"] = ATTACKS
    if "geometric" in suites:
        groups["geometric"] = GEOMETRIC
    if "imagecorruptions" in suites:
        severities = tuple(int(v) for v in args.severities.split(",") if v.strip())
        groups["imagecorruptions"] = imagecorruption_attacks(severities)
    if "augly" in suites:
        groups["augly"] = augly_attacks(photos[-1][1])
    words = [w.strip().lower() for w in args.attacks.split(",") if w.strip()]
    if words:
        groups = {
            group: {a: fn for a, fn in members.items() if a == "none" or any(w in a.lower() for w in words)}
            for group, members in groups.items()
        }
        groups = {group: members for group, members in groups.items() if members}
    attacks = {name: fn for group in groups.values() for name, fn in group.items()}

    exact = {name: dict.fromkeys(attacks, 0) for name in methods}
    wrong = {name: dict.fromkeys(attacks, 0) for name in methods}
    failed: dict[str, str] = {}
    psnrs: dict[str, list[float]] = {name: [] for name in methods}
    flat_rms: dict[str, list[float]] = {name: [] for name in methods}
    rng = np.random.default_rng(7)
    cache = AttackCache(args.cache)
    started = time.perf_counter()
    for index, (name_of_photo, pixels) in enumerate(photos):
        for method, (embed, decode) in methods.items():
            if index not in sample[method]:
                continue
            if args.cache is not None:
                bits = fixed_bits(name_of_photo, method, payload_bits[method])
            elif method in likeness_like:
                bits = output_id_bits(new_output_id())
            else:
                bits = rng.integers(0, 2, payload_bits[method]).astype(np.uint8)
            marked = embed(pixels, bits)
            psnrs[method].append(psnr(pixels, marked))
            flat_rms[method].append(measure(pixels, marked).flat_rms)
            for attack, fn in attacks.items():
                try:
                    attacked = cache.attacked(marked, attack, fn)
                except Exception as error:  # noqa: BLE001 - a third-party operation that cannot run here
                    failed[attack] = f"{type(error).__name__}: {error}"[:120]
                    continue
                got = decode(attacked)
                if got is not None and np.array_equal(got, bits):
                    exact[method][attack] += 1
                elif got is not None:
                    wrong[method][attack] += 1
        elapsed = time.perf_counter() - started
        print(f"  [{index + 1}/{len(photos)}] {name_of_photo} ({elapsed:.0f} s)", file=sys.stderr, flush=True)

    frame = timing_frame(photos)
    speed = {}
    for method, (embed, decode) in methods.items():
        bits = output_id_bits(new_output_id())[: payload_bits[method]]
        repeat = 1 if method in ("dwtDctSvd", "rivaGan") else 3
        marked = embed(frame, bits)
        speed[method] = (
            best_ms(lambda e=embed, b=bits: e(frame, b), repeat),
            best_ms(lambda d=decode, m=marked: d(m), repeat),
            best_ms(lambda d=decode: d(frame), repeat),
        )

    names = list(methods)
    column = 26
    width = max((len(a) for a in attacks), default=24) + 2
    print("\ncells: exact/total %, m = missing (no id), w = wrong id (an id that is not the embedded one;")
    print("invisible-watermark has no check code, so everything it reads back that is not exact is wrong)")
    for group, members in groups.items():
        print()
        print(f"[{group}]".ljust(width) + "".join(f"{m:>{column}}" for m in names))
        for attack in members:
            if attack in failed:
                print(attack.ljust(width) + f"  (did not run: {failed[attack]})")
                continue
            cells = "".join(
                f"{_tally(len(sample[m]), exact[m][attack], wrong[m][attack]):>{column}}" for m in names
            )
            print(attack.ljust(width) + cells)
        ran = [a for a in members if a not in failed]
        print(f"all of {group}".ljust(width) + _summary(names, sample, exact, wrong, ran, column))
        if group == "imagecorruptions":
            mild = [a for a in ran if a.endswith(("s1", "s2"))]
            print("severities 1-2".ljust(width) + _summary(names, sample, exact, wrong, mild, column))
    print()
    print(
        "PSNR dB (min / mean)".ljust(width)
        + "".join(f"{min(psnrs[m]):>{column - 7}.1f} /{np.mean(psnrs[m]):5.1f}" for m in names)
    )
    print(
        "flat-area RMS (median)".ljust(width)
        + "".join(f"{np.median(flat_rms[m]):>{column}.2f}" for m in names)
    )
    print("embed ms, 1080p, 1 thread".ljust(width) + "".join(f"{speed[m][0]:>{column}.0f}" for m in names))
    print("decode ms, 1080p, marked".ljust(width) + "".join(f"{speed[m][1]:>{column}.0f}" for m in names))
    print("decode ms, 1080p, unmarked".ljust(width) + "".join(f"{speed[m][2]:>{column}.0f}" for m in names))

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
