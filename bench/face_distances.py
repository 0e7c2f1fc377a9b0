"""Genuine and impostor embedding distances for the dlib backend, to choose the consent gate's threshold.

Usage: python bench/face_distances.py [--faces DIR] [--jitters N] [--backend dlib]

Reads the identity folders of ``testdata/faces`` (folders starting with ``_`` are skipped), embeds the
one face in each photo, and prints:
  1. min / median / max of the genuine (same identity) and impostor (different identity) distances;
  2. per threshold (0.400 .. 0.650, step 0.025): the false-accept rate over impostor pairs and the
     false-reject rate over genuine pairs (a pair is accepted when distance < threshold);
  3. the best margin (smallest impostor minus largest genuine distance) and, per probe photo, how far
     the nearest other identity sits behind its own identity (what a runner-up rule sees).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FACES = Path(os.environ.get("LIKENESS_SHARED", REPO.parent / "shared")) / "testdata" / "faces"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def embed_all(faces_dir: Path, backend: str, jitters: int) -> dict[str, list[tuple[str, np.ndarray]]]:
    from likeness.faces.backends import load_analyzer
    from likeness.faces.dlib_backend import DlibAnalyzer
    from likeness.media.image import load_image

    analyzer = DlibAnalyzer(num_jitters=jitters) if backend == "dlib" else load_analyzer(backend)
    by_identity: dict[str, list[tuple[str, np.ndarray]]] = {}
    for folder in sorted(p for p in faces_dir.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for photo in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            faces = analyzer.analyze(load_image(photo).pixels)
            if len(faces) != 1:
                print(
                    f"  note: {photo.relative_to(faces_dir)} shows {len(faces)} faces; skipped",
                    file=sys.stderr,
                )
                continue
            by_identity.setdefault(folder.name, []).append((photo.name, faces[0].embedding))
    return by_identity


Pair = tuple[float, str, str]


def pair_distances(by_identity: dict[str, list[tuple[str, np.ndarray]]]) -> tuple[list[Pair], list[Pair]]:
    """All (distance, photo a, photo b) pairs, split into genuine and impostor."""
    genuine: list[Pair] = []
    impostor: list[Pair] = []
    items = [
        (identity, f"{identity}/{name}", emb)
        for identity, photos in by_identity.items()
        for name, emb in photos
    ]
    for (id_a, name_a, a), (id_b, name_b, b) in itertools.combinations(items, 2):
        distance = float(np.linalg.norm(a.astype(np.float64) - b.astype(np.float64)))
        (genuine if id_a == id_b else impostor).append((distance, name_a, name_b))
    return genuine, impostor


def runner_up_gaps(by_identity: dict[str, list[tuple[str, np.ndarray]]]) -> list[tuple[str, float, float]]:
    """Per probe photo: (name, distance to nearest own-identity photo, to nearest other-identity photo)."""
    rows = []
    for identity, photos in by_identity.items():
        for index, (name, emb) in enumerate(photos):
            own = [float(np.linalg.norm(emb - e)) for i, (_, e) in enumerate(photos) if i != index]
            other = [
                float(np.linalg.norm(emb - e))
                for other_id, ps in by_identity.items()
                if other_id != identity
                for _, e in ps
            ]
            if own:
                rows.append((f"{identity}/{name}", min(own), min(other)))
    return rows


def summarise(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES)
    parser.add_argument("--backend", default="dlib")
    parser.add_argument("--jitters", type=int, default=0, help="dlib num_jitters (0 = one pass)")
    args = parser.parse_args()

    start = time.perf_counter()
    by_identity = embed_all(args.faces, args.backend, args.jitters)
    elapsed = time.perf_counter() - start
    photos = sum(len(p) for p in by_identity.values())
    genuine_pairs, impostor_pairs = pair_distances(by_identity)
    genuine = [pair[0] for pair in genuine_pairs]
    impostor = [pair[0] for pair in impostor_pairs]
    print(
        f"backend {args.backend}, jitters {args.jitters}: {len(by_identity)} identities, {photos} photos, "
        f"{len(genuine)} genuine pairs, {len(impostor)} impostor pairs (embedding took {elapsed:.1f} s)\n"
    )
    print("distribution   min / median / max")
    print(f"genuine        {summarise(genuine)}")
    print(f"impostor       {summarise(impostor)}\n")

    print("threshold   FAR (impostor accepted)      FRR (genuine rejected)")
    for step in range(11):
        threshold = 0.400 + 0.025 * step
        false_accepts = sum(d < threshold for d in impostor)
        false_rejects = sum(d >= threshold for d in genuine)
        print(
            f"  {threshold:.3f}    {false_accepts:4d}/{len(impostor)} = {false_accepts / len(impostor):7.4f}"
            f"      {false_rejects:4d}/{len(genuine)} = {false_rejects / len(genuine):6.3f}"
        )

    margin = min(impostor) - max(genuine)
    print(f"\nbest margin (min impostor - max genuine): {margin:+.3f}")
    if margin > 0:
        print(f"  a clean split exists: any threshold in ({max(genuine):.3f}, {min(impostor):.3f}]")
    print(
        f"below {min(impostor):.3f} no impostor pair is accepted; 0 errors in {len(impostor)} pairs bounds "
        f"the true FAR only to <= 3/{len(impostor)} = {3 / len(impostor):.4f} (95%, rule of three): showing "
        f"FAR <= 0.001 needs >= 3000 impostor pairs with no error"
    )
    print("closest impostor pairs:")
    for distance, a, b in sorted(impostor_pairs)[:3]:
        print(f"  {distance:.3f}  {a} ~ {b}")
    print("farthest genuine pairs:")
    for distance, a, b in sorted(genuine_pairs, reverse=True)[:4]:
        print(f"  {distance:.3f}  {a} ~ {b}")

    rows = runner_up_gaps(by_identity)
    gaps = [other - own for _, own, other in rows]
    print(
        f"\nper probe (n={len(rows)}): nearest other identity minus nearest own photo: "
        f"min {min(gaps):+.3f}, median {statistics.median(gaps):+.3f}; probes where another identity is "
        f"nearer: {sum(g <= 0 for g in gaps)}"
    )
    worst = sorted(rows, key=lambda r: r[2] - r[1])[:5]
    for name, own, other in worst:
        print(f"  {name:34s} own {own:.3f}  other {other:.3f}  gap {other - own:+.3f}")


if __name__ == "__main__":
    main()
