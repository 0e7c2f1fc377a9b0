"""What each disclosure profile costs: the label plate's share of the picture, the per-frame label
time on 1080p footage (inside and after the start label's 2 s), and writing the AIGC metadata.

    PYTHONPATH=src python bench/disclosure_profiles.py [--photos 6]

Reads photos from ../shared/testdata/faces (or $LIKENESS_SHARED/testdata/faces); writes only to a
temporary folder. Timings on a shared machine are noisy: compare the rows of one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("LIKENESS_SHARED", REPO.parent / "shared")) / "testdata" / "faces"
PROFILES = ("default", "eu", "cn")


def _job(profile: str):
    from likeness.disclosure.seal import SealJob

    return SealJob(
        kind="swap",
        purpose="bench",
        ingredients=[],
        tools={},
        operator="bench",
        consent_ids=lambda: [],
        disclosure_profile=profile,
    )


def _median_ms(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    import cv2
    from PIL import Image

    from likeness.disclosure.implicit import aigc_fields, embed_aigc
    from likeness.disclosure.output_id import new_output_id
    from likeness.disclosure.seal import Marker
    from likeness.disclosure.still_sink import encode
    from likeness.media import load_image

    def large(path: Path) -> bool:  # portraits and news photos, not 150-pixel thumbnails
        with Image.open(path) as image:
            return min(image.size) >= 400

    photos = [path for path in sorted(FACES.glob("*/*.jpg")) if large(path)][: args.photos]
    print("| photo | size | " + " | ".join(f"{p} plate (share)" for p in PROFILES) + " |")
    print("|---|---|" + "---|" * len(PROFILES))
    shares: dict[str, list[float]] = {p: [] for p in PROFILES}
    for photo in photos:
        pixels = load_image(photo).pixels
        height, width = pixels.shape[:2]
        cells = []
        for profile in PROFILES:
            marker = Marker(new_output_id(), _job(profile), 3.0)
            marker.label(pixels)
            box = marker.box
            assert box is not None
            share = (box.right - box.left) * (box.bottom - box.top) / (width * height)
            shares[profile].append(share)
            cells.append(f"{box.right - box.left}×{box.bottom - box.top} ({share:.1%})")
        print(f"| {photo.parent.name}/{photo.name} | {width}×{height} | " + " | ".join(cells) + " |")
    print("| median | | " + " | ".join(f"{statistics.median(shares[p]):.1%}" for p in PROFILES) + " |")

    frame = cv2.resize(load_image(photos[0]).pixels, (1920, 1080))
    print("\n1080p footage, Marker.label per frame (median ms):")
    for profile in PROFILES:
        marker = Marker(new_output_id(), _job(profile), 4.5, footage=True)
        marker.label(frame, 0.0)
        during = _median_ms(lambda m=marker: m.label(frame, 0.5), args.repeats)
        after = _median_ms(lambda m=marker: m.label(frame, 3.0), args.repeats)
        print(f"  {profile:8s} first 2 s {during:6.2f} ms   after {after:6.2f} ms")

    print("\nembed_aigc (the cn profile's XMP, inserted into the finished file; median ms):")
    with tempfile.TemporaryDirectory() as folder:
        pixels = load_image(photos[0]).pixels
        for fmt, media_type, suffix in (("JPEG", "image/jpeg", ".jpg"), ("PNG", "image/png", ".png")):
            data = encode(pixels, fmt)
            path = Path(folder) / f"still{suffix}"
            fields = aigc_fields(new_output_id(), "likeness", "0123456789abcdef")

            def run(path=path, data=data, media_type=media_type, fields=fields) -> None:
                path.write_bytes(data)
                embed_aigc(path, media_type, fields)

            write_only = _median_ms(lambda path=path, data=data: path.write_bytes(data), 10)
            total = _median_ms(run, 10)
            print(f"  {fmt} {len(data) // 1024} KiB: {total - write_only:.2f} ms (beyond rewriting the file)")


if __name__ == "__main__":
    main()
