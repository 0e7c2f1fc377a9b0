"""The consent gate's decision time against 1,000 / 10,000 / 100,000 enrolled identities.

Usage: python bench/gate.py [--sizes 1000,10000,100000] [--decisions 50] [--workdir DIR]

Each size gets a fresh data home (SQLite). Identities are enrolled in bulk, but through the
registry's own insert and ledger code (``Registry._insert_identity``: encrypted references, one
signed ``enrol`` entry per identity with its rows' content hashes), without the per-enrolment
duplicate search (which compares each new face with the whole gallery). Embeddings are random
128-d unit vectors (space ``dlib_resnet_v1``, so the policy's threshold applies); one identity has
a consent, and the probe is its reference plus a little noise, so every decision is a match that
reads the consent and re-checks the matched and runner-up identities' rows.

It prints, per size: enrolment time, the first decision in a new Registry (walks and checks the
whole ledger, decrypts and checks the gallery), and the median / p95 of the following decisions
(check_consent end to end: newest entry and head file, operating point, nearest identities,
re-read rows, consents).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from likeness.consent.gate import check_consent  # noqa: E402
from likeness.consent.policy import add_years  # noqa: E402
from likeness.consent.records import Involvement, Reference  # noqa: E402
from likeness.consent.registry import Registry  # noqa: E402
from likeness.consent.store import now_utc  # noqa: E402
from likeness.faces.types import Face  # noqa: E402
from likeness.home import Home  # noqa: E402

SPACE = "dlib_resnet_v1"
BATCH = 2000


class StandInAnalyzer:
    """Only what the gate reads from an analyzer."""

    embedding_space = SPACE

    def describe(self) -> dict[str, str]:
        return {"backend": "bench", "recognition": "random unit vectors"}


def unit_vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, 128)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def enrol_bulk(registry: Registry, vectors: np.ndarray) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(vectors), BATCH):
        with registry._write() as conn:
            for n in range(start, min(start + BATCH, len(vectors))):
                reference = Reference(embedding=vectors[n], embedding_space=SPACE, photo_sha256=f"{n:064x}")
                ids.append(registry._insert_identity(conn, f"Person {n}", [reference], "bench").id)
    return ids


def face_of(vector: np.ndarray) -> Face:
    empty = np.zeros((0, 2), dtype=np.float32)
    return Face((0, 0, 100, 100), empty, empty, vector.astype(np.float32), 1.0, SPACE)


def enrol(home: Home, vectors: np.ndarray, chosen: int) -> tuple[list[str], float]:
    """Enrol every vector (timed) and grant the ``chosen`` one a research consent."""
    with Registry.open(home) as registry:
        started = time.perf_counter()
        ids = enrol_bulk(registry, vectors)
        enrol_s = time.perf_counter() - started
        registry.grant(
            ids[chosen],
            purposes=["research"],
            roles=["source"],
            valid_until=add_years(now_utc().date(), 1),
            uses="benchmark of the consent gate's decision time on synthetic identities",
            operator="bench",
        )
    return ids, enrol_s


def measure(size: int, decisions: int, workdir: Path) -> dict[str, float]:
    rng = np.random.default_rng(size)
    home = Home(workdir / f"home-{size}")
    vectors = unit_vectors(rng, size)
    chosen = size // 2
    saved = home.root / "bench-ids.json"
    if saved.is_file():  # a --workdir kept from an earlier run: reuse its registry
        ids, enrol_s = json.loads(saved.read_text()), float("nan")
    else:
        ids, enrol_s = enrol(home.ensure(), vectors, chosen)
        saved.write_text(json.dumps(ids))
    probe = vectors[chosen] + 0.01 * unit_vectors(rng, 1)[0]
    involved = [Involvement(face=face_of(probe), role="source", label="probe")]
    analyzer = StandInAnalyzer()
    times: list[float] = []
    with Registry.open(home) as registry:
        for _ in range(decisions + 1):
            started = time.perf_counter()
            decision = check_consent(
                registry,
                involved,
                purpose="research",
                media_kind="image",
                analyzer=analyzer,
                operator="bench",
            )
            times.append(time.perf_counter() - started)
            assert decision.matches[0].identity_id == ids[chosen]
    warm = sorted(times[1:])
    return {
        "identities": size,
        "enrol_s": enrol_s,
        "first_ms": times[0] * 1000,
        "median_ms": statistics.median(warm) * 1000,
        "p95_ms": warm[int(0.95 * (len(warm) - 1))] * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--decisions", type=int, default=50)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="likeness-bench-gate-") as tmp:
        workdir = args.workdir or Path(tmp)
        print(f"{'identities':>10} {'enrol (s)':>10} {'first (ms)':>11} {'median (ms)':>12} {'p95 (ms)':>9}")
        for size in sizes:
            row = measure(size, args.decisions, workdir)
            print(
                f"{row['identities']:>10} {row['enrol_s']:>10.1f} {row['first_ms']:>11.1f} "
                f"{row['median_ms']:>12.2f} {row['p95_ms']:>9.2f}",
                flush=True,
            )
    print(
        f"({dt.datetime.now(dt.UTC):%Y-%m-%d}, SQLite, {args.decisions} decisions per size after the first)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
