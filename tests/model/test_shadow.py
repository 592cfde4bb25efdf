"""Shadow A/B: stable shadowed fraction, both scores kept, agreement and label metrics."""

from __future__ import annotations

import numpy as np
import pytest

from astrid.model.calibration import TemperatureCalibrator
from astrid.model.registry import IncompatibleModelError, save_package
from astrid.model.score import DEFAULT_MODEL_DIR, load_scorer
from astrid.model.shadow import in_shadow, shadow_agreement, shadow_score_alerts
from astrid.model.unet import UNet, UNetConfig
from astrid.model.ztf import iter_ztf_alerts


def test_the_shadowed_fraction_is_stable() -> None:
    ids = range(1_000_000, 1_020_000)
    picked = [i for i in ids if in_shadow(i, 0.2)]
    assert abs(len(picked) / 20_000 - 0.2) < 0.01
    assert picked == [i for i in ids if in_shadow(i, 0.2)]  # same ids on a re-run
    assert not any(in_shadow(i, 0.0) for i in ids) and all(in_shadow(i, 1.0) for i in ids)


@pytest.mark.realdata
def test_champion_decides_challenger_is_kept(shared_data, tmp_path) -> None:
    import torch

    alerts = list(iter_ztf_alerts([shared_data / "ztf_alerts"]))
    champion = load_scorer("default")
    torch.manual_seed(0)
    other = save_package(
        UNet(UNetConfig(base_channels=6)).eval(), TemperatureCalibrator(), tmp_path / "c"
    )
    challenger = load_scorer(other)
    rows = shadow_score_alerts(champion, challenger, alerts, fraction=0.5)
    plain = [r["score"] for r in rows]
    assert plain == pytest.approx(
        [r["score"] for r in shadow_score_alerts(champion, challenger, alerts, 0.0)], abs=1e-6
    )
    shadowed = [r for r in rows if r["shadow_score"] is not None]
    assert 10 <= len(shadowed) <= 40
    assert {r["shadow_version"] for r in shadowed} == {challenger.model_version}
    assert all(in_shadow(r["candid"], 0.5) == (r["shadow_score"] is not None) for r in rows)
    # the champion against itself agrees fully; against an untrained challenger, less
    same = shadow_agreement([{**r, "shadow_score": r["score"]} for r in rows])
    assert same["agreement"] == 1.0 and same["mean_abs_diff"] == 0.0
    labels = {int(a.candid): int(a.drb >= 0.5) for a in alerts}
    stats = shadow_agreement(rows, labels)
    assert stats["n"] == len(shadowed) and stats["n_labelled"] == len(shadowed)
    assert 0.0 <= stats["agreement"] <= 1.0
    assert stats["champion_recall"] is None or 0 <= stats["champion_recall"] <= 1
    # a challenger with another input convention is refused, nothing scored
    small = save_package(
        UNet(UNetConfig(base_channels=4, stamp_size=32)).eval(),
        TemperatureCalibrator(),
        tmp_path / "s",
    )
    with pytest.raises(IncompatibleModelError, match="input"):
        shadow_score_alerts(champion, load_scorer(small), alerts, 0.5)
    assert np.isfinite(plain).all()


@pytest.mark.realdata
def test_score_alerts_with_a_challenger(shared_data, tmp_path) -> None:
    import csv

    from typer.testing import CliRunner

    from astrid.cli import app

    out = tmp_path / "s.csv"
    default = str(DEFAULT_MODEL_DIR)
    args = ["score-alerts", str(shared_data / "ztf_alerts"), "-o", str(out), "--no-uncertainty"]
    result = CliRunner().invoke(app, [*args, "--challenger", default, "--shadow-fraction", "0.3"])
    assert result.exit_code == 0, result.output
    assert "'agreement': 1.0" in result.output  # the same model as champion and challenger
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    shadowed = [r for r in rows if r["shadow_score"]]
    assert 5 <= len(shadowed) <= 25
    assert all(abs(float(r["shadow_score"]) - float(r["score"])) < 1e-5 for r in shadowed)
