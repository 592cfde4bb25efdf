"""A reference prepared once (prepare_reference) differences exactly as the reference itself."""

from __future__ import annotations

import numpy as np
import pytest

from astrid.science.difference import (
    DifferenceError,
    PreparedReference,
    prepare_reference,
    subtract_pair,
)
from astrid.science.extract import extract_candidates
from astrid.science.simulate import simulate_pair
from astrid.science.simulate_image import write_simulated
from astrid.science.simulate_model import AnalyticPSF, Exposure


@pytest.fixture(scope="module")
def pair():  # type: ignore[no-untyped-def]
    new = Exposure(psf=AnalyticPSF(fwhm=3.0), mjd=60030, offset=(5.3, -3.6), rotation=0.4)
    ref = Exposure(psf=AnalyticPSF(fwhm=3.0))
    p = simulate_pair((384, 384), 250, seed=31, new=new, ref=ref, n_transients=25,
                      transient_flux_range=(600, 4000))  # fmt: skip
    # the reference with a MASK extension (written by write_simulated) and a given mask
    mask = np.zeros((384, 384), bool)
    mask[100:104, 30:90] = True
    return write_simulated(p.new), write_simulated(p.ref), mask


@pytest.mark.parametrize("method", ["zogy", "classic"])
def test_prepared_reference_gives_the_same_difference_and_candidates(pair, method: str) -> None:  # type: ignore[no-untyped-def]
    new, ref, ref_mask = pair
    fresh, fresh_pair = subtract_pair(new, ref, method, ref_mask=ref_mask, ref_noise=3.0)
    prepared = prepare_reference(ref, ref_mask, noise=3.0)
    assert isinstance(prepared, PreparedReference) and prepared.file_mask_pixels is not None
    # used twice: the second difference must not see anything the first one changed
    for _ in range(2):
        again, again_pair = subtract_pair(new, prepared, method)
        for name in ("diff", "score", "flux", "flux_err", "mask", "psf"):
            np.testing.assert_array_equal(getattr(again, name), getattr(fresh, name), name)
        assert again.flux_ratio == fresh.flux_ratio and again.notes == fresh.notes
        assert again.ref_noise == fresh.ref_noise == 3.0
        np.testing.assert_array_equal(again_pair.ref_mask, fresh_pair.ref_mask)
        a = extract_candidates(again, 5.0, wcs=again_pair.wcs)
        b = extract_candidates(fresh, 5.0, wcs=fresh_pair.wcs)
        assert len(a) > 0 and a.colnames == b.colnames
        for col in a.colnames:
            np.testing.assert_array_equal(np.asarray(a[col]), np.asarray(b[col]), col)


def test_a_prepared_reference_refuses_options_of_its_own(pair) -> None:  # type: ignore[no-untyped-def]
    new, ref, ref_mask = pair
    prepared = prepare_reference(ref)
    with pytest.raises(DifferenceError, match="ref_noise"):
        subtract_pair(new, prepared, ref_noise=2.0)
    with pytest.raises(DifferenceError, match="default_fwhm"):
        subtract_pair(new, prepared, default_fwhm=5.0)
    with pytest.raises(DifferenceError, match="ref_mask"):
        subtract_pair(new, prepared, ref_mask=ref_mask)
