"""Inference throughput and latency of the shipped default model on ONE CPU core.

Run by hand: ``python benchmarks/model_throughput.py``; results go to docs/model.md.
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
import torch

from astrid.model.evaluate import time_scoring
from astrid.model.score import load_scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=4096, help="triplets per pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="default", help="model package folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    stamps = np.random.default_rng(0).normal(size=(args.n, 3, 64, 64)).astype(np.float32)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {platform.processor()}")
    print(f"load average before: {os.getloadavg()}")
    for batch in (64, 256, 1024):
        scorer = load_scorer(args.model, batch_size=batch)
        speed = time_scoring(scorer.score, stamps, batch_size=batch, repeats=args.repeats)
        print(
            f"batch {batch:5d}: {speed.throughput_per_s:8.0f} triplets/s  "
            f"latency p50 {1000 * speed.latency_p50_s:7.1f} ms  "
            f"p95 {1000 * speed.latency_p95_s:7.1f} ms"
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
