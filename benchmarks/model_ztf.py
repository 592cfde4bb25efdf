"""AstrID's default model on the 50 real ZTF alerts, compared with ZTF's own drb.

drb is ZTF's deep real-bogus model, NOT truth: this reports agreement, it is not tuned to
it. Prints the AUC of AstrID's score against the label ``drb >= 0.5``, Spearman's rank
correlation with drb, and the alerts where the two disagree most; writes their cutouts to
``docs/images/model_ztf_disagreements.png``. Run by hand; results go to docs/model.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from astrid.model.score import load_scorer, score_alerts
from astrid.model.ztf import alert_triplet, iter_ztf_alerts

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=Path, default=REPO.parent / "shared/data/ztf_alerts")
    parser.add_argument(
        "--out", type=Path, default=REPO / "docs/images/model_ztf_disagreements.png"
    )
    parser.add_argument("--top", type=int, default=6)
    parser.add_argument("--model", default="default", help="model package folder")
    args = parser.parse_args()
    scorer = load_scorer(args.model)
    alerts = list(iter_ztf_alerts([args.alerts]))
    rows = score_alerts(scorer, alerts)
    score = np.array([r["score"] for r in rows])
    drb = np.array([a.drb for a in alerts], dtype=float)
    label = drb >= 0.5
    rho, p = spearmanr(score, drb)
    print(f"model {scorer.model_version}; {len(alerts)} alerts, {label.sum()} with drb >= 0.5")
    print(f"AUC of AstrID score vs (drb >= 0.5): {roc_auc_score(label, score):.3f}")
    print(f"Spearman rank correlation with drb: {rho:.3f} (p = {p:.2g})")
    agree = np.mean((score >= 0.5) == label)
    print(f"agreement at 0.5/0.5: {agree:.2f}")
    gap = score - drb
    order = np.argsort(-np.abs(gap))[: args.top]
    print("\nlargest disagreements:")
    print(f"{'objectId':14s} {'candid':>20s} {'astrid':>7s} {'drb':>6s} {'isdiffpos':>9s}")
    for i in order:
        a = alerts[i]
        print(
            f"{a.object_id:14s} {a.candid:20d} {score[i]:7.3f} {drb[i]:6.3f} "
            f"{'t' if a.isdiffpos else 'f':>9s}"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(order), 3, figsize=(6, 2.1 * len(order)))
    for row, i in zip(np.atleast_2d(axes), order, strict=True):
        trip = alert_triplet(alerts[i])
        for ax, img, name in zip(row, trip, ("science", "template", "difference"), strict=True):
            ax.imshow(img, origin="lower", cmap="gray", vmin=-3, vmax=8)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name, fontsize=7)
        row[0].set_ylabel(
            f"{alerts[i].object_id}\nAstrID {score[i]:.2f}\ndrb {drb[i]:.2f}", fontsize=7
        )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=60)
    print(f"\ncutouts (normalised as the model sees them) -> {args.out}")


if __name__ == "__main__":
    main()
