"""Epoch selection of :func:`astrid.model.train.fit`: by the validation FPR at FNR 2 %, by
ROC-AUC (the default), and weight averaging of the last epochs (tiny networks on the toy
set, a few seconds each)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from astrid.errors import AstridError
from astrid.model.epoch_selection import EpochSelectionError, average_states
from astrid.model.evaluate import fpr_at_fnr
from astrid.model.train import TrainConfig, fit, network_logits
from astrid.model.transfer import TransferSplits, train_transfer
from astrid.model.unet import UNet


def tiny_config(**kw: Any) -> TrainConfig:
    base = dict(
        stamp_size=32, base_channels=4, depth=2, epochs=3, batch_size=16, lr=1e-2, num_threads=1
    )
    return TrainConfig(**{**base, **kw})


def split(toy):
    """64 training and 96 validation examples of the toy set (whole 8-example groups)."""
    return toy.subset(range(64)), toy.subset(range(64, 160))


def fit_capturing(train, val, cfg: TrainConfig, **kw: Any):
    """``fit`` with every epoch's state dict captured through ``on_state``."""
    states: list[dict[str, torch.Tensor]] = []
    result = fit(train, val, cfg, on_state=lambda e, s: states.append(s), **kw)
    assert len(states) == len(result.history)
    return result, states


def assert_same_state(got: dict, want: dict, atol: float = 0.0) -> None:
    assert list(got) == list(want)
    for key in want:
        if torch.is_floating_point(want[key]):
            torch.testing.assert_close(got[key], want[key], atol=atol, rtol=0.0, msg=key)
        else:
            assert torch.equal(got[key], want[key]), key


def test_fpr_at_fnr_on_a_hand_computed_case() -> None:
    # 50 reals scoring 0.01, 0.02, ..., 0.50: losing at most 2 % of them (one) puts the
    # threshold at the second-lowest real, 0.02; bogus at or above it pass (ties included)
    real = np.arange(1, 51) / 100
    bogus = np.array([0.0, 0.015, 0.02, 0.3, 0.9])
    labels = np.r_[np.ones(50, int), np.zeros(5, int)]
    fpr, threshold = fpr_at_fnr(labels, np.r_[real, bogus], 0.02)
    assert threshold == pytest.approx(0.02)
    assert fpr == pytest.approx(3 / 5)
    # with 49 reals, 2 % allows no loss: the threshold is the lowest real
    fpr, threshold = fpr_at_fnr(labels[1:], np.r_[real[1:], bogus], 0.02)
    assert threshold == pytest.approx(0.02) and fpr == pytest.approx(3 / 5)
    # a bogus below the threshold does not pass
    fpr, threshold = fpr_at_fnr(np.r_[labels[:-5], 0], np.r_[real, 0.011], 0.02)
    assert threshold == pytest.approx(0.02) and fpr == 0.0


def test_average_states_is_the_mean_and_keeps_integer_buffers() -> None:
    a = {"w": torch.tensor([1.0, 2.0, -3.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0, 5.0]), "n": torch.tensor(7)}
    avg = average_states([a, b])
    torch.testing.assert_close(avg["w"], torch.tensor([2.0, 4.0, 1.0]))
    assert avg["n"].dtype == torch.int64 and int(avg["n"]) == 7  # the last state's
    # two networks of the tiny architecture (BatchNorm: running stats and batch counters)
    cfg = tiny_config()
    torch.manual_seed(1)
    one = UNet(cfg.unet_config()).state_dict()
    torch.manual_seed(2)
    two = UNet(cfg.unet_config()).state_dict()
    two = {k: v + 1 if k.endswith("num_batches_tracked") else v for k, v in two.items()}
    avg = average_states([one, two])
    for key, value in avg.items():
        if torch.is_floating_point(value):
            assert value.dtype == one[key].dtype
            torch.testing.assert_close(value, (one[key] + two[key]) / 2, atol=1e-6, rtol=0.0)
        else:
            assert torch.equal(value, two[key]) and not torch.equal(value, one[key]), key
    with pytest.raises(EpochSelectionError, match="no state dict"):
        average_states([])
    with pytest.raises(EpochSelectionError, match="other keys"):
        average_states([a, {"w": b["w"]}])


