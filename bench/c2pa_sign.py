"""C2PA content credentials: time to sign and to read (validate) a 1080p output, and its size.

    python bench/c2pa_sign.py [--repeat 10]

A 1920×1080 frame made from a test photo is encoded as the writer does (JPEG q95 4:4:4, PNG), then
signed in place with the installation's own chain (:func:`sign_content_credentials`, two
ingredients read from their files, as in a swap) and read back with this installation's root as
trust anchor (:func:`read_credentials`). The first signing in a fresh data home also creates the
certificate chain; that is timed separately. Times are the best and the median of ``--repeat``.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import cv2

from likeness.disclosure.credentials import CredentialFacts, read_credentials, sign_content_credentials
from likeness.disclosure.output_id import new_output_id
from likeness.disclosure.still_sink import encode
from likeness.disclosure.types import Ingredient
from likeness.home import Home
from likeness.media import load_image

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FACES = SHARED / "testdata" / "faces"


def ingredient(role: str, path: Path) -> Ingredient:
    return Ingredient(
        role=role, path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(), format="JPEG"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()

    target, source = FACES / "_multi" / "couple.jpg", FACES / "obama" / "4.jpg"
    frame = cv2.resize(load_image(target).pixels, (1920, 1080), interpolation=cv2.INTER_AREA)
    ingredients = [ingredient("source", source), ingredient("target", target)]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        home = Home(Path(folder) / "home").ensure()
        first = None
        for fmt, suffix, media_type in (("JPEG", ".jpg", "image/jpeg"), ("PNG", ".png", "image/png")):
            data = encode(frame, fmt)
            sign_s, read_s, size = [], [], 0
            for n in range(args.repeat):
                path = Path(folder) / f"out{n}{suffix}"
                path.write_bytes(data)
                facts = CredentialFacts(
                    output_id=new_output_id(),
                    kind="swap",
                    media_type=media_type,
                    purpose="research",
                    consent_ids=["consent-1", "consent-2"],
                    ingredients=ingredients,
                    tools={"analyzer": {"backend": "dlib"}, "swapper": {"swapper": "classical"}},
                )
                start = time.perf_counter()
                result = sign_content_credentials(path, facts=facts, home=home)
                elapsed = time.perf_counter() - start
                if first is None:
                    first = elapsed  # includes creating the certificate chain
                    continue
                sign_s.append(elapsed)
                size = path.stat().st_size - len(data)
                start = time.perf_counter()
                report = read_credentials(path, home, media_type=media_type)
                read_s.append(time.perf_counter() - start)
                assert report.state == "trusted" and result.state == "trusted"
            rows.append((fmt, len(data), size, sign_s, read_s))

    print(f"first signing in a fresh data home (creates the certificate chain): {1000 * first:.0f} ms")
    print(
        f"{'1920x1080':<10}{'file KB':>9}{'+manifest B':>13}"
        f"{'sign ms best/median':>22}{'read ms best/median':>22}"
    )
    for fmt, file_bytes, added, sign_s, read_s in rows:
        print(
            f"{fmt:<10}{file_bytes / 1024:>9.0f}{added:>13}"
            f"{f'{1000 * min(sign_s):.1f} / {1000 * statistics.median(sign_s):.1f}':>22}"
            f"{f'{1000 * min(read_s):.1f} / {1000 * statistics.median(read_s):.1f}':>22}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
