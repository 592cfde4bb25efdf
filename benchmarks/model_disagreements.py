"""The strongest disagreements of AstrID's model with ZTF's ``drb`` on held-out nights.

    python benchmarks/model_disagreements.py [--model default|DIR] [--top 5]

Scores every alert of the nights the model never trained on (the model's
``transfer.holdout_nights``: all nights of ``ztf_alerts_train`` except the training night),
then picks the ``--top`` alerts where AstrID is most confident and ``drb`` least
(``score - drb`` largest) and the ``--top`` the other way round (``drb - score`` largest),
at most one per exposure (ZTF ``pid``): one satellite streak cut into many alerts would
otherwise fill a side; how many alerts each shown one stands for is printed.
Prints them and writes their science, reference and difference stamps (raw, each on its own
robust scale, and the difference as the model sees it after normalisation) to
``docs/images/model_disagreements_heldout.png``.

``drb`` is ZTF's deep real/bogus model, not truth: a disagreement says where the two models
differ, not which one is wrong. Run by hand; the output goes to docs/model.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from astrid.model.real_alerts import alert_label, alert_night
from astrid.model.score import DEFAULT_MODEL_DIR, load_scorer, score_alerts
from astrid.model.ztf import ZtfAlert, alert_triplet, iter_ztf_alerts

ROOT = Path(__file__).resolve().parents[1]


def _robust(img: np.ndarray) -> tuple[float, float]:
    """Display limits: median - 2 sigma to median + 6 sigma (sigma = 1.4826 MAD)."""
    x = img[np.isfinite(img)]
    if x.size == 0:
        return 0.0, 1.0
    med = float(np.median(x))
    sig = float(1.4826 * np.median(np.abs(x - med))) or float(np.std(x)) or 1.0
    return med - 2 * sig, med + 6 * sig


def _raw(alert: ZtfAlert) -> list[np.ndarray]:
    stamps = (alert.science, alert.template, alert.difference)
    return [np.full((2, 2), np.nan) if s is None else np.asarray(s, np.float64) for s in stamps]


def _label(alert: ZtfAlert) -> str:
    found = alert_label(alert)
    return "" if found is None else found[1]


def gap_of(score: np.ndarray, drb: np.ndarray) -> np.ndarray:
    """``score - drb`` per alert (NaN where either is missing)."""
    return score - drb


def _exposure(alert: ZtfAlert) -> str:
    pid = alert.candidate.get("pid")
    return str(pid) if pid is not None else str(alert.candid)


def _one_per_exposure(
    alerts: list[ZtfAlert], order: np.ndarray, gap: np.ndarray, top: int
) -> tuple[list[int], dict[int, int]]:
    """The first ``top`` of ``order`` with one alert per exposure, and for each the number
    of alerts of its exposure whose ``gap`` also exceeds 0.5 (a streak cut into pieces)."""
    chosen: list[int] = []
    seen: set[str] = set()
    for i in order:
        key = _exposure(alerts[i])
        if key in seen:
            continue
        seen.add(key)
        chosen.append(int(i))
        if len(chosen) == top:
            break
    alike = {
        i: sum(
            1
            for j, a in enumerate(alerts)
            if _exposure(a) == _exposure(alerts[i]) and np.isfinite(gap[j]) and gap[j] > 0.5
        )
        for i in chosen
    }
    return chosen, alike


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=Path, default=ROOT.parent / "shared/data/ztf_alerts_train")
    ap.add_argument("--model", default="default", help="'default' or a model package folder")
    ap.add_argument("--holdout-from", default=str(DEFAULT_MODEL_DIR / "config.json"))
    ap.add_argument("--top", type=int, default=5, help="disagreements shown each way")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "docs/images/model_disagreements_heldout.png"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    held = json.loads(Path(args.holdout_from).read_text())["transfer"]["holdout_nights"]
    alerts = [a for a in iter_ztf_alerts([args.alerts]) if alert_night(a) in held]
    scorer = load_scorer(args.model)
    rows = score_alerts(scorer, alerts)
    score = np.array([np.nan if r["score"] is None else r["score"] for r in rows])
    drb = np.array([np.nan if a.drb is None else a.drb for a in alerts])
    ok = np.flatnonzero(np.isfinite(score) & np.isfinite(drb))
    print(
        f"model {scorer.model_version}; held-out nights {held}: {len(alerts)} alerts, "
        f"{len(ok)} with a score and a drb"
    )
    gap = score[ok] - drb[ok]
    astrid_high, n_a = _one_per_exposure(alerts, ok[np.argsort(-gap)], gap_of(score, drb), args.top)
    drb_high, n_d = _one_per_exposure(alerts, ok[np.argsort(gap)], -gap_of(score, drb), args.top)
    n_same = {**n_a, **n_d}
    header = (
        f"{'objectId':14s} {'candid':>20s} {'astrid':>7s} {'drb':>6s} {'rb':>6s} sign "
        "alerts-of-exposure-past-0.5 label"
    )
    picked: list[tuple[str, int]] = []
    for title, idx in (
        ("AstrID real, drb bogus", astrid_high),
        ("drb real, AstrID bogus", drb_high),
    ):
        print(f"\n{title}:\n{header}")
        for i in idx:
            a = alerts[i]
            rb = float("nan") if a.rb is None else a.rb
            print(
                f"{a.object_id:14s} {a.candid:20d} {score[i]:7.3f} {drb[i]:6.3f} {rb:6.3f} "
                f"{'+' if a.isdiffpos else '-':>4s} {n_same[int(i)]:>27d} {_label(a)}"
            )
            picked.append((title, int(i)))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ("science", "reference", "difference", "difference (model input)")
    fig, axes = plt.subplots(len(picked), 4, figsize=(7.2, 1.9 * len(picked)))
    for row, (title, i) in zip(np.atleast_2d(axes), picked, strict=True):
        a = alerts[i]
        model_view = alert_triplet(a)[2]
        for ax, img, name in zip(row, [*_raw(a), model_view], cols, strict=True):
            lo, hi = _robust(img) if name != cols[3] else (-3.0, 8.0)
            ax.imshow(img, origin="lower", cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name, fontsize=6)
        row[0].set_ylabel(
            f"{'A>d' if title.startswith('AstrID') else 'd>A'} {a.object_id}\n"
            f"AstrID {score[i]:.2f} drb {drb[i]:.2f}",
            fontsize=6,
        )
    fig.suptitle(f"{scorer.model_version}: strongest disagreements with ZTF drb", fontsize=8)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.985))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"\nstamps (A>d: AstrID high, drb low; d>A: the reverse) -> {args.out}")


if __name__ == "__main__":
    main()
