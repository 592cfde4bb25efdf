"""The detect stage demotes candidates of one difference image that lie on a satellite trail.

A simulated epoch gets a dotted trail (a glinting satellite: ten PSF-shaped spots on a line)
painted into its FITS file before ingestion; the whole chain then runs. Each spot is a clean
point in its own stamp (the model calls it real); the streak test must flag every spot
(``extra["problem"]`` says so, confidence x0.1, the score before in ``extra["model_score"]``)
and none of the injected transients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from astropy.io import fits
from sqlalchemy import select

from astrid.pipeline.demo import simulate_demo_survey
from astrid.pipeline.orchestrate import process_observation
from astrid.pipeline.stages.ingest import ingest_paths
from astrid.runtime import Runtime
from astrid.store.db import upgrade
from astrid.store.tables import Detection


def _paint_trail(path: Path) -> np.ndarray:
    """Add ten 2.5e4-ADU spots (FWHM 3.3 px) on a line to the image; return their x, y."""
    with fits.open(path) as hdul:
        data = hdul[0].data.astype(np.float64)
        t = np.linspace(0.0, 1.0, 10)
        xs, ys = 30.0 + 190.0 * t, 70.0 + 120.0 * t
        yy, xx = np.mgrid[0 : data.shape[0], 0 : data.shape[1]]
        sigma = 3.3 / 2.355
        for x, y in zip(xs, ys, strict=True):
            data += (
                2.5e4
                / (2 * math.pi * sigma**2)
                * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / sigma**2)
            )
        hdul[0].data = data.astype(np.float32)
        hdul.writeto(path, overwrite=True)
    return np.column_stack([xs, ys])


def test_detect_flags_a_dotted_trail_not_the_transients(
    tmp_path: Path, make_runtime: Callable[..., Runtime]
) -> None:
    url = f"sqlite:///{tmp_path / 'astrid.db'}"
    upgrade(url)
    runtime = make_runtime(url)
    survey = simulate_demo_survey(
        tmp_path / "raw", seed=7, n_fields=1, n_epochs=2, n_transients=5,
        flux_range=(2500.0, 6000.0),
    )  # fmt: skip
    e1 = next(p for p in survey.paths if p.name.endswith("-e1.fits"))
    spots = _paint_trail(e1)
    outcomes = ingest_paths(runtime, survey.paths, survey="test")
    ids = {Path(o.path).name: int(o.observation_id) for o in outcomes if o.observation_id}
    from astrid.pipeline.stages.preprocess import preprocess_observation

    preprocess_observation(runtime, ids["field-a-e0.fits"])
    result = process_observation(runtime, ids["field-a-e1.fits"]).stages[-1]
    assert result.status == "done", result
    with runtime.db.session() as s:
        dets = list(s.scalars(select(Detection)))
    xy = np.array([[d.extra["x"], d.extra["y"]] for d in dets])
    # the detections' pixels are on the reference grid: 1.5 px of pointing offset
    near_spot = np.hypot(*(xy[:, None, :] - spots[None, :, :]).transpose(2, 0, 1)).min(1) < 4
    assert near_spot.sum() >= 8
    for d, on in zip(dets, near_spot, strict=True):
        problem = d.extra.get("problem") or ""
        if on:
            assert problem.startswith("on a streak") and "on one line" in problem
            assert d.confidence is not None and d.extra["model_score"] is not None
            assert math.isclose(d.confidence, 0.1 * d.extra["model_score"], rel_tol=1e-9)
        else:
            assert "streak" not in problem
    truth = survey.truth[survey.truth["file"] == e1.name]
    for row in truth:  # every injected transient is found and none is flagged
        sep = [
            math.hypot((d.ra - row["ra"]) * math.cos(math.radians(row["dec"])), d.dec - row["dec"])
            for d in dets
        ]
        k = int(np.argmin(sep))
        assert sep[k] * 3600.0 < 1.0 and "streak" not in (dets[k].extra.get("problem") or "")
