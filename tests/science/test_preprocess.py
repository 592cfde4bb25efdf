"""The preprocessing chain on a simulated raw frame with a known detector and pointing."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from astrid.science.background import EmptyImageError
from astrid.science.calibrate import CalibrationSet, master_bias, master_flat
from astrid.science.fitsio import read_image, write_image
from astrid.science.preprocess import (
    PreprocessedImage,
    PreprocessError,
    PreprocessState,
    ReferenceGrid,
    preprocess_image,
)
from astrid.science.quality import ImageQuality
from astrid.science.simulate_image import simulate_star_field
from astrid.science.simulate_model import AnalyticPSF

SHAPE = (160, 160)
BIAS = 250.0


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(5)
    yy, xx = np.indices(SHAPE)
    flat = 1.0 - 0.1 * (((xx - 80) / 80.0) ** 2 + ((yy - 80) / 80.0) ** 2)
    flat /= np.median(flat)
    ref = simulate_star_field(
        SHAPE, n_stars=120, seed=1, psf=AnalyticPSF(2.6), flux_range=(1500.0, 2e5)
    )
    sci = simulate_star_field(
        SHAPE,
        seed=2,
        psf=AnalyticPSF(3.3),
        offset=(2.4, -1.7),
        cosmic_rays=15,
        catalog=ref.stars,
    )
    raw = sci.data * flat + BIAS
    biases = [BIAS + rng.normal(0, 2.5, SHAPE) for _ in range(8)]
    flats = [20000.0 * flat + BIAS + rng.normal(0, 60, SHAPE) for _ in range(6)]
    bias = master_bias(biases)
    mflat = master_flat(flats, bias=bias, filter="r")
    return {"ref": ref, "sci": sci, "raw": raw, "cal": CalibrationSet(bias=bias, flat=mflat)}


def test_full_chain(setup) -> None:
    sci, ref = setup["sci"], setup["ref"]
    seen: list[str] = []

    def hook(step: str, state: PreprocessState) -> None:
        seen.append(step)
        if step == "mask":
            state.extra["masked_after_mask"] = int(state.mask.sum())

    result = preprocess_image(
        setup["raw"],
        sci.header,
        calibration=setup["cal"],
        reference=ReferenceGrid(ref.data, ref.wcs),
        hooks=[hook],
    )
    assert result.steps == ["calibrate", "mask", "background", "quality", "align"]
    assert seen == result.steps
    assert set(result.timings) == set(result.steps)
    assert all(t >= 0 for t in result.timings.values())
    # calibration restored the sky level and flattened it
    assert result.quality.background == pytest.approx(sci.sky_level, rel=0.01)
    assert result.quality.background_rms == pytest.approx(sci.noise_sigma, rel=0.05)
    assert result.quality.fwhm == pytest.approx(3.3, rel=0.05)
    assert result.quality.cosmic_ray_pixels >= sci.cosmic_ray_mask.sum() * 0.8
    # aligned onto the reference grid
    assert result.alignment is not None
    assert result.alignment.rms_px < 0.15
    assert result.wcs is ref.wcs
    assert result.metadata is not None and result.metadata.gain == sci.gain
    # stars of the reference sit at the same pixels in the result
    bright = ref.stars[(ref.stars["flux"] > 20000) & ~ref.stars["saturated"]]
    for row in bright[:5]:
        x, y = round(row["x"]), round(row["y"])
        if 5 < x < SHAPE[1] - 5 and 5 < y < SHAPE[0] - 5:
            stamp = np.nan_to_num(result.image[y - 2 : y + 3, x - 2 : x + 3])
            assert np.unravel_index(np.argmax(stamp), stamp.shape) == (2, 2)
    # the variance came through calibration and alignment and matches the noise
    assert np.nanmedian(result.variance) == pytest.approx(sci.noise_sigma**2, rel=0.15)


def test_no_wcs_no_calibration_background_subtracted(setup) -> None:
    sci = setup["sci"]
    bare = read_image(write_image(None, sci.data))  # no header at all
    result = preprocess_image(bare, subtract_background=True, detect_cosmics=False, gain=2.0)
    assert result.steps == ["mask", "background", "variance", "quality"]
    assert result.wcs is None and result.metadata is None
    blank = (sci.model - sci.sky_level) < 0.05 * sci.noise_sigma
    assert abs(float(np.median(result.image[blank]))) < 0.1 * sci.noise_sigma
    assert float(np.median(result.background)) == pytest.approx(sci.sky_level, rel=0.005)
    sky_var = float(np.median(result.variance))
    assert sky_var == pytest.approx(sci.noise_sigma**2, rel=0.1)
    assert result.quality.fwhm == pytest.approx(3.3, rel=0.05)


def test_hook_can_replace_mask(setup) -> None:
    sci = setup["sci"]

    def hook(step: str, state: PreprocessState) -> None:
        if step == "mask":
            state.mask[:, :10] = True

    result = preprocess_image(sci.data, sci.header, hooks=[hook], detect_cosmics=False)
    assert result.mask[:, :10].all()


def test_bad_inputs() -> None:
    with pytest.raises(PreprocessError, match="not 2-D"):
        preprocess_image(np.zeros((2, 5, 5)))
    with pytest.raises(EmptyImageError):
        preprocess_image(np.full((40, 40), np.nan), fits.Header())


def test_quality_record_equals_a_fresh_assessment(setup) -> None:
    # the quality step reuses the background step's estimate; without cosmic rays the
    # record is exactly what assess_quality computes from scratch on the same image and
    # mask. With them, the background step reuses the mask step's bright-source mask
    # (found before the rays were masked): the same record within a fraction of a percent.
    from dataclasses import replace

    from astrid.science.fitswcs import celestial_wcs
    from astrid.science.quality import assess_quality

    sci = setup["sci"]
    scales = celestial_wcs(sci.header).proj_plane_pixel_scales()

    def fresh_quality(res: PreprocessedImage) -> ImageQuality:
        return assess_quality(
            res.image.astype(np.float64),
            res.mask,
            header=sci.header,
            detect_cosmics=False,
            pixel_scale=float(np.mean([p.to_value("arcsec") for p in scales])),
        ).quality

    plain = preprocess_image(sci.data, sci.header, detect_cosmics=False)
    assert plain.quality == fresh_quality(plain)

    res = preprocess_image(sci.data, sci.header, detect_cosmics=True)
    q, fresh = res.quality, fresh_quality(res)
    assert q.cosmic_ray_pixels > 0
    same = ("n_stars", "n_sources", "masked_fraction", "saturated_fraction", "zeropoint")
    assert replace(fresh, **{k: getattr(q, k) for k in same}) == fresh  # counts identical
    assert q.background == pytest.approx(fresh.background, abs=0.01 * fresh.background_rms)
    assert q.background_rms == pytest.approx(fresh.background_rms, rel=0.005)
    assert q.background_flatness == pytest.approx(fresh.background_flatness, abs=0.01)
    assert q.fwhm == pytest.approx(fresh.fwhm, rel=1e-3)
    assert q.ellipticity == pytest.approx(fresh.ellipticity, abs=1e-3)
    assert q.limiting_mag == pytest.approx(fresh.limiting_mag, abs=0.01)
    assert q.score == pytest.approx(fresh.score, abs=0.01)
