"""Retrain the shipped default model on simulations + real ZTF alerts, whole nights held out.

    python benchmarks/model_retrain_default.py [--alerts ../shared/data/ztf_alerts_train]
        [--train-nights all | NIGHT ...] [--sim-pairs 80] [--epochs 3]
        [--night-cap 300] [--bogus-factor 3] [--keep-streaks] [--out src/astrid/model/default]
        [--select-by auc | fpr2] [--average-last K] [--seed 2026]
    python benchmarks/model_retrain_default.py --train-nights all --reference-only
        # rebuild the same splits and add the drift references to --out's config.json

The recipe is :mod:`astrid.model.transfer`: warm start from the current default (trained on
simulations only), fine-tune on the union of fresh simulated fields (numbered from 200, never
in the recorded simulated test set, fields from 100000) and the real alerts of the training
night(s), with ZTF ``drb`` as a confidence-weighted weak label and known asteroids as exact
reals; epoch and calibration chosen on the validation part (simulated fields and real
objects not used for fitting). Real weights are balanced by
:func:`astrid.model.transfer.balance_real` (a night counts as at most ``--night-cap``
alerts; weak-label bogus alerts count ``--bogus-factor`` times). Every night except
``--train-nights`` is held out for ``benchmarks/model_real_heldout.py`` and never touched
here; with ``--train-nights all`` (the committed 1.2.0) no night is held out and the
real-data figures are those of ``benchmarks/model_cv_nights.py`` (same recipe, nights held
out per fold). The package keeps its drift references (its scores on the validation part and
the raw-stamp statistics, over all and per source: :func:`astrid.model.transfer.drift_references`);
``--reference-only`` rebuilds the same splits (same seeds) and writes just those into the
package at ``--out`` without training (how the references of 1.2.0 were added).

Since 1.3.0 the real set goes through the streak test
(:func:`astrid.model.real_alerts.build_alert_dataset`, ``streaks=True``): the pieces of a
dotted satellite trail are dropped from training (drb called 11 of them real on JD
2460235). ``--keep-streaks`` builds the set as 1.2.0's was.

Epoch choice (:func:`astrid.model.train.fit`): ``--select-by auc`` (the default, as 1.3.0
was made) keeps the epoch with the best validation ROC-AUC, ``--select-by fpr2`` the one
with the lowest validation FPR at FNR 2 %; ``--average-last K`` instead averages the weights
of the last K epochs. ``--seed`` (default 2026, 1.3.0's) seeds the training (order,
augmentation) and the train/validation split; the simulated fields stay those of seed 2026.
With ``--reference-only``, pass the ``--seed`` the package was trained with.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
from _recipe import add_recipe_options

from astrid.model.epoch_selection import EpochSelectionError, check_selection
from astrid.model.real_alerts import build_alert_dataset
from astrid.model.registry import load_package, save_package
from astrid.model.simulated import SimulationSpec, build_simulated_dataset
from astrid.model.train import TrainConfig
from astrid.model.transfer import (
    balance_real,
    drift_references,
    parse_kind_weights,
    split_for_transfer,
    train_transfer,
    weight_kinds,
)

ROOT = Path(__file__).resolve().parents[1]


def write_compact(path: Path, config: dict) -> None:
    """Write a package's ``config.json`` with one line per number list, values to 6
    significant digits (the drift references are distributions, not exact values)."""
    text = re.sub(
        r"\[\s+([-+0-9.eE,\s]+?)\s+\]",
        lambda m: "[" + " ".join(f"{float(v):.6g}," for v in m.group(1).split(","))[:-1] + "]",
        json.dumps(config, indent=2),
    )
    path.write_text(text + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=Path, default=ROOT.parent / "shared/data/ztf_alerts_train")
    ap.add_argument("--train-nights", nargs="+", default=["2460235"])
    ap.add_argument("--sim-pairs", type=int, default=80)
    ap.add_argument("--night-cap", type=int, default=300)
    ap.add_argument("--bogus-factor", type=float, default=3.0)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--init", type=Path, default=ROOT / "src/astrid/model/default")
    ap.add_argument("--out", type=Path, default=ROOT / "src/astrid/model/default")
    ap.add_argument("--semver", default="1.3.0")
    ap.add_argument("--keep-streaks", action="store_true", help="1.2.0's labels (no streak test)")
    add_recipe_options(ap)
    ap.add_argument(
        "--reference-only",
        action="store_true",
        help="only add the drift references of the package at --out (no training)",
    )
    args = ap.parse_args()
    try:
        check_selection(args.select_by, args.average_last, args.epochs)
    except EpochSelectionError as exc:
        ap.error(str(exc))
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    alerts = build_alert_dataset([args.alerts], streaks=not args.keep_streaks)
    print(f"skipped {alerts.meta['skipped']}; on a streak {alerts.meta['streak_dropped']}")
    real = balance_real(alerts, args.night_cap, args.bogus_factor)
    train_nights = sorted(set(real.nights)) if args.train_nights == ["all"] else args.train_nights
    held = sorted(set(real.nights) - set(train_nights))
    print(f"real alerts {len(real)} ({real.source_counts()}); held-out nights {held}", flush=True)
    cfg = TrainConfig(
        seed=args.seed,
        n_pairs=args.sim_pairs,
        n_test_pairs=60,
        epochs=args.epochs,
        lr=args.lr,
        num_threads=args.threads,
        extra={
            "recipe": "astrid.model.transfer",
            "holdout_nights": held,
            "misaligned_fraction": args.misaligned_fraction,
            "kind_weights": parse_kind_weights(args.kind_weights),
            "select_by": args.select_by,
            "average_last": args.average_last,
        },
    )
    spec = SimulationSpec(n_pairs=args.sim_pairs, misaligned_fraction=args.misaligned_fraction)
    sim = build_simulated_dataset(spec, seed=2026, field_offset=200)
    sim = weight_kinds(sim, parse_kind_weights(args.kind_weights))
    print(f"simulated {len(sim)} candidates in {time.perf_counter() - t0:.0f} s", flush=True)
    splits = split_for_transfer(sim, real, held, seed=cfg.seed)
    print(json.dumps(splits.summary()), flush=True)
    if args.reference_only:
        model = load_package(args.out)
        config_path = args.out / "config.json"
        config = json.loads(config_path.read_text())
        recorded, now = config.get("transfer", {}).get("splits", {}), splits.summary()
        # The real alerts must split exactly as in training (same files, same seed); the
        # simulated fields may differ by a few candidates when the differencing has changed
        # since (the reference is a distribution, not the validation set itself).
        for part in ("train", "val"):
            for source in ("drb", "rb", "known_asteroid", "streak"):
                if recorded.get(part, {}).get(source) != now[part].get(source):
                    raise SystemExit(f"the real {part} split differs from the recorded one")
        refs = drift_references(model.net, model.calibrator, splits.val, cfg.seed)
        config.update(refs)
        write_compact(config_path, config)
        counts = {k: len(v["score"]) for k, v in refs["drift_reference_by_source"].items()}
        print(f"wrote the drift references of {config_path} (scores per source {counts})")
        return
    init = load_package(args.init)
    fitted, calibrator = train_transfer(
        splits,
        cfg,
        init_state=init.net.state_dict(),
        on_epoch=lambda e, row: print(f"epoch {e}: {row}", flush=True),
        select_by=args.select_by,
        average_last=args.average_last,
    )
    kept = f"average of the last {fitted.averaged_last}" if fitted.averaged_last else "best"
    print(
        f"{kept} epoch {fitted.best_epoch} ({args.select_by}) val AUC {fitted.best_val_auc:.4f}; "
        f"{fitted.train_seconds:.0f} s of training",
        flush=True,
    )
    old = json.loads((args.init / "config.json").read_text())
    save_package(
        fitted.net,
        calibrator,
        args.out,
        {
            "semver": args.semver,
            "train_config": cfg.to_dict(),
            "dataset_version": splits.train.version,
            "test_dataset_version": old.get("test_dataset_version"),
            "difference": sim.meta.get("difference"),
            **drift_references(fitted.net, calibrator, splits.val, cfg.seed),
            "warm_start": {
                "semver": old.get("semver"),
                "dataset_version": old.get("dataset_version"),
            },
            "transfer": {
                "splits": splits.summary(),
                "holdout_nights": held,
                "train_nights": train_nights,
                "balance": {"night_cap": args.night_cap, "bogus_factor": args.bogus_factor},
                "streaks": alerts.meta["streaks"],
                "streak_dropped": alerts.meta["streak_dropped"],
                "best_epoch": fitted.best_epoch,
                "best_val_roc_auc": fitted.best_val_auc,
                "select_by": fitted.select_by,
                "averaged_last": fitted.averaged_last,
                "history": fitted.history,
                "train_seconds": fitted.train_seconds,
                "weights": (
                    "known_asteroid 1, drb |2 drb - 1|, simulation truth 1; real x "
                    "min(1, night_cap / alerts of its night); weak-label bogus x bogus_factor"
                ),
            },
        },
    )
    write_compact(args.out / "config.json", json.loads((args.out / "config.json").read_text()))
    print(
        f"wrote {args.out}; total {time.perf_counter() - t0:.0f} s; "
        f"labels real fraction train {np.mean(splits.train.labels):.2f}"
    )


if __name__ == "__main__":
    main()
