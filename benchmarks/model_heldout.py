"""The default model on held-out simulated fields (never used in training).

Rebuilds the test set recorded in the default model's config (same seed, fields numbered
from ``test_field_offset``; its version hash is checked against the recorded one) plus an
extra set of fields from another offset, and reports ROC-AUC, PR-AUC, FPR at FNR 1% / 2%,
and the score distribution per kind. Run by hand; results go to docs/model.md.
"""

from __future__ import annotations

import argparse

import numpy as np

from astrid.model.evaluate import classification_metrics
from astrid.model.score import load_scorer
from astrid.model.simulated import SimulationSpec, build_simulated_dataset


def report(name: str, data, scores: np.ndarray) -> None:
    m = classification_metrics(data.labels, scores)
    print(f"\n{name}: {m.n} candidates ({m.n_real} real) from {len(set(data.groups))} fields")
    print(
        f"  ROC-AUC {m.roc_auc:.4f}  PR-AUC {m.pr_auc:.4f}  "
        f"FPR@FNR1% {m.fpr_at_fnr_1pct:.4f}  FPR@FNR2% {m.fpr_at_fnr_2pct:.4f}"
    )
    print(
        f"  at 0.5: precision {m.precision:.4f} recall {m.recall:.4f} F1 {m.f1:.4f} "
        f"confusion [[tn fp] [fn tp]] = {m.confusion}"
    )
    kinds = np.asarray(data.kinds)
    for k in sorted(set(kinds)):
        s = scores[kinds == k]
        q = np.percentile(s, [5, 50, 95])
        print(f"  {k:14s} n={len(s):5d}  score p5 {q[0]:.3f}  median {q[1]:.3f}  p95 {q[2]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--extra-pairs", type=int, default=60)
    parser.add_argument("--model", default="default", help="model package folder")
    args = parser.parse_args()
    scorer = load_scorer(args.model)
    cfg = scorer.loaded.config["train_config"]
    spec = SimulationSpec(
        n_pairs=cfg["n_test_pairs"],
        shape=(cfg["image_size"], cfg["image_size"]),
        stamp_size=cfg["stamp_size"],
        third_channel=cfg["third_channel"],
    )
    test = build_simulated_dataset(spec, seed=cfg["seed"], field_offset=cfg["test_field_offset"])
    recorded = scorer.loaded.config["test_dataset_version"]
    print(f"model {scorer.model_version}; test set {test.version[:12]} (recorded {recorded[:12]})")
    report("recorded held-out test set", test, scorer.score(test.stamps))
    spec2 = SimulationSpec(**{**spec.__dict__, "n_pairs": args.extra_pairs})
    extra = build_simulated_dataset(spec2, seed=cfg["seed"] + 1, field_offset=700000)
    report("second held-out set (other seed, other fields)", extra, scorer.score(extra.stamps))


if __name__ == "__main__":
    main()
