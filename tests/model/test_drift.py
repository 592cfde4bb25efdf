"""PSI drift monitoring: checked against the closed form, and on real alert nights."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from astrid.model.drift import drift_report, population_stability_index, stamp_statistics
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
