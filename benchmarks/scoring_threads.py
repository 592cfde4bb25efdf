"""CPU of scoring one observation's stamps on torch's default threads against one thread.

The detect stage scores each observation's candidates (a few to a few hundred stamps) in a
process that runs one observation per core, inside
:func:`astrid.model.score.intra_op_threads` (1). This measures what that saves: process CPU
seconds (all threads) and wall seconds per ``Scorer.score`` call of ``--n`` noise stamps,
alternating the default thread count and one thread, and the largest difference of the
scores and logits between the two (float32 rounding: another order of the sums).

Run by hand (results go to docs/benchmarks.md)::

    python benchmarks/scoring_threads.py --n 7 200 --repeats 20
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from astrid.model.score import intra_op_threads, load_scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[7, 200], help="stamps per call")
    parser.add_argument("--repeats", type=int, default=20, help="calls per measurement")
    parser.add_argument("--model", default="default", help="model package folder")
    args = parser.parse_args()
    scorer = load_scorer(args.model)
    default = torch.get_num_threads()
    print(f"torch {torch.__version__}, default threads {default}, load {os.getloadavg()}")
    rng = np.random.default_rng(0)
    for n in args.n:
        stamps = rng.normal(0.0, 1.0, (n, scorer.channels, scorer.size, scorer.size))
        stamps = stamps.astype(np.float32)
        results = {}
        for label, threads in (("default", default), ("one", 1)) * 2:  # alternated
            with intra_op_threads(threads):
                scores, logits = scorer.score(stamps), scorer.logits(stamps)  # warm
                c0, w0 = time.process_time(), time.perf_counter()
                for _ in range(args.repeats):
                    scorer.score(stamps)
                cpu = (time.process_time() - c0) / args.repeats
                wall = (time.perf_counter() - w0) / args.repeats
            results[label] = (scores, logits)
            print(f"{n:5d} stamps  {label:7s} threads ({threads})  "
                  f"CPU {cpu * 1e3:8.1f} ms  wall {wall * 1e3:8.1f} ms per call")  # fmt: skip
        d_score = float(np.max(np.abs(results["default"][0] - results["one"][0])))
        d_logit = float(np.max(np.abs(results["default"][1] - results["one"][1])))
        print(f"{n:5d} stamps  max |score difference| {d_score:.2e}, |logit| {d_logit:.2e}")


if __name__ == "__main__":
    main()