def test_average_last_returns_the_mean_of_the_last_epochs(toy) -> None:
    train, val = split(toy)
    result, states = fit_capturing(train, val, tiny_config(), average_last=2)
    assert result.averaged_last == 2 and result.best_epoch == 2
    assert_same_state(result.net.state_dict(), average_states(states[1:]), atol=1e-6)
    # the average is neither epoch, and the first epoch is left out
    last = states[-1]
    assert any(not torch.equal(result.net.state_dict()[k], last[k]) for k in last)
    assert not torch.allclose(result.net.state_dict()["head.weight"], states[0]["head.weight"])
    # the reported AUC is that of the averaged weights on the validation part
    from sklearn.metrics import roc_auc_score

    z = network_logits(result.net, val.stamps)
    auc = roc_auc_score(val.labels, z, sample_weight=val.weights)
    assert result.best_val_auc == pytest.approx(auc, abs=1e-9)
    # train_transfer passes the options through and calibrates the averaged network
    splits = TransferSplits(train=train, val=val, test_real=None)
    fitted, calibrator = train_transfer(
        splits, tiny_config(), select_by="fpr2", average_last=2, on_state=lambda e, s: None
    )
    assert fitted.averaged_last == 2 and fitted.select_by == "fpr2"
    assert_same_state(fitted.net.state_dict(), result.net.state_dict())
    p = calibrator(network_logits(fitted.net, val.stamps))
    assert np.all((p >= 0) & (p <= 1))


def test_select_by_fpr2_keeps_the_epoch_with_the_lowest_validation_fpr(toy) -> None:
    train, val = split(toy)
    cfg = tiny_config(epochs=4)
    result, states = fit_capturing(train, val, cfg, select_by="fpr2")
    rows = result.history
    fprs = [r["val_fpr_at_fnr2"] for r in rows]
    assert all(0.0 <= f <= 1.0 for f in fprs)
    assert len(set(fprs)) > 1  # the epochs differ, so the choice means something
    best = min(fprs)
    tied = [e for e, f in enumerate(fprs) if f == best]
    want = max(tied, key=lambda e: (rows[e]["val_roc_auc"], -e))
    assert result.best_epoch == want and result.select_by == "fpr2"
    assert_same_state(result.net.state_dict(), states[want])
    # the history figure is the FPR at FNR 2 % of that epoch's network on the validation part
    z = network_logits(result.net, val.stamps)
    assert fpr_at_fnr(val.labels, z, 0.02)[0] == pytest.approx(best, abs=1e-12)
    assert result.best_val_auc == pytest.approx(rows[want]["val_roc_auc"], abs=1e-12)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"select_by": "loss"}, "unknown epoch selection"),
        ({"average_last": -1}, "must be >= 0"),
        ({"average_last": 4}, "cannot average the last 4 epochs of a 3-epoch"),
        ({"average_last": 1.5}, "must be an integer"),
    ],
)
def test_bad_selection_arguments_are_a_named_error(toy, kw: dict, match: str) -> None:
    train, val = split(toy)
    with pytest.raises(EpochSelectionError, match=match) as err:
        fit(train, val, tiny_config(), **kw)
    assert isinstance(err.value, ValueError) and isinstance(err.value, AstridError)
    with pytest.raises(EpochSelectionError, match=match):
        train_transfer(TransferSplits(train, val, None), tiny_config(), **kw)


def test_default_selection_is_unchanged(toy) -> None:
    train, val = split(toy)
    cfg = tiny_config(epochs=4)
    default, states = fit_capturing(train, val, cfg)
    by_auc = fit(train, val, cfg, select_by="auc")
    aucs = [r["val_roc_auc"] for r in default.history]
    assert default.best_epoch == by_auc.best_epoch == int(np.argmax(aucs))
    assert default.select_by == "auc" and default.averaged_last == 0
    assert default.best_val_auc == pytest.approx(max(aucs), abs=1e-12)
    assert_same_state(default.net.state_dict(), states[default.best_epoch])
    assert_same_state(default.net.state_dict(), by_auc.net.state_dict())
