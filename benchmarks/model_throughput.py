"""Inference throughput and latency of the shipped default model on ONE CPU core.

Run by hand: ``python benchmarks/model_throughput.py``; results go to docs/model.md.
``--sim-pairs 60`` scores simulated candidates instead of noise stamps (the symmetry band's
cost depends on how many candidates are undecided); ``--no-symmetry`` scores one view.
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
    parser.add_argument(
        "--sim-pairs",
        type=int,
        default=0,
        help="score the candidates of N simulated held-out fields (repeated to --n) instead of "
        "noise stamps: the symmetry band's cost depends on how many are undecided",
    )
    parser.add_argument(
        "--symmetry-band",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="the scorer's band (default: the scorer's default)",
    )
    parser.add_argument("--no-symmetry", action="store_true", help="one view for every stamp")
    args = parser.parse_args()
    torch.set_num_threads(1)
    band = {} if args.symmetry_band is None else {"symmetry_band": tuple(args.symmetry_band)}
    if args.no_symmetry:
        band = {"symmetry_band": None}
    if args.sim_pairs:
        from astrid.model.simulated import SimulationSpec, build_simulated_dataset

        sim = build_simulated_dataset(
            SimulationSpec(n_pairs=args.sim_pairs), seed=31, field_offset=300000
        ).stamps
        stamps = sim[np.arange(args.n) % len(sim)]
    else:
        stamps = np.random.default_rng(0).normal(size=(args.n, 3, 64, 64)).astype(np.float32)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {platform.processor()}")
    print(f"load average before: {os.getloadavg()}")
    for batch in (64, 256, 1024):
        scorer = load_scorer(args.model, batch_size=batch, **band)  # type: ignore[arg-type]
        if batch == 64:
            single = scorer.loaded.calibrator(scorer.logits(stamps))
            band_now = scorer.symmetry_band
            undecided = (
                0.0
                if band_now is None
                else float(np.mean((single >= band_now[0]) & (single <= band_now[1])))
            )
            print(f"symmetry band {band_now}: {undecided:.1%} of the stamps scored 8 times")
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
