"""Does the per-candidate uncertainty point at the model's mistakes?

    python benchmarks/model_uncertainty.py --cv /tmp/astrid-cv [--grouping bogus]
        [--model default] [--sim-pairs 20]

The uncertainty is :meth:`astrid.model.score.Scorer.score_with_uncertainty`: the spread of
the calibrated score over the 8 rotations/flips of the stamp. It is useful to a scanning
queue only if candidates with a larger spread are more often wrong. Two checks, on data the
scoring model never saw:

* real alerts: each night is scored by the leave-nights-out CV fold model that did not see
  it (``--cv``: the folder of ``model_cv_nights.py --out``, same ``--grouping``), streak test
  on; a "mistake" is a disagreement with ZTF's drb at 0.5 (drb is a model, not truth);
* simulated fields from 300000 (seed 31; never simulated for training), scored by
  ``--model``; a mistake is a wrong side of 0.5 against the simulator's truth.

Printed: the ROC-AUC of the uncertainty as a detector of mistakes (0.5 = no information) and
the mistake rate per third of the candidates sorted by uncertainty.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from astrid.model.real_alerts import alert_night
from astrid.model.score import load_scorer, score_alerts
from astrid.model.simulated import SimulationSpec, build_simulated_dataset
from astrid.model.ztf import iter_ztf_alerts

ROOT = Path(__file__).resolve().parents[1]


def report(name: str, spread: np.ndarray, mistake: np.ndarray) -> None:
    """The AUC of ``spread`` for ``mistake`` and the mistake rate per uncertainty third."""
    auc = roc_auc_score(mistake, spread) if 0 < mistake.sum() < mistake.size else float("nan")
    order = np.argsort(spread, kind="stable")
    thirds = " ".join(
        f"{100 * mistake[part].mean():5.1f}%" for part in np.array_split(order, 3) if part.size
    )
    print(
        f"{name:<34} n {mistake.size:4d}, mistakes {int(mistake.sum()):3d} | "
        f"AUC of uncertainty for a mistake {auc:5.3f} | mistake rate by uncertainty "
        f"third (low to high) {thirds}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=Path, default=ROOT.parent / "shared/data/ztf_alerts_train")
    ap.add_argument("--cv", type=Path, help="model_cv_nights.py --out folder (fold models)")
    ap.add_argument("--grouping", default="bogus")
    ap.add_argument("--model", default="default")
    ap.add_argument("--sim-pairs", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.cv is not None:
        spec = importlib.util.spec_from_file_location("cv", ROOT / "benchmarks/model_cv_nights.py")
        assert spec is not None and spec.loader is not None
        cv = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(cv)
        alerts = list(iter_ztf_alerts([args.alerts]))
        spreads, wrong = [], []
        for k, fold in enumerate(cv.GROUPINGS[args.grouping]):
            part = [a for a in alerts if alert_night(a) in fold and a.drb is not None]
            rows = score_alerts(load_scorer(args.cv / f"fold{k}"), part, uncertainty=True)
            for a, r in zip(part, rows, strict=True):
                if r["score"] is not None:
                    spreads.append(r["uncertainty"])
                    wrong.append((r["score"] >= 0.5) != (a.drb >= 0.5))
        report("real alerts, CV fold models vs drb", np.array(spreads), np.array(wrong))
    if args.sim_pairs:
        sim = build_simulated_dataset(
            SimulationSpec(n_pairs=args.sim_pairs), seed=31, field_offset=300000
        )
        scorer = load_scorer(args.model)
        score, spread = scorer.score_with_uncertainty(sim.stamps)
        report(f"simulated, {scorer.model_version}", spread, (score >= 0.5) != (sim.labels == 1))


if __name__ == "__main__":
    main()
