"""Per-stage time of one gated, disclosed generation, and disclosure's share of it.

    python bench/generate.py [--model FOLDER] [--size 256] [--steps 4] [--repeat 3]

Without ``--model`` it builds the tests' tiny random-weight SD pipeline (tests/tiny_diffusers.py) in a
temporary folder: the numbers then measure likeness's own overhead around a model that costs almost
nothing, which is the point of the disclosure share on a CPU. Give a real local model folder for real
numbers. Stages come from the job's own StageTimer (``likeness.jobs.generation.run_generation``):

    load          face engine + model (folder hash and offline load; first run only: later runs reuse it)
    prompt        the pipeline's encode_prompt
    denoise       the denoising loop (everything in the pipeline call but prompt encoding and decoding)
    decode        vae.decode
    output gate   detect + embed + match every face in the output
    disclosure    label + watermark + encode + self-check + sign (C2PA) + record (ledger)

Prints the median of ``--repeat`` runs as a table. No network: HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from likeness.faces.backends import load_analyzer
from likeness.generate.pipeline import load_generator
from likeness.home import Home
from likeness.jobs.generation import run_generation
from likeness.jobs.requests import GenerateRequest

DISCLOSURE = ("label", "watermark", "encode", "mux", "self-check", "sign", "record")
ROWS = (
    ("prompt encoding", ("prompt encoding",)),
    ("denoising", ("denoising",)),
    ("decoding", ("decoding",)),
    ("output gate", ("output gate",)),
    ("disclosure", DISCLOSURE),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a local diffusers folder (default: tiny)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", default="dlib")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        home = Home(root / "home").ensure()
        model = args.model
        if model is None:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from tiny_diffusers import build_sd_pipeline

            model = build_sd_pipeline(root / "tiny-sd", licence="creativeml-openrail-m")
        start = time.perf_counter()
        analyzer = load_analyzer(args.backend, home)
        generator = load_generator(home, str(model))
        load = time.perf_counter() - start
        runs: list[dict[str, float]] = []
        totals: list[float] = []
        for n in range(args.repeat):
            request = GenerateRequest(
                model=str(model),
                prompt="a lighthouse on a cliff at dusk",
                purpose="research",
                out=root / f"out{n}.jpg",
                steps=args.steps,
                seed=n,
                size=(args.size, args.size),
                backend=args.backend,
                operator="bench",
            )
            start = time.perf_counter()
            outcome = run_generation(request, home=home, analyzer=analyzer, generator=generator)
            totals.append(time.perf_counter() - start)
            runs.append(outcome.timings)

    def median(keys: tuple[str, ...]) -> float:
        return statistics.median(sum(run.get(key, 0.0) for key in keys) for run in runs)

    total = statistics.median(totals)
    print(f"model: {model if args.model else 'tiny random-weight SD (tests/tiny_diffusers.py)'}")
    print(
        f"{args.size}x{args.size}, {args.steps} steps, backend {args.backend}, median of {args.repeat} runs"
    )
    print(f"{'stage':<18}{'seconds':>10}{'share':>9}")
    print(f"{'load (once)':<18}{load:>10.3f}{'':>9}")
    for name, keys in ROWS:
        seconds = median(keys)
        print(f"{name:<18}{seconds:>10.3f}{seconds / total:>9.1%}")
    named = [key for _, keys in ROWS for key in keys]
    other = statistics.median(
        t - sum(run.get(k, 0.0) for k in named) for t, run in zip(totals, runs, strict=True)
    )
    print(f"{'other (gate, io)':<18}{other:>10.3f}{other / total:>9.1%}")
    print(f"{'total per image':<18}{total:>10.3f}{1:>9.0%}")
    print("disclosure parts: " + ", ".join(f"{key} {median((key,)):.3f}s" for key in DISCLOSURE))


if __name__ == "__main__":
    main()
