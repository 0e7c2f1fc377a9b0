"""Genuine and impostor face distances on a labelled folder, measured by the gate's own code.

Usage: python bench/face_distances.py [--faces DIR] [--backend dlib|insightface] [--jitters N]
                                      [--home DIR] [--far 0.001] [--frr 0.05]

Everything here is ``likeness.consent.calibration``, the code behind ``likeness calibrate``:
``embed_folder`` (one face per photo; others skipped and listed), ``calibrate`` (pair distances
with the policy's metric; per threshold on its grid: a pair is accepted when distance ≤ threshold,
as in the gate; leave-one-out identification through ``gate.decide``; the chosen operating point),
so the bench and the gate cannot drift apart. Nothing is stored. On top of ``likeness calibrate``'s
report it prints the best margin between the distributions and, per probe photo, how far the
nearest other identity sits behind its own (what the gate's runner-up rule sees).

``--jitters`` (dlib only) re-embeds each face N extra times with random jitter, to see whether it
would separate the distributions better; the gate itself runs dlib with no jitter, so a threshold
measured with jitters does not carry over to it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FACES = Path(os.environ.get("LIKENESS_SHARED", REPO.parent / "shared")) / "testdata" / "faces"


def runner_up_gaps(faces, measured) -> list[tuple[str, float, float]]:
    """Per leave-one-out probe with its own identity left in the gallery: (photo, distance to its
    own identity, distance to the nearest other identity), from the gate's ranked galleries."""
    # calibration.measure lists these probes in photo order: those whose person has another photo
    probes = [f.photo for f in faces.faces if sum(g.identity == f.identity for g in faces.faces) > 1]
    rows = []
    for photo, (identity, ranked) in zip(probes, measured.closed, strict=True):
        own = next(distance for distance, entry in ranked if entry.identity_id == identity)
        other = next((distance for distance, entry in ranked if entry.identity_id != identity), float("inf"))
        rows.append((photo, own, other))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES)
    parser.add_argument("--backend", default="dlib")
    parser.add_argument("--jitters", type=int, default=0, help="dlib num_jitters (0 = one pass, as the gate)")
    parser.add_argument("--home", type=Path, help="data home: its policy.toml and models (default: packaged)")
    parser.add_argument("--far", type=float, default=None, help="false-accept target (default: calibrate's)")
    parser.add_argument("--frr", type=float, default=None, help="false-reject target (default: calibrate's)")
    args = parser.parse_args()

    from likeness.consent import calibration
    from likeness.consent.policy import Policy
    from likeness.faces.backends import load_analyzer
    from likeness.home import Home

    home = Home(args.home) if args.home else None
    if args.jitters:
        if args.backend != "dlib":
            sys.exit("--jitters applies to the dlib backend only")
        from likeness.faces.dlib_backend import DlibAnalyzer

        analyzer = DlibAnalyzer(home, num_jitters=args.jitters)
    else:
        analyzer = load_analyzer(args.backend, home)
    policy = Policy.load(home)
    point = policy.operating_point(analyzer.embedding_space)
    if point is None:
        sys.exit(f"the policy ({policy.source}) has no [match] rule for {analyzer.embedding_space}")

    start = time.perf_counter()
    faces = calibration.embed_folder(args.faces, analyzer)
    elapsed = time.perf_counter() - start
    targets = {
        "target_far": calibration.DEFAULT_TARGET_FAR if args.far is None else args.far,
        "target_frr": calibration.DEFAULT_TARGET_FRR if args.frr is None else args.frr,
    }
    result = calibration.calibrate(faces, point, **targets)
    print(
        f"backend {args.backend}, jitters {args.jitters}: {len(faces.faces)} photos embedded in "
        f"{elapsed:.1f} s ({elapsed / max(len(faces.faces), 1) * 1000:.0f} ms per photo)\n"
    )
    print(result.describe())

    if not (result.genuine.count and result.impostor.count):
        return
    margin = result.impostor.minimum - result.genuine.maximum
    print(f"\nbest margin (min impostor - max genuine distance): {margin:+.3f}")
    if margin >= 0:
        print(
            f"  a clean split exists: any threshold in [{result.genuine.maximum:.3f}, "
            f"{result.impostor.minimum:.3f}) accepts every genuine pair and no impostor pair (accept: ≤)"
        )

    rows = runner_up_gaps(faces, calibration.measure(faces, point))
    gaps = [other - own for _, own, other in rows]
    print(
        f"\nper probe (n={len(rows)}, leave one out): nearest other identity minus own identity: "
        f"min {min(gaps):+.3f}, median {statistics.median(gaps):+.3f}; probes where another identity is "
        f"nearer: {sum(g <= 0 for g in gaps)}; closer than the margin {result.margin:.2f}: "
        f"{sum(g < result.margin for g in gaps)}"
    )
    for photo, own, other in sorted(rows, key=lambda r: r[2] - r[1])[:5]:
        print(f"  {photo:34s} own {own:.3f}  other {other:.3f}  gap {other - own:+.3f}")


if __name__ == "__main__":
    main()
