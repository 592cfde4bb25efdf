"""Fast scoring (the U-Net on the centre window's regions only) gives the plain network's
scores: on random networks of several shapes, on simulated stamps and on real ZTF alerts."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from astrid.model.centre_net import CentreWindowNet
from astrid.model.score import Scorer, load_scorer, score_alerts, symmetric_views
from astrid.model.simulated import SimulationSpec, build_simulated_dataset
from astrid.model.unet import UNet, UNetConfig, centre_logit
from astrid.model.ztf import iter_ztf_alerts, prepare_alert

#: |logit difference| float32 can promise (different summation orders, any CPU)
LOGIT_TOL = 1e-4
#: calibrated scores and their spread: probabilities, derivative of the sigmoid <= 1/4
SCORE_TOL = 1e-5


def _random_unet(cfg: UNetConfig, seed: int) -> UNet:
    """A UNet with random weights and random (non-trivial) batch-norm statistics."""
    torch.manual_seed(seed)
    net = UNet(cfg)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
                # positive weights (weighted means): the ReLUs pass most values on, so every
                # pixel of a region reaches the window (a random net's output hardly depends
                # on its input: the test would not see a pixel missing from a region)
                w = m.weight.abs_()
                w /= w.sum(
                    dim=(0, 2, 3) if isinstance(m, torch.nn.ConvTranspose2d) else (1, 2, 3),
                    keepdim=True,
                )
            if isinstance(m, torch.nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-1.0, 1.0)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net.eval()


@pytest.mark.parametrize(
    "cfg",
    [
        UNetConfig(base_channels=6, depth=2, stamp_size=64, centre_radius=2),  # the default's
        UNetConfig(base_channels=4, depth=3, stamp_size=64, centre_radius=2),  # reaches borders
        UNetConfig(base_channels=8, depth=2, stamp_size=32, centre_radius=4),
        UNetConfig(base_channels=4, depth=1, stamp_size=16, centre_radius=0),
        UNetConfig(base_channels=4, depth=3, stamp_size=24, centre_radius=3),
    ],
)
def test_centre_window_net_equals_the_full_network(cfg: UNetConfig) -> None:
    net = _random_unet(cfg, seed=cfg.depth + cfg.stamp_size)
    fast = CentreWindowNet(net)
    x = torch.randn(12, cfg.in_channels, cfg.stamp_size, cfg.stamp_size)
    with torch.inference_mode():
        want = centre_logit(net(x), cfg.centre_radius)
        got = fast(x)
        lo, hi = fast.input_span
        cropped = fast.from_crop(x[..., lo:hi, lo:hi].contiguous())
        # every pixel of the window, not only its maximum, is the full map's
        c, r = cfg.stamp_size // 2, cfg.centre_radius
        window = net(x)[..., c - r : c + r + 1, c - r : c + r + 1]
        got_window = fast.window_from_crop(x[..., lo:hi, lo:hi])
    assert got.shape == (12,)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=LOGIT_TOL)
    np.testing.assert_allclose(cropped.numpy(), want.numpy(), rtol=0, atol=LOGIT_TOL)
    np.testing.assert_allclose(got_window.numpy(), window.numpy(), rtol=0, atol=LOGIT_TOL)
    if cfg.stamp_size == 64 and cfg.depth == 2:
        # the default model's window depends on a 48x48 crop of the stamps only
        assert fast.input_span == (10, 58)


def test_other_networks_are_refused_and_scored_with_the_full_map() -> None:
    class Shifted(UNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + 1.0

    cfg = UNetConfig(base_channels=4, depth=2, stamp_size=32, centre_radius=2)
    odd = Shifted(cfg).eval()
    odd.load_state_dict(_random_unet(cfg, seed=3).state_dict())
    with pytest.raises(TypeError, match="is not astrid"):
        CentreWindowNet(odd)
    loaded = copy.copy(load_scorer("default").loaded)
    loaded.net = odd
    scorer = Scorer(loaded, symmetry_band=None)
    x = np.random.default_rng(0).normal(size=(5, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        want = centre_logit(odd(torch.from_numpy(x)), 2).numpy()
    np.testing.assert_allclose(scorer.logits(x), want, rtol=0, atol=LOGIT_TOL)


def _plain_reference(
    scorer: Scorer, stamps: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits of the 8 views ``(8, N)`` from the unfused network's full map (NCHW, no
    cropping), the banded score and its spread over the views, computed the slow way."""
    net = copy.deepcopy(scorer.loaded.net).eval()
    radius = scorer.loaded.net.config.centre_radius
    logits = np.empty((8, len(stamps)))
    with torch.inference_mode():
        for k, view in enumerate(symmetric_views(stamps)):
            for start in range(0, len(stamps), 32):
                x = torch.from_numpy(np.ascontiguousarray(view[start : start + 32]))
                logits[k, start : start + 32] = centre_logit(net(x), radius).numpy()
    cal = scorer.loaded.calibrator
    scores = np.asarray(cal(logits.ravel())).reshape(logits.shape)
    single = scores[0]
    low, high = scorer.symmetry_band or (1.0, 0.0)
    inside = (single >= low) & (single <= high)
    score = single.copy()
    score[inside] = cal(logits[:, inside].mean(axis=0))
    return logits, score, scores.std(axis=0)


def _check_against_plain(stamps: np.ndarray) -> None:
    logits, score, spread = _plain_reference(load_scorer("default"), stamps)
    for batch in (64, 1000):  # chunking of the 7 and 8 views differs
        scorer = load_scorer("default", batch_size=batch)
        np.testing.assert_allclose(scorer.logits(stamps), logits[0], rtol=0, atol=LOGIT_TOL)
        got = scorer.score(stamps)
        np.testing.assert_allclose(got, score, rtol=0, atol=SCORE_TOL)
        with_u, u = scorer.score_with_uncertainty(stamps)
        np.testing.assert_allclose(with_u, score, rtol=0, atol=SCORE_TOL)
        np.testing.assert_allclose(u, spread, rtol=0, atol=SCORE_TOL)
        single = scorer.loaded.calibrator(logits[0])
        assert np.any((single >= 0.05) & (single <= 0.95))  # the band's branch is covered


def test_fast_scores_equal_the_plain_network_on_simulated_stamps() -> None:
    data = build_simulated_dataset(SimulationSpec(n_pairs=3), seed=7, field_offset=500100)
    _check_against_plain(data.stamps[:150])


@pytest.mark.realdata
def test_fast_scores_equal_the_plain_network_on_real_alerts(shared_data) -> None:
    files = sorted((shared_data / "ztf_alerts_train").rglob("*.avro"))[::8]  # one alert in 8
    alerts = list(iter_ztf_alerts(files))
    prepared = [(a, prepare_alert(a)[0]) for a in alerts]
    kept = [(a, t) for a, t in prepared if t is not None]
    _check_against_plain(np.stack([t for _, t in kept]))
    # the uncertainty column of score_alerts: the spread of the 8 views' scores
    kept = kept[:120]
    scorer = load_scorer("default")
    rows = score_alerts(scorer, [a for a, _ in kept], uncertainty=True, streaks=False)
    _, score, spread = _plain_reference(scorer, np.stack([t for _, t in kept]))
    np.testing.assert_allclose([r["score"] for r in rows], score, rtol=0, atol=SCORE_TOL)
    np.testing.assert_allclose([r["uncertainty"] for r in rows], spread, rtol=0, atol=SCORE_TOL)
