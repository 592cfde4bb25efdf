"""Preprocess products carried to the difference stage instead of measured again.

The preprocess stage records the background noise of its variance map
(``quality["noise_from_variance"]``: sqrt of the median over the unmasked pixels); the
difference stage takes it (for the new image and for a single-image reference) instead of
reading both variance maps back, with the same value it would have measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select

from astrid.pipeline.orchestrate import process_observation
from astrid.pipeline.stages.preprocess import preprocess_observation, variance_noise
from astrid.pipeline.stages.products import read_array
from astrid.runtime import Runtime
from astrid.store.tables import Difference, PreprocessResult
from tests.pipeline.conftest import one_field_survey


def test_difference_uses_the_noise_the_preprocess_stage_measured(
    runtime: Runtime, tmp_path: Path
) -> None:
    (e0, e1), _ = one_field_survey(runtime, tmp_path / "raw", seed=11, n_epochs=2,
                                   n_transients=2, flux_range=(2500.0, 6000.0))  # fmt: skip
    for obs in (e0, e1):
        assert preprocess_observation(runtime, obs).status == "done"
    with runtime.db.session() as s:
        pre = {p.observation_id: p for p in s.scalars(select(PreprocessResult))}
    expected = {}
    for obs, row in pre.items():
        var, _ = read_array(runtime, row.variance_key)
        mask, _ = read_array(runtime, row.mask_key)
        want = float(np.sqrt(np.median(var[np.isfinite(var) & (var > 0) & (mask == 0)])))
        assert variance_noise(var, mask.astype(bool)) == want
        assert row.quality["noise_from_variance"] == want
        expected[obs] = want
    # Without the variance maps the difference stage still runs: it does not read them.
    for row in pre.values():
        runtime.blobs.delete(row.variance_key)
    report = process_observation(runtime, e1, stages=("preprocess", "reference", "difference"))
    assert report.stages[-1].stage == "difference"
    assert report.stages[-1].status == "done", report.stages[-1]
    with runtime.db.session() as s:
        diff = s.scalars(select(Difference)).one()
    assert diff.stats["noise_from_variance"] == {"new": expected[e1], "ref": expected[e0]}
