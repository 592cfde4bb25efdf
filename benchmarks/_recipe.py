"""The transfer recipe's options shared by ``model_retrain_default.py`` and
``model_cv_nights.py`` (one definition, so the two runs of a recipe take the same flags)."""

from __future__ import annotations

import argparse

from astrid.model.epoch_selection import SELECT_BY


def add_recipe_options(ap: argparse.ArgumentParser) -> None:
    """Simulated mix, loss weights, epoch choice and seed of the transfer recipe."""
    ap.add_argument(
        "--misaligned-fraction", type=float, default=0.15, help="of the simulated fields"
    )
    ap.add_argument("--kind-weights", nargs="*", default=[], help="KIND=W: simulated loss weights")
    ap.add_argument(
        "--select-by", choices=list(SELECT_BY), default="auc", help="epoch choice on validation"
    )
    ap.add_argument(
        "--average-last", type=int, default=0, help="average the weights of the last K epochs"
    )
    ap.add_argument("--seed", type=int, default=2026, help="training and split seed")
