"""Leave-nights-out cross-validation of the transfer recipe on the real ZTF alerts.

    python benchmarks/model_cv_nights.py [--alerts ../shared/data/ztf_alerts_train]
        [--sim-pairs 80] [--epochs 3] [--init src/astrid/model/default] [--out /tmp/astrid-cv]
        [--grouping bogus | legacy] [--keep-streaks] [--sim-cache DIR]
        [--select-by auc | fpr2] [--average-last K] [--seed 2026] [--symmetry-band LOW]

Each fold trains one model on simulations + the real alerts of every night except the
fold's nights (alerts of objects also seen on those nights dropped; epoch choice and
calibration on a validation split of the training nights and simulated fields) and scores
the fold's nights only. The figures of the pooled held-out scores are the recipe's
real-data figures: every alert is scored by a model that never saw its night. The committed
model is then trained on all nights with the same recipe (``model_retrain_default.py
--train-nights all``), so no night is left to test it on; these CV figures stand for it.

``--init`` is the warm start; it must not have seen any fold night (1.1.0 saw only JD
2460235, which is in every fold's training part, never in a fold).

Every score is printed twice: as the model gives it, and with the streak test
(``+streaks``: alerts of one difference image on one line, or with a trail across their
difference stamp, scored x0.1; :mod:`astrid.model.alert_streaks`, a-priori parameters).
The test does not depend on the model, so it is applied to ZTF's ``rb`` as well.

**Folds** (``--grouping``). ``bogus`` (the default since 1.3.0) was fixed from the label
counts alone, before any model was scored on it: a fold's AUC needs drb-bogus alerts, and
only two of the nine nights have more than three (JD 2458849: 39, JD 2459369: 11; then
2459540: 3, 2460236: 2, 2458729: 1, the rest 0). So there are two folds, one per bogus-rich
night, each holding >= 10 drb < 0.5 alerts; the other nights are added so that the folds
hold about as many alerts (113 and 140). ``legacy`` is the three folds of the 1.2.0 run
(fold 0 = JD 2459540 alone: 3 drb-bogus alerts, so its AUC rests on three alerts).

**Summary.** Besides each fold and the pooled scores, every model gets the mean and spread
(half the range over folds; the standard deviation with three or more) of the *per-fold*
AUC: pooling ranks the scores of different fold models against each other, which the
per-fold figures do not. The headline, chosen before the runs, is the per-fold mean with
the streak test (it is part of scoring: ``score_alerts(streaks=True)``).

``--keep-streaks`` builds the real set as 1.2.0's was (every alert keeps its drb label);
without it the members of a dotted trail are dropped from training
(:func:`astrid.model.real_alerts.build_alert_dataset`). ``--sim-cache`` saves the simulated
set on first use and loads it afterwards, so two recipes compared in parallel share it.

``--select-by``, ``--average-last`` and ``--seed`` are those of
``model_retrain_default.py`` (epoch choice on the validation part: best ROC-AUC, the
default, or lowest FPR at FNR 2 %; or the average of the last K epochs' weights; the seed
of each fold's training and train/validation split, default 2026; the simulated fields stay
those of seed 2026).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _recipe import add_recipe_options

from astrid.model.alert_streaks import STREAK_DEMOTION, alert_streaks
from astrid.model.dataset_files import load_dataset, save_dataset
from astrid.model.epoch_selection import EpochSelectionError, check_selection
from astrid.model.examples import LabelledStamps
from astrid.model.real_alerts import alert_label, alert_night, build_alert_dataset
from astrid.model.registry import load_package, save_package
from astrid.model.score import load_scorer, score_alerts
from astrid.model.simulated import SimulationSpec, build_simulated_dataset
from astrid.model.train import TrainConfig
from astrid.model.transfer import (
    balance_real,
    parse_kind_weights,
    split_for_transfer,
    train_transfer,
    weight_kinds,
)
from astrid.model.ztf import iter_ztf_alerts, prepare_alert

ROOT = Path(__file__).resolve().parents[1]
# Groups of the nine nights other than the big one (JD 2460235, 1 058 alerts, always
# trained on); see the module docstring for how "bogus" was chosen.
GROUPINGS = {
    "bogus": [
        ["2458849", "2458451", "2458729", "2458802", "2459382", "2460236", "2460967"],
        ["2459369", "2459540"],
    ],
    "legacy": [
        ["2459540"],
        ["2458849", "2459382", "2460967"],
        ["2458451", "2458729", "2458802", "2459369", "2460236"],
    ],
}


def auc_of(score: np.ndarray, drb: np.ndarray) -> float:
    """ROC-AUC of ``score`` against drb >= 0.5 (alerts with both; NaN with one class)."""
    from sklearn.metrics import roc_auc_score

    has = np.isfinite(drb) & np.isfinite(score)
    lab = drb[has] >= 0.5
    return float(roc_auc_score(lab, score[has])) if 0 < lab.sum() < lab.size else float("nan")


def spread_line(aucs: list[float]) -> str:
    """Mean and spread of per-fold AUCs (half range for two folds, else the std)."""
    a = np.asarray([x for x in aucs if np.isfinite(x)])
    if a.size == 0:
        return "no fold with both classes"
    half = (a.max() - a.min()) / 2 if a.size < 3 else float(np.std(a, ddof=1))
    kind = "half range" if a.size < 3 else "std"
    folds = " ".join(f"{x:.3f}" for x in aucs)
    return f"per-fold AUC {folds} | mean {a.mean():.3f} +- {half:.3f} ({kind})"


def figures(score: np.ndarray, drb: np.ndarray, ast: np.ndarray) -> str:
    """AUC vs drb >= 0.5, recall on known asteroids, fractions of drb < 0.1 and of
    drb >= 0.5 alerts scoring >= 0.5."""
    has = np.isfinite(drb) & np.isfinite(score)
    lab = drb[has] >= 0.5
    auc = auc_of(score, drb)
    rec = np.mean(score[ast] >= 0.5) if ast.any() else float("nan")
    low = has & (drb < 0.1)
    fp = np.mean(score[low] >= 0.5) if low.any() else float("nan")
    tp = np.mean(score[has][lab] >= 0.5) if lab.any() else float("nan")
    return (
        f"{int(has.sum()):3d} with drb ({int(lab.sum()):3d} >= 0.5) | AUC {auc:5.3f} | "
        f"recall asteroids {rec:5.3f} ({int(ast.sum()):2d}) | drb<0.1 passing {fp:5.3f} "
        f"({int(low.sum()):2d}) | drb>=0.5 passing {tp:5.3f}"
    )


def train_fold(
    k: int, fold: list[str], data: tuple[LabelledStamps, LabelledStamps], args: Any
) -> Path:
    """Train fold ``k``'s model (every night but ``fold``) and save it under ``args.out``."""
    real, sim = data
    cfg = TrainConfig(
        seed=args.seed,
        n_pairs=args.sim_pairs,
        epochs=args.epochs,
        lr=args.lr,
        num_threads=args.threads,
        extra={
            "recipe": "astrid.model.transfer",
            "holdout_nights": fold,
            "select_by": args.select_by,
            "average_last": args.average_last,
        },
    )
    splits = split_for_transfer(sim, real, fold, seed=cfg.seed)
    fitted, cal = train_transfer(
        splits,
        cfg,
        init_state=load_package(args.init).net.state_dict(),
        on_epoch=lambda e, row: print(f"fold {k} epoch {e}: {row}", flush=True),
        select_by=args.select_by,
        average_last=args.average_last,
    )
    kept = f"average of the last {fitted.averaged_last}" if fitted.averaged_last else "best"
    print(
        f"fold {k} {fold}: {kept} epoch {fitted.best_epoch} ({args.select_by}), "
        f"{fitted.train_seconds:.0f} s",
        flush=True,
    )
    return save_package(
        fitted.net,
        cal,
        args.out / f"fold{k}",
        {
            "semver": f"0.0.{k}",
            "cv_fold": fold,
            "train_config": cfg.to_dict(),
            "best_epoch": fitted.best_epoch,
            "averaged_last": fitted.averaged_last,
        },
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=Path, default=ROOT.parent / "shared/data/ztf_alerts_train")
    ap.add_argument("--sim-pairs", type=int, default=80)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--night-cap", type=int, default=300)
    ap.add_argument("--bogus-factor", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--init", type=Path, default=ROOT / "src/astrid/model/default")
    ap.add_argument("--out", type=Path, default=Path("/tmp/astrid-cv"))
    ap.add_argument("--folds", type=int, nargs="*", help="run only these fold numbers")
    ap.add_argument("--reuse", action="store_true", help="score fold models already in --out")
    ap.add_argument("--compare", nargs="*", default=[], help="fixed models scored alongside")
    ap.add_argument("--grouping", choices=sorted(GROUPINGS), default="bogus")
    ap.add_argument("--keep-streaks", action="store_true", help="1.2.0's labels (no streak test)")
    ap.add_argument("--sim-cache", type=Path, help="save / load the simulated set here")
    add_recipe_options(ap)
    ap.add_argument(
        "--symmetry-band",
        type=float,
        metavar="LOW",
        help="also score each fold model with the 8-symmetry mean for scores in [LOW, 1-LOW]",
    )
    args = ap.parse_args()
    try:
        check_selection(args.select_by, args.average_last, args.epochs)
    except EpochSelectionError as exc:
        ap.error(str(exc))
    folds = GROUPINGS[args.grouping]
    torch.set_num_threads(args.threads)
    alerts = list(iter_ztf_alerts([args.alerts]))
    night = np.array([alert_night(a) for a in alerts])
    drb = np.array([np.nan if a.drb is None else a.drb for a in alerts])
    rb = np.array([np.nan if a.rb is None else a.rb for a in alerts])
    ast = np.array([(alert_label(a) or (0, ""))[1] == "known_asteroid" for a in alerts])
    band = None if args.symmetry_band is None else (args.symmetry_band, 1 - args.symmetry_band)
    own = ["cv", *([f"cv sym[{args.symmetry_band:g}]"] if band else [])]
    compared = [load_scorer(m, symmetry_band=None).model_version for m in args.compare]
    names = [*own, *compared, "ZTF rb"]
    scores = {n: np.full(len(alerts), np.nan) for n in names}
    streak = alert_streaks(alerts, [prepare_alert(a)[0] for a in alerts])
    on_streak = np.array([s is not None for s in streak])
    print(
        f"streak test: {int(on_streak.sum())} of {len(alerts)} alerts flagged, "
        f"{sorted({s.key for s in streak if s is not None})}"
    )

    def both(name: str, sel: np.ndarray) -> list[tuple[str, np.ndarray]]:
        s = scores[name][sel]
        return [(name, s), (f"{name} +streaks", np.where(on_streak[sel], s * STREAK_DEMOTION, s))]

    data = None
    per_fold: dict[str, list[float]] = {}
    for k, fold in enumerate(folds):
        if args.folds and k not in args.folds:
            continue
        out = args.out / f"fold{k}"
        if not (args.reuse and (out / "model.pt").is_file()):
            if data is None:
                t0 = time.perf_counter()
                real = build_alert_dataset([args.alerts], streaks=not args.keep_streaks)
                print(f"real alerts {real.source_counts()}, skipped {real.meta['skipped']}")
                real = balance_real(real, args.night_cap, args.bogus_factor)
                data = (real, simulated(args))
                print(f"data built in {time.perf_counter() - t0:.0f} s", flush=True)
            out = train_fold(k, fold, data, args)
        idx = np.flatnonzero(np.isin(night, fold))
        fold_alerts = [alerts[i] for i in idx]
        runs = [(own[0], out, None), *[(own[1], out, band)][: len(own) - 1]]
        runs += [(n, m, None) for n, m in zip(compared, args.compare, strict=True)]
        for name, model, sym in runs:
            scorer = load_scorer(model, symmetry_band=sym)
            rows = score_alerts(scorer, fold_alerts, streaks=False)
            scores[name][idx] = [np.nan if r["score"] is None else r["score"] for r in rows]
        scores["ZTF rb"][idx] = rb[idx]
        print(f"\nfold {k} {fold}: {len(idx)} alerts")
        for name in names:
            for label, s in both(name, idx):
                print(f"  {label:<34} {figures(s, drb[idx], ast[idx])}", flush=True)
                per_fold.setdefault(label, []).append(auc_of(s, drb[idx]))
    print("\nper fold (each fold's AUC from one model only):")
    for label, aucs in per_fold.items():
        print(f"  {label:<34} {spread_line(aucs)}")
    done = np.isfinite(scores["cv"])
    print(f"\npooled over the folds run ({int(done.sum())} alerts; cv = each fold's own model):")
    for name in names:
        for label, s in both(name, done):
            print(f"  {label:<34} {figures(s, drb[done], ast[done])}")
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "pooled_scores.npy", scores["cv"])
    (args.out / "summary.json").write_text(
        json.dumps({"folds": folds, "per_fold_auc": per_fold, "args": vars(args)}, default=str)
    )


def simulated(args: Any) -> LabelledStamps:
    """The recipe's simulated fields (seed 2026, fields from 200), via ``--sim-cache``."""
    pointer = None if args.sim_cache is None else args.sim_cache / "manifest_path.txt"
    weights = parse_kind_weights(args.kind_weights)
    if pointer is not None and pointer.is_file():
        return weight_kinds(load_dataset(pointer.read_text().strip()), weights)
    spec = SimulationSpec(n_pairs=args.sim_pairs, misaligned_fraction=args.misaligned_fraction)
    sim = build_simulated_dataset(spec, seed=2026, field_offset=200)
    if pointer is not None:
        manifest = save_dataset(sim, args.sim_cache)
        pointer.write_text(str(manifest["path"]))
    return weight_kinds(sim, weights)


if __name__ == "__main__":
    main()
