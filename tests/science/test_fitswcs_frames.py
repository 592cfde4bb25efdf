"""WCSs in other celestial frames (galactic, FK4 B1950, ecliptic) are re-expressed in ICRS.

Every ``pixel_to_world_values`` in AstrID is read as ICRS RA/Dec (catalogue positions,
alignment, cone search), so a galactic image used to be placed at the RA/Dec equal to its
(l, b): a silent wrong result. The checks here compare :func:`celestial_wcs` against
astropy's own frame transformations of the header's WCS, over pixels up to ~1° from the
reference point.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import fit_wcs_from_points
from typer.testing import CliRunner

from astrid.cli import app
from astrid.science.fitserrors import InvalidWCSError, NoCelestialWCSError
from astrid.science.fitswcs import celestial_wcs, validate_wcs
from astrid.science.simulate import simulate_pair
from astrid.science.simulate_image import write_simulated


def _header(ctype1: str, ctype2: str, crval: tuple[float, float], **extra: object) -> fits.Header:
    h = fits.Header()
    h["NAXIS"], h["NAXIS1"], h["NAXIS2"] = 2, 2048, 2048
    h["CTYPE1"], h["CTYPE2"] = ctype1, ctype2
    h["CRVAL1"], h["CRVAL2"] = crval
    h["CRPIX1"], h["CRPIX2"] = 1024.5, 1020.0
    # a rotated, slightly skewed CD matrix (0.27"/px, 30°), as a real camera gives
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    scale = 0.27 / 3600
    h["CD1_1"], h["CD1_2"] = -scale * c, scale * s * 1.01
    h["CD2_1"], h["CD2_2"] = scale * s, scale * c
    for k, v in extra.items():
        h[k] = v
    return h


_GRID = np.mgrid[-6000:8000:500, -6000:8000:500].astype(float)  # pixels up to ~0.9° away


def _max_separation_arcsec(header: fits.Header) -> float:
    astropy_world = WCS(header).celestial.pixel_to_world(_GRID[1], _GRID[0]).icrs
    ra, dec = celestial_wcs(header).pixel_to_world_values(_GRID[1], _GRID[0])
    return float(np.max(astropy_world.separation(SkyCoord(ra, dec, unit="deg")).arcsec))


@pytest.mark.parametrize("proj", ["TAN", "SIN", "ZEA", "ARC", "STG"])
@pytest.mark.parametrize("crval", [(120.0, 35.0), (300.0, -70.0), (5.0, 1.0)])
def test_galactic_zenithal_wcs_maps_to_the_same_icrs_positions(
    proj: str, crval: tuple[float, float]
) -> None:
    h = _header(f"GLON-{proj}", f"GLAT-{proj}", crval)
    wcs = celestial_wcs(h)
    assert wcs.wcs.ctype[0] == f"RA---{proj}" and wcs.wcs.ctype[1] == f"DEC--{proj}"
    # a frame change of a zenithal projection is exact: float64 rounding only
    assert _max_separation_arcsec(h) < 1e-5


def test_fk4_b1950_wcs_is_precessed_to_icrs() -> None:
    h = _header("RA---TAN", "DEC--TAN", (150.0, 2.0), RADESYS="FK4", EQUINOX=1950.0)
    ra, dec = celestial_wcs(h).pixel_to_world_values(1023.5, 1019.0)
    # B1950 -> ICRS moves (150, 2) by ~0.7°: the old reading was that far off
    expected = SkyCoord(150.0, 2.0, unit="deg", frame="fk4").icrs
    assert SkyCoord(ra, dec, unit="deg").separation(expected).arcsec < 1e-3
    assert expected.separation(SkyCoord(150.0, 2.0, unit="deg")).deg > 0.5
    # FK4 is a rotation plus the E-terms of aberration (< 0.35"), which a WCS cannot carry:
    # off the reference point the mapping holds to the E-terms' gradient: 3.3 mas at 0.9°
    assert _max_separation_arcsec(h) < 5e-3


def test_ecliptic_wcs_uses_the_mean_ecliptic_of_its_equinox() -> None:
    from astropy.coordinates import BarycentricMeanEcliptic

    h = _header("ELON-TAN", "ELAT-TAN", (152.0, 10.0))
    ra, dec = celestial_wcs(h).pixel_to_world_values(1023.5, 1019.0)
    expected = SkyCoord(152.0, 10.0, unit="deg", frame=BarycentricMeanEcliptic()).icrs
    assert SkyCoord(ra, dec, unit="deg").separation(expected).arcsec < 1e-3


def test_icrs_and_fk5_j2000_are_left_as_read() -> None:
    for extra in ({}, {"RADESYS": "ICRS"}, {"RADESYS": "FK5", "EQUINOX": 2000.0}):
        h = _header("RA---TAN", "DEC--TAN", (150.0, 2.0), **extra)
        wcs = celestial_wcs(h)
        assert wcs.wcs.crval[0] == 150.0 and wcs.wcs.crval[1] == 2.0
        assert wcs.wcs.lonpole == WCS(h).wcs.lonpole


def test_non_zenithal_galactic_and_unknown_frames_are_named_errors() -> None:
    car = _header("GLON-CAR", "GLAT-CAR", (120.0, 0.0))
    with pytest.raises(InvalidWCSError, match="galactic coordinates with a CAR projection"):
        celestial_wcs(car)
    helio = _header("HLON-TAN", "HLAT-TAN", (10.0, 5.0))
    with pytest.raises(InvalidWCSError, match="'HLON-TAN'"):
        celestial_wcs(helio)


def test_a_latitude_out_of_range_and_wcslib_failures_are_one_line() -> None:
    bad = _header("RA---TAN", "DEC--TAN", (150.0, 95.0))
    with pytest.raises(InvalidWCSError, match=r"CRVAL2 = 95.0 is not a latitude"):
        validate_wcs(bad, (2048, 2048))
    swapped = _header("DEC--TAN", "RA---TAN", (150.0, 2.0))
    with pytest.raises(InvalidWCSError, match=r"CRVAL1 = 150.0 is not a latitude"):
        validate_wcs(swapped, (2048, 2048))
    # straight into the parser (no validate_wcs first): wcslib's report, without C locations
    with pytest.raises(NoCelestialWCSError) as info:
        celestial_wcs(swapped)
    assert "\n" not in str(info.value) and ".c:" not in str(info.value)
    assert "Ill-conditioned" in str(info.value)


def test_detect_on_a_galactic_wcs_finds_what_the_icrs_one_finds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The same new image with its WCS refitted in galactic coordinates: the same candidates
    at the same ICRS positions (it was refused as 'no overlap', or worse, placed at the
    RA/Dec equal to its l, b)."""
    p = simulate_pair((256, 256), 150, seed=17, n_transients=6, transient_flux_range=(3000, 6000))
    write_simulated(p.new, tmp_path / "new.fits", extensions=False)
    write_simulated(p.ref, tmp_path / "ref.fits", extensions=False)
    icrs = WCS(p.new.header).celestial
    y, x = np.mgrid[0:256:16, 0:256:16].astype(float)
    gal = icrs.pixel_to_world(x.ravel(), y.ravel()).galactic
    fitted = fit_wcs_from_points((x.ravel(), y.ravel()), gal, projection="TAN")
    assert fitted.wcs.ctype[0] == "GLON-TAN"
    header = p.new.header.copy()
    for key in list(header):
        if key[:5] in ("CTYPE", "CRVAL", "CRPIX", "CDELT", "CUNIT", "RADES", "EQUIN") or key[
            :2
        ] in ("CD", "PC"):
            del header[key]
    header.update(fitted.to_header())
    fits.PrimaryHDU(p.new.data, header).writeto(tmp_path / "new_gal.fits")
    runner = CliRunner()
    tables = []
    for name in ("new.fits", "new_gal.fits"):
        out = tmp_path / f"{name}.csv"
        result = runner.invoke(
            app, ["detect", str(tmp_path / name), str(tmp_path / "ref.fits"), "-o", str(out)]
        )
        assert result.exit_code == 0, result.output
        tables.append(np.genfromtxt(out, delimiter=",", names=True))
    a, b = tables
    assert len(a) == len(b) >= 5
    order_a, order_b = np.argsort(a["ra"]), np.argsort(b["ra"])
    sep = SkyCoord(a["ra"][order_a], a["dec"][order_a], unit="deg").separation(
        SkyCoord(b["ra"][order_b], b["dec"][order_b], unit="deg")
    )
    assert np.max(sep.arcsec) < 0.01
    assert np.allclose(a["snr"][order_a], b["snr"][order_b], rtol=1e-3)
