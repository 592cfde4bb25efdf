"""Inference throughput and latency of the shipped default model on ONE CPU core.

Run by hand: ``python benchmarks/model_throughput.py``; results go to docs/model.md.
``--alerts DIR`` adds the cost of the streak test (:mod:`astrid.model.alert_streaks`) on real
alerts: alone, and ``score_alerts`` with and without it (CPU seconds, one thread).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from astrid.model.evaluate import time_scoring
from astrid.model.score import load_scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=4096, help="triplets per pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="default", help="model package folder")
    parser.add_argument("--alerts", type=Path, help="ZTF alert folder: time the streak test")
    args = parser.parse_args()
    torch.set_num_threads(1)
    stamps = np.random.default_rng(0).normal(size=(args.n, 3, 64, 64)).astype(np.float32)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {platform.processor()}")
    print(f"load average before: {os.getloadavg()}")
    for batch in (64, 256, 1024):
        scorer = load_scorer(args.model, batch_size=batch)
        cpu0 = time.process_time()
        speed = time_scoring(scorer.score, stamps, batch_size=batch, repeats=args.repeats)
        # on a shared machine the CPU time is the figure that does not depend on the others'
        # load (one thread: triplets per CPU-second = per core); the warm-up batch included
        per_cpu_s = (args.n * args.repeats + batch) / (time.process_time() - cpu0)
        print(
            f"batch {batch:5d}: {speed.throughput_per_s:8.0f} triplets/s  "
            f"latency p50 {1000 * speed.latency_p50_s:7.1f} ms  "
            f"p95 {1000 * speed.latency_p95_s:7.1f} ms  "
            f"{per_cpu_s:6.0f} triplets per CPU-second"
        )
    if args.alerts is not None:
        streak_cost(args.alerts, args.model, args.repeats)
    print(f"load average after: {os.getloadavg()}")


def streak_cost(folder: Path, model: str, repeats: int) -> None:
    """CPU time of the streak test alone and of ``score_alerts`` with and without it."""
    from astrid.model.alert_streaks import alert_streaks
    from astrid.model.score import score_alerts
    from astrid.model.ztf import iter_ztf_alerts, prepare_alert

    alerts = list(iter_ztf_alerts([folder]))
    triplets = [prepare_alert(a)[0] for a in alerts]
    scorer = load_scorer(model)
    n = len(alerts)
    t0 = time.process_time()
    for _ in range(repeats):
        alert_streaks(alerts, triplets)
    alone = (time.process_time() - t0) / repeats
    print(f"streak test alone: {1e6 * alone / n:7.1f} us CPU per alert ({n} alerts)")
    for streaks in (False, True):
        t0 = time.process_time()
        for _ in range(repeats):
            score_alerts(scorer, alerts, streaks=streaks)
        cpu = (time.process_time() - t0) / repeats
        print(
            f"score_alerts streaks={streaks!s:<5}: {n / cpu:7.0f} alerts/s "
            f"(CPU {cpu:.2f} s; stamps prepared and scored, no uncertainty)"
        )


if __name__ == "__main__":
    main()
