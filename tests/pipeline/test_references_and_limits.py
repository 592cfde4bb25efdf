"""Coadded, versioned references and per-difference detection limits, on SQLite and PostgreSQL.

One simulated field, five epochs (a deep reference epoch 0, then four). Epochs 1 and 2 have
one and two earlier images: their reference is epoch 0 alone. Epoch 3 has three good earlier
images: its reference is their inverse-variance coadd (a new reference version, deeper than
epoch 0), and epoch 4, with a fourth, gets a rebuilt coadd (the next version). Every
difference records the reference version it used, and its detection limits from fake point
sources agree with the ZOGY limit of the simulator's truth, scaled by the S/N efficiency the
pipeline shows on the real injected transients, within 0.1 mag.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import select

from astrid.pipeline.orchestrate import process_observation
from astrid.pipeline.report import write_report
from astrid.pipeline.stages.ingest import ingest_paths
from astrid.pipeline.stages.products import read_array
from astrid.runtime import Runtime
from astrid.science.stats import robust_sigma
from astrid.store.sky_index import angular_separation_deg
from astrid.store.tables import (
    Candidate,
    DetectionLimit,
    Difference,
    PreprocessResult,
    Reference,
)
from tests.pipeline.conftest import one_field_survey

THRESHOLD = 5.0  # the difference stage's default
Z90 = 1.2816  # one-sided Gaussian: P(S/N_measured > t) = 0.9 at S/N_true = t + 1.2816


def test_coadd_references_versions_and_limits(
    migrated_url: str, make_runtime: Callable[..., Runtime], tmp_path: Path
) -> None:
    runtime = make_runtime(migrated_url, limits_fakes=1100)
    e, survey = one_field_survey(
        runtime, tmp_path / "raw", seed=4, n_epochs=5, n_transients=4, flux_range=(3000.0, 6000.0)
    )
    results = {k: process_observation(runtime, e[k]) for k in range(5)}
    for k in range(1, 5):
        assert all(s.ok for s in results[k].stages), results[k]
    refs = {k: results[k].stages[1].value for k in range(1, 5)}

    # Epochs 1 and 2: the best single earlier image, epoch 0 (version 1).
    assert refs[1]["reference_observation_ids"] == [e[0]] and refs[1]["coadd"] is False
    assert refs[2]["reference_id"] == refs[1]["reference_id"]
    assert refs[1]["reference_version"] == 1
    # Epoch 3: three good earlier images → their coadd, version 2.
    assert refs[3]["coadd"] is True
    assert sorted(refs[3]["reference_observation_ids"]) == sorted(e[:3])
    assert refs[3]["reference_version"] == 2
    # Epoch 4: a fourth image → the coadd is rebuilt with it, version 3.
    assert refs[4]["coadd"] is True and refs[4]["reference_version"] == 3
    assert sorted(refs[4]["reference_observation_ids"]) == sorted(e[:4])
    with runtime.db.session() as s:
        diffs = {d.observation_id: d for d in s.scalars(select(Difference))}
        assert [diffs[e[k]].reference_version for k in range(1, 5)] == [1, 1, 2, 3]
        coadd = s.get(Reference, refs[4]["reference_id"])
        single = s.get(Reference, refs[1]["reference_id"])
        pre = {p.observation_id: p for p in s.scalars(select(PreprocessResult))}
        limits = {lim.observation_id: lim for lim in s.scalars(select(DetectionLimit))}
        coadd_keys = (coadd.blob_key, coadd.variance_key, coadd.mask_key, coadd.depth)
        single_depth = single.depth
        noise_stats = diffs[e[1]].stats["noise_from_variance"]
        new_var_key = pre[e[1]].variance_key
    # The coadd is deeper: on epoch 0's grid and zero point its variance is the inverse-
    # variance combination 1 / Σ 1 / (s_i² V_i) of the four inputs (s_i: zero-point scale).
    img, hdr = read_array(runtime, coadd_keys[0])
    var, _ = read_array(runtime, coadd_keys[1])
    mask, _ = read_array(runtime, coadd_keys[2])
    assert hdr["NCOMBINE"] == 4
    inv = 0.0
    for k in range(4):
        v, _ = read_array(runtime, pre[e[k]].variance_key)
        _, h = read_array(runtime, pre[e[k]].image_key)
        s_k = 10.0 ** (0.4 * (hdr["MAGZERO"] - h["MAGZERO"]))
        inv += 1.0 / (s_k**2 * float(np.median(v)))
    assert abs(float(np.nanmedian(var[mask == 0])) * inv - 1.0) < 0.10
    # ... and so is its noise, measured on its pixels against epoch 0's
    e0_img, _ = read_array(runtime, pre[e[0]].image_key)
    measured = robust_sigma(img[mask == 0]) / robust_sigma(e0_img)
    assert 0.6 < measured < 0.95, measured
    assert coadd_keys[3] > single_depth + 0.2
    # the difference's noise came from the stored preprocess variance, not a new estimate
    new_var, _ = read_array(runtime, new_var_key)
    assert abs(noise_stats["new"] / float(np.sqrt(np.median(new_var))) - 1.0) < 0.02

    # Limits: every difference has them; epoch 1 (single reference) against the theory.
    assert set(limits) == set(e[1:])
    lim = limits[e[1]]
    assert lim.n_injected == 1100 and 0 < lim.n_recovered < lim.n_injected
    assert lim.threshold == THRESHOLD and len(lim.curve) == 11
    t = survey.truth[survey.truth["file"] == "field-a-e1.fits"]
    # S/N = ideal_snr at magnitude `mag`, so S/N = x at mag + 2.5 log10(ideal_snr / x)
    m50 = float(np.median(t["mag"] + 2.5 * np.log10(t["ideal_snr"] / THRESHOLD)))
    m90 = float(np.median(t["mag"] + 2.5 * np.log10(t["ideal_snr"] / (THRESHOLD + Z90))))
    # The pipeline reaches a fraction `eff` of the ideal S/N on the real injected transients
    # of this epoch (PSF model, resampling); the limits must say the same: within 0.1 mag of
    # the ideal limit shifted by 2.5 log10(eff). (How far eff is below 1 is the differencing's
    # efficiency on this small field, checked by the family benchmark, not here.)
    with runtime.db.session() as s:
        cands = [(c.ra, c.dec, c.snr) for c in s.scalars(
            select(Candidate).where(Candidate.observation_id == e[1]))]  # fmt: skip
    ratios = []
    for row in t:
        sep = angular_separation_deg(
            np.array([c[0] for c in cands]), np.array([c[1] for c in cands]), row["ra"], row["dec"]
        )
        j = int(np.argmin(sep))
        assert sep[j] * 3600 < 1.0, row
        ratios.append(cands[j][2] / row["ideal_snr"])
    eff = float(np.median(ratios))
    assert 0.8 < eff <= 1.05, ratios
    shift = 2.5 * np.log10(eff)
    assert abs(lim.m50 - (m50 + shift)) < 0.1, (lim.m50, m50, eff)
    assert abs(lim.m90 - (m90 + shift)) < 0.1, (lim.m90, m90, eff)
    comp = [b["completeness"] for b in lim.curve]
    assert comp[0] > 0.95 and comp[-1] < 0.1  # bright bins found, faint ones not

    # The demo report shows them: one row per difference with its reference version, a plot.
    page = write_report(runtime, tmp_path / "report.html").read_text()
    assert "Detection limits per difference" in page and 'alt="limits"' in page
    assert f"<td>field-a-e1.fits</td><td>{diffs[e[1]].id}</td><td>1</td><td>{lim.m50:.2f}" in page


def test_coadd_of_non_overlapping_images_falls_back_to_the_best_single_one(
    runtime: Runtime, tmp_path: Path
) -> None:
    """Three earlier images that each cover 67 % of the new one but overlap each other by
    less than min_overlap: no coadd can be built; the stage says so and uses the best single
    image (never a coadd of one image, never a silent failure)."""
    from astrid.pipeline.stages.preprocess import preprocess_observation
    from astrid.pipeline.stages.reference import choose_reference
    from astrid.science.simulate_image import simulate_star_field, write_simulated
    from astrid.science.simulate_model import AnalyticPSF

    paths = []
    for k, offset in enumerate([(-85.0, 0.0), (85.0, 0.0), (0.0, 85.0), (0.0, 0.0)]):
        img = simulate_star_field((256, 256), 400, 21, psf=AnalyticPSF(fwhm=3.0),
                                  mjd=60000.0 + 5 * k, offset=offset)  # fmt: skip
        path = tmp_path / f"tile-{k}.fits"
        path.write_bytes(write_simulated(img))
        paths.append(path)
    outcomes = ingest_paths(runtime, paths, survey="tiles")
    ids = [int(o.observation_id) for o in outcomes if o.observation_id]
    pre = {i: preprocess_observation(runtime, i) for i in ids}
    assert all(r.status == "done" for r in pre.values()), pre
    new = ids[3]
    result = choose_reference(runtime, new, pre[new])
    assert result.status == "done", result
    value = result.value
    assert value["n_candidates"] == 3 and value["coadd"] is False
    assert "only 1 of the 3 images to coadd cover the reference grid" in value["coadd_fallback"]
    assert value["reference_observation_ids"] == [value["reference_observation_id"]]
    assert value["reference_version"] == 1


def test_an_image_without_an_observation_time_is_told_why_it_has_no_reference(
    runtime: Runtime, tmp_path: Path
) -> None:
    """Another simulator's frames with no DATE-OBS/MJD-OBS: the reference stage cannot say
    which is earlier, and says that, instead of "no earlier usable image"."""
    import io

    from astropy.io import fits

    from astrid.pipeline.stages.preprocess import preprocess_observation
    from astrid.pipeline.stages.reference import choose_reference
    from astrid.science.simulate_image import simulate_star_field, write_simulated
    from astrid.science.simulate_model import AnalyticPSF

    paths = []
    for k in range(2):
        img = simulate_star_field((192, 192), 200, 30 + k, psf=AnalyticPSF(fwhm=3.0),
                                  mjd=60000.0 + k)  # fmt: skip
        with fits.open(io.BytesIO(write_simulated(img))) as hdul:
            for key in ("MJD-OBS", "DATE-OBS", "MJD", "DATE"):
                hdul[0].header.remove(key, ignore_missing=True, remove_all=True)
            path = tmp_path / f"untimed-{k}.fits"
            hdul.writeto(path)
        paths.append(path)
    outcomes = ingest_paths(runtime, paths, survey="untimed")
    ids = [int(o.observation_id) for o in outcomes if o.observation_id]
    assert len(ids) == 2, outcomes
    pre = preprocess_observation(runtime, ids[1])
    assert pre.status == "done", pre
    result = choose_reference(runtime, ids[1], pre)
    assert result.status == "skipped"
    assert "no observation time" in (result.error or ""), result
