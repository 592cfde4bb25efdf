"""The model on real ZTF alerts of held-out nights, with ZTF's ``rb`` as the baseline,
and on held-out simulated fields.

    python benchmarks/model_real_heldout.py [--model default|DIR ...] [--sim-pairs 20] [--by-kind]

Real: every alert of the nights listed in the model's ``transfer.holdout_nights`` (all
nights of ``ztf_alerts_train`` except the training night), none used for fitting, epoch
choice or calibration. Figures: ROC-AUC against ``drb >= 0.5`` (ZTF's deep model, itself a
model, not truth), recall at score >= 0.5 on known asteroids (real by physics), fraction
of ``drb < 0.1`` alerts scoring >= 0.5; the same for ``rb`` on the same alerts.
Simulated: fields numbered from 300000 (never simulated for training or the recorded test
set): ROC-AUC and FPR at FNR 2 %; with ``--by-kind``, which simulated kinds make that FPR
(the reals below the FNR-2 % threshold and the bogus at or above it, per kind).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from astrid.model.evaluate import classification_metrics
from astrid.model.real_alerts import alert_label, alert_night
from astrid.model.score import DEFAULT_MODEL_DIR, load_scorer, score_alerts
from astrid.model.simulated import SimulationSpec, build_simulated_dataset
from astrid.model.ztf import iter_ztf_alerts

ROOT = Path(__file__).resolve().parents[1]


def real_figures(name: str, score: np.ndarray, drb: np.ndarray, ast: np.ndarray) -> str:
    has = np.isfinite(drb) & np.isfinite(score)
    auc = roc_auc_score(drb[has] >= 0.5, score[has])
    rec = np.mean(score[ast] >= 0.5) if ast.any() else float("nan")
    low = has & (drb < 0.1)
    fp = np.mean(score[low] >= 0.5) if low.any() else float("nan")
    return (
        f"| {name:<28} | {auc:6.3f} | {rec:6.3f} ({int(ast.sum())}) "
        f"| {fp:6.3f} ({int(low.sum())}) |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=Path, default=ROOT.parent / "shared/data/ztf_alerts_train")
    ap.add_argument("--model", nargs="+", default=["default"])
    ap.add_argument("--holdout-from", default=str(DEFAULT_MODEL_DIR / "config.json"))
    ap.add_argument("--sim-pairs", type=int, default=20)
    ap.add_argument("--by-kind", action="store_true", help="kinds below/above the FNR 2 % cut")
    args = ap.parse_args()
    torch.set_num_threads(1)
    held = json.loads(Path(args.holdout_from).read_text())["transfer"]["holdout_nights"]
    scorers = {m: load_scorer(m) for m in args.model}
    if held:
        real_part(args.alerts, held, scorers)
    else:
        # A model trained on every night (1.2.0) has no night to test on: its real-data
        # figures are the leave-nights-out cross-validation, benchmarks/model_cv_nights.py.
        print("no held-out night in --holdout-from: real part skipped (see model_cv_nights.py)")
    if args.sim_pairs:
        sim_part(args.sim_pairs, scorers, args.by_kind)


def real_part(path: Path, held: list[str], scorers: dict[str, Any]) -> None:
    """Print the real-data table for the alerts of the ``held`` nights."""
    alerts = [a for a in iter_ztf_alerts([path]) if alert_night(a) in held]
    drb = np.array([np.nan if a.drb is None else a.drb for a in alerts])
    rb = np.array([np.nan if a.rb is None else a.rb for a in alerts])
    ast = np.array([(alert_label(a) or (0, ""))[1] == "known_asteroid" for a in alerts])
    print(
        f"held-out nights {held}: {len(alerts)} alerts, {int(np.isfinite(drb).sum())} with drb "
        f"({int((drb >= 0.5).sum())} drb >= 0.5), {int(ast.sum())} known asteroids"
    )
    print(
        "\n| score                        | AUC vs drb>=0.5 | recall asteroids (n) "
        "| drb<0.1 passing (n) |\n|---|---|---|---|"
    )
    results = {}
    for m, scorer in scorers.items():
        rows = score_alerts(scorer, alerts)
        s = np.array([np.nan if r["score"] is None else r["score"] for r in rows])
        results[m] = s
        print(real_figures(f"{scorer.model_version}", s, drb, ast))
    print(real_figures("ZTF rb (baseline)", rb, drb, ast))
    unscored = {m: int(np.isnan(s).sum()) for m, s in results.items()}
    print(f"\nalerts without a score: {unscored}")


def by_kind_line(labels: np.ndarray, kinds: np.ndarray, score: np.ndarray) -> str:
    """Kinds of the reals below and of the bogus at or above the FNR-2 % threshold (the
    score of the ``floor(0.02 n_real) + 1``-th lowest real)."""
    real = np.sort(score[labels == 1])
    thr = real[int(np.floor(0.02 * len(real)))]
    low = (labels == 1) & (score < thr)
    high = (labels == 0) & (score >= thr)

    def count(sel: np.ndarray) -> dict[str, int]:
        found, n = np.unique(kinds[sel], return_counts=True)
        return {str(k): int(c) for k, c in zip(found, n, strict=True)}

    return f"  threshold {thr:.3f}: reals below {count(low)}; bogus at/above {count(high)}"


def sim_part(n_pairs: int, scorers: dict[str, Any], by_kind: bool = False) -> None:
    """Print the simulated held-out table (fields from 300000, seed 31)."""
    sim = build_simulated_dataset(SimulationSpec(n_pairs=n_pairs), seed=31, field_offset=300000)
    print(
        f"\nsimulated held-out: {len(sim)} candidates ({int(sim.labels.sum())} real) "
        f"from {n_pairs} fields\n"
    )
    print("| model | ROC-AUC | FPR at FNR 2% | precision@0.5 | recall@0.5 |")
    print("|---|---|---|---|---|")
    lines = []
    for scorer in scorers.values():
        score = scorer.score(sim.stamps)
        c = classification_metrics(sim.labels, score)
        print(
            f"| {scorer.model_version} | {c.roc_auc:.4f} | {c.fpr_at_fnr_2pct:.4f} "
            f"| {c.precision:.3f} | {c.recall:.3f} |"
        )
        lines.append(
            f"{scorer.model_version}\n" + by_kind_line(sim.labels, np.asarray(sim.kinds), score)
        )
    if by_kind:
        print("\nat FNR 2 %:\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
