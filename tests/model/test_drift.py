"""PSI drift monitoring: checked against the closed form, and on real alert nights."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from astrid.model.drift import (
    drift_report,
    population_stability_index,
    references_by_source,
    stamp_statistics,
)
from astrid.model.ztf import iter_ztf_alerts
from tests.model.conftest import STAMP_QUANTITIES


def test_psi_is_zero_for_the_same_distribution_and_matches_theory_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=200_000)
    assert population_stability_index(ref, rng.normal(size=200_000)) < 2e-3
    # a mean shift of d: PSI over 10 equal-probability bins of N(0,1) vs N(d,1), computed
    # from the normal CDFs (the population value the estimator converges to)
    d = 0.5
    edges = stats.norm.ppf(np.linspace(0, 1, 11))
    pe = np.full(10, 0.1)
    pa = np.diff(stats.norm.cdf(edges - d))
    theory = float(np.sum((pa - pe) * np.log(pa / pe)))
    got = population_stability_index(ref, rng.normal(d, 1.0, size=200_000))
    assert got == pytest.approx(theory, rel=0.05)
    assert 0.2 < theory < 0.3
    with pytest.raises(ValueError, match="finite"):
        population_stability_index(ref, np.full(5, np.nan))


@pytest.mark.realdata
def test_a_scaled_night_is_flagged_and_the_same_night_is_not(shared_data) -> None:
    alerts = [
        a
        for a in iter_ztf_alerts([shared_data / "ztf_alerts_train"])
        if a.science is not None and a.science.shape == a.template.shape == (63, 63)
    ]
    raw = np.stack([np.stack([a.science, a.template, a.difference]) for a in alerts])
    # two interleaved halves of the same alerts (~650 each): the same population
    first, second = stamp_statistics(raw[::2]), stamp_statistics(raw[1::2])
    same = drift_report(first, second)
    assert set(same.psi) == STAMP_QUANTITIES
    # a camera with 10x the gain: every level and noise moves, the NaN fraction does not
    assert same.drifted == [] and max(same.psi.values()) < 0.1
    scaled = stamp_statistics(raw[1::2] * 10.0)
    moved = drift_report(first, scaled)
    assert {"new_median", "new_sigma", "ref_sigma"} <= set(moved.drifted)
    assert "nan_fraction" not in moved.drifted


def test_references_by_source_split_each_quantity_by_source() -> None:
    rng = np.random.default_rng(1)
    scores = np.concatenate([rng.uniform(0, 0.3, 50), rng.uniform(0.7, 1.0, 30)])
    stats = {"new_median": np.concatenate([np.full(50, 100.0), np.full(30, 1e4)])}
    sources = ["pipeline"] * 50 + ["alert"] * 30
    refs = references_by_source(scores, stats, sources)
    assert sorted(refs) == ["alert", "pipeline"]
    assert len(refs["pipeline"]["score"]) == 50 and max(refs["pipeline"]["score"]) <= 0.3
    assert refs["alert"]["new_median"] == [1e4] * 30
    with pytest.raises(ValueError, match="one entry per example"):
        references_by_source(scores, stats, sources[:-1])


@pytest.mark.realdata
def test_the_default_models_alert_reference_reads_ztf_nights(shared_data) -> None:
    """The shipped model keeps a reference per source. Against its alert reference, a
    recent night's raw cutouts (2460236, as the training nights of 2023) are stable, and a
    2019 night (2458849), whose cutouts come in other units, has drifted: the drift job
    would say so for that night instead of silently scoring it."""
    import math

    from astrid.model.real_alerts import build_alert_dataset
    from astrid.model.registry import load_package
    from astrid.model.score import DEFAULT_MODEL_DIR

    config = load_package(DEFAULT_MODEL_DIR).config
    refs = config["drift_reference_by_source"]
    assert sorted(refs) == ["alert", "pipeline"]
    for ref in refs.values():
        assert len(ref["score"]) >= 200 and {"new_median", "diff_sigma"} <= set(ref)
    alert_ref = {k: np.asarray(v) for k, v in refs["alert"].items() if k != "score"}
    data = build_alert_dataset([shared_data / "ztf_alerts_train"], nights=["2460236"])
    calm = drift_report(alert_ref, data.input_stats, bins=2)
    assert calm.drifted == [], calm.psi
    old = build_alert_dataset([shared_data / "ztf_alerts"], nights=["2458849"])
    moved = drift_report(alert_ref, old.input_stats, bins=5)
    assert {"new_median", "diff_sigma"} <= set(moved.drifted)
    assert math.isfinite(max(moved.psi.values()))
