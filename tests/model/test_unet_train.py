"""The U-Net learns a separable toy set; training refuses single-class data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from astrid.model.evaluate import classification_metrics
from astrid.model.splits import grouped_split
from astrid.model.torch_data import StampDataset
from astrid.model.train import SingleClassError, TrainConfig, fit, network_logits
from astrid.model.unet import UNet, UNetConfig, centre_logit

from .conftest import toy_dataset


def test_unet_shapes_and_centre_reading() -> None:
    net = UNet(UNetConfig(base_channels=4, depth=2, stamp_size=32)).eval()
    out = net(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 1, 32, 32)
    logits = torch.zeros(1, 1, 32, 32)
    logits[0, 0, 17, 15] = 5.0  # inside the 5x5 window around (16, 16)
    logits[0, 0, 0, 0] = 9.0  # far away: ignored
    assert float(centre_logit(logits, radius=2)[0]) == 5.0


def test_tiny_model_learns_a_separable_toy_set(toy) -> None:
    train_idx, val_idx = grouped_split(toy.groups, (0.75, 0.25), seed=0)
    train, val = toy.subset(train_idx), toy.subset(val_idx)
    cfg = TrainConfig(
        stamp_size=32, base_channels=4, depth=2, epochs=6, batch_size=16, lr=1e-2, num_threads=1
    )
    result = fit(train, val, cfg)
    held_out = toy_dataset(n=80, seed=99)
    z = network_logits(result.net, held_out.stamps)
    m = classification_metrics(held_out.labels, 1 / (1 + np.exp(-z)))
    assert m.roc_auc > 0.98
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    # an untrained network of the same shape does not separate the set
    untrained = UNet(cfg.unet_config()).eval()
    z0 = network_logits(untrained, held_out.stamps)
    assert classification_metrics(held_out.labels, 1 / (1 + np.exp(-z0))).roc_auc < m.roc_auc


def test_training_is_seeded(toy) -> None:
    cfg = TrainConfig(stamp_size=32, base_channels=4, epochs=1, max_steps=3, num_threads=1)
    a = fit(toy.subset(range(64)), toy.subset(range(64, 96)), cfg)
    b = fit(toy.subset(range(64)), toy.subset(range(64, 96)), cfg)
    for (ka, va), (_, vb) in zip(
        a.net.state_dict().items(), b.net.state_dict().items(), strict=True
    ):
        assert torch.equal(va, vb), ka


def test_single_class_training_refuses(toy) -> None:
    reals = toy.subset(np.flatnonzero(toy.labels == 1))
    cfg = TrainConfig(stamp_size=32, base_channels=4, epochs=1, num_threads=1)
    with pytest.raises(SingleClassError, match="only real"):
        fit(reals, reals, cfg)


def test_augmentation_keeps_mask_and_stamp_together(toy) -> None:
    ds = StampDataset(toy.subset([0]), augment=True, seed=3)
    for _ in range(8):
        x, m, y, w = ds[0]
        # the real blob's mask stays on the blob: the masked pixels are the brightest in diff
        inside = x[2][m[0] > 0].mean()
        outside = x[2][m[0] == 0].mean()
        assert inside > outside + 3 and float(y) == 1.0 and float(w) == 1.0


def test_hyperparameter_search_returns_the_best_trial(toy) -> None:
    from astrid.model.hpo import run_hpo

    train_idx, val_idx = grouped_split(toy.groups, (0.75, 0.25), seed=0)
    cfg = TrainConfig(stamp_size=32, epochs=1, max_steps=4, batch_size=16, num_threads=1)
    best = run_hpo(cfg, toy.subset(train_idx), toy.subset(val_idx), n_trials=2)
    assert set(best) == {"lr", "weight_decay", "base_channels", "pixel_loss_weight"}
    assert 5e-4 <= best["lr"] <= 1e-2 and best["base_channels"] in (4, 6, 8)
