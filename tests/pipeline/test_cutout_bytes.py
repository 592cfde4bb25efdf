"""The detect stage's stored cutouts: the fast writer gives astropy's own bytes.

Blob keys are content hashes, so the FITS written without a per-candidate ``writeto`` and
the PNGs rendered with shared zscale limits must be byte for byte what the plain path gives.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from astrid.pipeline.stages.stamps import _fits_bytes, _stamp_wcs
from astrid.science.cutouts import CutoutError, display_limits, stamp, triplet_png


def _header(x0: int, y0: int) -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.1, 2.2]
    w.wcs.crpix = [1024.5 - x0, 1020.3 - y0]
    w.wcs.cd = [[-7.3e-5, 1e-6], [1.2e-6, 7.3e-5]]
    return w.to_header(relax=True)


def _stamps(x: float, y: float, size: int = 63) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    new = rng.normal(100.0, 5.0, (200, 200))  # float64: the writer must cast to float32
    ref = rng.normal(100.0, 4.0, (200, 200)).astype(np.float32)
    diff = (new - ref).astype(np.float32)
    diff[:20, :20] = np.nan
    return {n: stamp(a, x, y, size) for n, a in (("new", new), ("ref", ref), ("diff", diff))}


def _astropy_bytes(stamps: dict[str, np.ndarray], header: fits.Header) -> bytes:
    hdus = [fits.PrimaryHDU()] + [
        fits.ImageHDU(st.astype(np.float32), header=header, name=n.upper())
        for n, st in stamps.items()
    ]
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


@pytest.mark.parametrize(("x", "y"), [(100.0, 100.0), (3.2, 190.7), (-5.0, 10.0)])
def test_fits_bytes_equal_astropy_writeto(x: float, y: float) -> None:
    stamps = _stamps(x, y)
    header = _header(int(x) - 31, int(y) - 31)
    fast = _fits_bytes(stamps, header)
    assert fast == _astropy_bytes(stamps, header)
    with fits.open(io.BytesIO(fast)) as hdul:
        assert [h.name for h in hdul[1:]] == ["NEW", "REF", "DIFF"]
        np.testing.assert_array_equal(hdul["DIFF"].data, stamps["diff"].astype(np.float32))


def test_fits_bytes_of_unequal_shapes_equal_astropy_writeto() -> None:
    stamps = _stamps(100.0, 100.0)
    stamps["diff"] = stamps["diff"][:, :40]
    header = _header(0, 0)
    assert _fits_bytes(stamps, header) == _astropy_bytes(stamps, header)


def test_triplet_png_with_given_limits_is_the_same_picture() -> None:
    stamps = list(_stamps(10.0, 12.0).values())
    lims = [display_limits(s) for s in stamps]
    wcs = WCS(_header(0, 0))
    assert triplet_png(stamps, wcs=wcs, limits=lims) == triplet_png(stamps, wcs=wcs)
    flags = [False, True, True]
    assert triplet_png(stamps, common_limits=flags, limits=lims) == triplet_png(
        stamps, common_limits=flags
    )
    with pytest.raises(CutoutError, match="2 display limits for 3 stamps"):
        triplet_png(stamps, limits=lims[:2])


def test_fits_bytes_of_many_candidates_equal_astropy_writeto() -> None:
    """One verified header is reused for an observation's candidates (only the reference
    pixel moves); each candidate's bytes are still exactly astropy's, including after the
    grid changes (a new template) and back."""
    cases = [(100.0, 100.0, 0), (3.2, 190.7, 0), (-5.0, 10.0, 0), (150.5, 7.25, 1)]
    cases += [(60.0, 61.0, 0), (0.0, 0.0, 1), (199.9, 199.9, 0)]
    for x, y, grid in cases:
        stamps = _stamps(x, y)
        header = _header(int(x) - 31, int(y) - 31)
        if grid:  # another observation: another grid (a card other than CRPIX changes)
            header["CRVAL1"] = 151.25
        header["CRPIX1"] = header["CRPIX1"] + 1.0 / 3.0  # a value with all its digits
        assert _fits_bytes(stamps, header) == _astropy_bytes(stamps, header), (x, y, grid)


def test_fits_bytes_of_a_header_without_a_reference_pixel_equal_astropy_writeto() -> None:
    stamps = _stamps(100.0, 100.0)
    header = _header(0, 0)
    del header["CRPIX2"]
    assert _fits_bytes(stamps, header) == _astropy_bytes(stamps, header)


def test_stamp_wcs_is_the_parsed_header_wcs() -> None:
    """The stamps' WCS copied from the observation's first one (with the reference pixel
    moved) maps pixels exactly as ``WCS(header)`` and draws the same triplet."""
    pix = np.array([[0.0, 0.0], [31.0, 31.0], [62.0, 5.5]])
    for x0, y0 in [(0, 0), (969, 10), (-30, 400), (1500, 1500)]:
        stamps = _stamps(float(x0) + 31, float(y0) + 31)
        header = _header(x0, y0)
        header["CRPIX2"] = header["CRPIX2"] + 1.0 / 7.0
        fast, parsed = _stamp_wcs(stamps, header), WCS(header)
        assert np.array_equal(fast.wcs_pix2world(pix, 0), parsed.wcs_pix2world(pix, 0))
        assert np.array_equal(fast.wcs.crpix, parsed.wcs.crpix)
        arrays = list(stamps.values())
        assert triplet_png(arrays, wcs=fast) == triplet_png(arrays, wcs=parsed)
