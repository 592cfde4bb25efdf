"""FITS reading/writing in its many flavours, metadata conventions and bad input."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from astrid.science.fitsio import (
    InvalidFitsError,
    NoCelestialWCSError,
    NoImageDataError,
    read_image,
    write_image,
)
from astrid.science.fitsmeta import detect_survey, image_metadata
from astrid.science.fitswcs import celestial_wcs, dss_plate_wcs
from astrid.science.simulate_image import simulate_star_field
from astrid.science.simulate_model import make_wcs


@pytest.fixture(scope="module")
def sim():
    return simulate_star_field((40, 50), n_stars=10, seed=2)


def test_plain_roundtrip_with_wcs_and_header(tmp_path: Path, sim) -> None:
    data = write_image(tmp_path / "a.fits", sim.data, header=sim.header)
    for source in (tmp_path / "a.fits", data):
        img = read_image(source)
        assert np.array_equal(img.data, sim.data)
        assert img.header["GAIN"] == sim.header["GAIN"]
        x, y = img.wcs.world_to_pixel_values(sim.stars["ra"], sim.stars["dec"])
        assert np.allclose(x, sim.stars["x"]) and np.allclose(y, sim.stars["y"])


def test_wcs_argument_replaces_header_wcs(sim) -> None:
    other = make_wcs((40, 50), ra=20.0, dec=-5.0)
    img = read_image(write_image(None, sim.data, header=sim.header, wcs=other))
    assert img.wcs.wcs.crval[0] == pytest.approx(20.0)


def test_gzip_file_and_bytes(tmp_path: Path, sim) -> None:
    write_image(tmp_path / "a.fits.gz", sim.data, header=sim.header)
    raw = (tmp_path / "a.fits.gz").read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    assert np.array_equal(read_image(tmp_path / "a.fits.gz").data, sim.data)
    assert np.array_equal(read_image(raw).data, sim.data)


def test_tile_compressed_lossless(tmp_path: Path, sim) -> None:
    data = sim.data.copy()
    data[3, 4] = np.nan
    path = tmp_path / "a.fits.fz"
    write_image(path, data, header=sim.header, compress=True)
    img = read_image(path)
    assert img.hdu_name == "SCI" and img.hdu_index == 1
    assert np.array_equal(img.data, data, equal_nan=True)
    ints = (np.arange(200).reshape(10, 20) * 37 % 5000).astype(np.int16)
    assert np.array_equal(read_image(write_image(None, ints, compress=True)).data, ints)


def test_big_endian_bzero_bscale_and_nan() -> None:
    raw = np.arange(12, dtype=">i2").reshape(3, 4)
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BZERO"] = 32768
    hdu.header["BSCALE"] = 2
    data = fits.HDUList([hdu])
    import io

    buf = io.BytesIO()
    data.writeto(buf)
    img = read_image(buf.getvalue())
    assert img.data.dtype == np.float32 and img.data.dtype.isnative
    assert np.array_equal(img.data, raw.astype(np.float32) * 2 + 32768)
    big = np.array([[1.5, np.nan], [3.0, -2.0]], dtype=">f8")
    out = read_image(write_image(None, big))
    assert out.data.dtype.isnative
    assert np.array_equal(out.data, big.astype(np.float32), equal_nan=True)


def test_multi_extension_picks_sci_and_merges_primary(sim) -> None:
    primary = fits.PrimaryHDU()
    primary.header["OBSERVER"] = "Blanco"
    hdul = fits.HDUList(
        [
            primary,
            fits.ImageHDU(np.zeros((5, 5)), name="WHT"),
            fits.ImageHDU(sim.data, header=sim.header, name="SCI"),
            fits.BinTableHDU.from_columns([fits.Column("a", "E", array=np.zeros(3))]),
        ]
    )
    import io

    buf = io.BytesIO()
    hdul.writeto(buf)
    img = read_image(buf.getvalue())
    assert img.hdu_name == "SCI" and img.hdu_index == 2
    assert img.header["OBSERVER"] == "Blanco"
    assert read_image(buf.getvalue(), hdu="WHT").data.shape == (5, 5)


def test_extra_hdus_written(sim) -> None:
    data = write_image(
        None, sim.data, header=sim.header, extra_hdus=[fits.ImageHDU(sim.variance, name="VAR")]
    )
    assert np.array_equal(read_image(data, hdu="VAR").data, sim.variance)


def test_corrupt_and_truncated(tmp_path: Path, sim) -> None:
    good = write_image(None, sim.data, header=sim.header)
    with pytest.raises(InvalidFitsError, match="data unit is truncated"):
        read_image(good[: len(good) // 2])
    with pytest.raises(InvalidFitsError):
        read_image(b"this is not FITS at all" * 200)
    with pytest.raises(InvalidFitsError):
        read_image(gzip.compress(good)[:500])
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.fits")


def test_cube_and_table_raise_no_image_data() -> None:
    import io

    buf = io.BytesIO()
    fits.PrimaryHDU(np.zeros((3, 4, 5))).writeto(buf)
    with pytest.raises(NoImageDataError, match="2-D"):
        read_image(buf.getvalue())
    buf = io.BytesIO()
    fits.HDUList(
        [fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("a", "E", array=[1.0])])]
    ).writeto(buf)
    with pytest.raises(NoImageDataError):
        read_image(buf.getvalue())
    with pytest.raises(NoImageDataError):
        write_image(None, np.zeros((2, 3, 4)))


def test_degenerate_extra_axes_are_one_image(sim) -> None:
    """A radio-style (Stokes, frequency, y, x) image with single planes, or a one-plane
    cube, is one 2-D image; its celestial WCS is kept (extra axes dropped)."""
    import io

    header = sim.header.copy()
    for key, value in (("CTYPE3", "FREQ"), ("CRVAL3", 1.4e9), ("CDELT3", 1e6), ("CRPIX3", 1.0),
                       ("CTYPE4", "STOKES"), ("CRVAL4", 1.0), ("CDELT4", 1.0),
                       ("CRPIX4", 1.0)):  # fmt: skip
        header[key] = value
    buf = io.BytesIO()
    fits.PrimaryHDU(sim.data[None, None], header=header).writeto(buf)
    img = read_image(buf.getvalue())
    assert img.data.shape == sim.data.shape and np.array_equal(img.data, sim.data)
    assert img.wcs.naxis == 2
    x, y = img.wcs.world_to_pixel_values(sim.stars["ra"], sim.stars["dec"])
    assert np.allclose(x, sim.stars["x"]) and np.allclose(y, sim.stars["y"])
    # several planes are not one image: a named refusal, as before
    buf = io.BytesIO()
    fits.PrimaryHDU(np.stack([sim.data, sim.data])).writeto(buf)
    with pytest.raises(NoImageDataError, match="2-D"):
        read_image(buf.getvalue())


def test_wcs_is_parsed_once_per_image(sim) -> None:
    # read_image validates the WCS and keeps it: every later ``img.wcs`` is that object
    img = read_image(write_image(None, sim.data, header=sim.header))
    assert img.wcs is img.wcs
    want = celestial_wcs(img.header)
    np.testing.assert_array_equal(img.wcs.wcs.crval, want.wcs.crval)
    np.testing.assert_array_equal(img.wcs.pixel_scale_matrix, want.pixel_scale_matrix)
    # an image that is not validated builds it at first use, once
    plane = read_image(write_image(None, sim.data, header=sim.header), hdu=0)
    assert "wcs" not in plane.__dict__
    assert plane.wcs is plane.wcs


def test_no_celestial_wcs() -> None:
    img = read_image(write_image(None, np.ones((8, 8))))
    with pytest.raises(NoCelestialWCSError, match="no celestial WCS"):
        _ = img.wcs
    with pytest.raises(NoCelestialWCSError):
        image_metadata(img.header, img.data.shape)


def _decam_header() -> fits.Header:
    h = make_wcs((64, 64), ra=318.1, dec=-66.0, pixel_scale=0.263).to_header()
    h.update(
        {
            "FPA": "DECAM_BKP4",
            "FILTER": "i DECam SDSS c0003 7835.0 1470.0",
            "GAINA": 3.98,
            "GAINB": 4.02,
            "SATURATA": 46536.0,
            "SATURATB": 42408.0,
            "RDNOISEA": 11.4,
            "RDNOISEB": 11.8,
            "MJD-OBS": 58334.39,
            "EXPTIME": 330.0,
        }
    )
    return h


def test_decam_metadata() -> None:
    meta = image_metadata(_decam_header(), (64, 64))
    assert meta.survey == "decam" and meta.band == "i"
    assert meta.gain == pytest.approx(4.0)
    assert meta.saturation == 42408.0 and meta.read_noise == 11.8
    assert meta.pixel_scale == pytest.approx(0.263)
    assert meta.ra == pytest.approx(318.1) and meta.dec == pytest.approx(-66.0)


def test_nircam_metadata() -> None:
    h = make_wcs((64, 64), ra=3.5, dec=-30.3, pixel_scale=0.0308).to_header()
    h.update(
        {
            "TELESCOP": "JWST",
            "INSTRUME": "NIRCAM",
            "FILTER": "F200W",
            "BUNIT": "MJy/sr",
            "PIXAR_SR": 2.23e-14,
            "XPOSURE": 44579.0,
            "MJD-AVG": 59759.41,
        }
    )
    meta = image_metadata(h, (64, 64))
    assert meta.survey == "nircam" and meta.band == "F200W" and meta.bunit == "MJy/sr"
    assert meta.exposure_time == 44579.0 and meta.mjd == pytest.approx(59759.41)
    assert meta.pixel_area_sr == 2.23e-14
    # 1 MJy/sr over one pixel of 2.23e-14 sr is 2.23e-8 Jy: AB = -2.5 log10(2.23e-8 / 3631)
    assert meta.zeropoint == pytest.approx(-2.5 * math.log10(2.23e-8 / 3631.0))


def test_ztf_metadata() -> None:
    h = make_wcs((64, 64), ra=200.0, dec=40.0, pixel_scale=1.01).to_header()
    h.update(
        {
            "ORIGIN": "Zwicky Transient Facility",
            "INSTRUME": "ZTF/MOSAIC",
            "FILTER": "ZTF_r",
            "MAGZP": 26.3,
            "READNOI": 8.0,
            "OBSMJD": 58800.25,
            "EXPTIME": 30.0,
            "GAIN": 6.2,
        }
    )
    meta = image_metadata(h, (64, 64))
    assert meta.survey == "ztf" and meta.band == "r"
    assert meta.zeropoint == 26.3 and meta.read_noise == 8.0 and meta.mjd == 58800.25


def _dss_header(nx: int = 300, ny: int = 300) -> fits.Header:
    """A synthetic linear DSS plate solution: 67.2 arcsec/mm, 25 µm pixels, centred plate."""
    scale, pix = 67.2, 25.0
    h = fits.Header()
    h["NAXIS"] = 2
    h["NAXIS1"], h["NAXIS2"] = nx, ny
    h.update(
        {
            "PLTLABEL": "SJ01234",
            "PLTRAH": 10,
            "PLTRAM": 0,
            "PLTRAS": 0.0,
            "PLTDECSN": "+",
            "PLTDECD": 20,
            "PLTDECM": 0,
            "PLTDECS": 0.0,
            "PLTSCALE": scale,
            "XPIXELSZ": pix,
            "YPIXELSZ": pix,
            "CNPIX1": 0,
            "CNPIX2": 0,
            "PPO3": pix * nx / 2.0,
            "PPO6": pix * ny / 2.0,
            "EXPOSURE": 50.0,
            "EMULSION": "IIIaJ",
            "DATE-OBS": "1990-01-01T00:00:00",
        }
    )
    for i in range(1, 14):
        h[f"AMDX{i}"] = scale if i == 1 else 0.0
        h[f"AMDY{i}"] = scale if i == 1 else 0.0
    return h


def test_dss_plate_solution_becomes_wcs() -> None:
    h = _dss_header()
    assert detect_survey(h) == "dss"
    wcs = celestial_wcs(h)
    # plate centre: pixel where x = y = 0 mm, i.e. FITS (nx/2 + 0.5) -> 0-based nx/2 - 0.5
    ra, dec = wcs.pixel_to_world_values(149.5, 149.5)
    assert ra == pytest.approx(150.0, abs=1e-5) and dec == pytest.approx(20.0, abs=1e-5)
    # 67.2 arcsec/mm × 25 µm = 1.68 arcsec per pixel; x grows to the west (RA decreases)
    ra2, _ = wcs.pixel_to_world_values(159.5, 149.5)
    assert (ra2 - ra) * math.cos(math.radians(20.0)) * 3600 == pytest.approx(-16.8, rel=1e-3)
    meta = image_metadata(h, (300, 300))
    assert meta.pixel_scale == pytest.approx(1.68)
    assert meta.exposure_time == 3000.0 and meta.band == "IIIaJ"
    del h["AMDX5"]
    with pytest.raises(NoCelestialWCSError, match="incomplete"):
        dss_plate_wcs(h)


def test_generic_metadata_from_date_obs(sim) -> None:
    h = sim.header.copy()
    del h["MJD-OBS"]
    h["DATE-OBS"] = "2020-01-01T12:00:00"
    meta = image_metadata(h, sim.shape)
    assert meta.survey == "generic"
    assert meta.mjd == pytest.approx(58849.5)
    assert meta.zeropoint == pytest.approx(25.0)


def test_a_mosaic_is_refused_but_science_planes_with_their_companions_are_read() -> None:
    """Several same-shaped images without a SCI name (a mosaic's CCDs) are refused by name,
    not read as the first CCD alone; an image with its ERR/DQ/VARIANCE/MASK planes, or with
    a small PSF image beside it, is read as before; ``hdu=`` picks one CCD."""
    import io

    from astrid.science.fitsio import AmbiguousImageError

    rng = np.random.default_rng(3)
    plane = rng.normal(100.0, 5.0, (30, 40)).astype(np.float32)

    def fits_bytes(*hdus: fits.ImageHDU) -> bytes:
        buf = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), *hdus]).writeto(buf)
        return buf.getvalue()

    ccds = [fits.ImageHDU(plane + i, name=f"S{i}") for i in range(1, 9)]
    with pytest.raises(AmbiguousImageError) as err:
        read_image(fits_bytes(*ccds))
    text = str(err.value)
    assert "8 science images of the same shape" in text and "1 (S1)" in text
    assert "2 more" in text and "SCI" in (err.value.hint or "")
    assert "one observation per CCD" in (err.value.hint or "")
    assert np.allclose(read_image(fits_bytes(*ccds), hdu="S3").data, plane + 3)
    companions = [fits.ImageHDU(plane * 0 + 1, name=n) for n in ("ERR", "DQ", "VARIANCE")]
    for first in (fits.ImageHDU(plane, name="CCD"), fits.ImageHDU(plane)):
        got = read_image(fits_bytes(first, *companions, fits.ImageHDU(plane, name="MASK")))
        assert np.allclose(got.data, plane)
    psf = fits.ImageHDU(np.ones((9, 9), np.float32), name="MODEL")
    assert np.allclose(read_image(fits_bytes(fits.ImageHDU(plane), psf)).data, plane)
    # named SCI among CCDs: the SCI one, as before
    named = read_image(fits_bytes(ccds[0], fits.ImageHDU(plane + 7, name="SCI"), ccds[1]))
    assert np.allclose(named.data, plane + 7)


def test_science_hdus_lists_a_mosaics_ccds_and_each_ccds_own_planes() -> None:
    """``science_hdus``: every CCD of a mosaic (not its planes, nor images of other shapes),
    one entry for an ordinary file; ``companion_hdus``: the MASK/VARIANCE of that CCD by name
    (``N4_MASK``, ``VARIANCE.N4``...), a bare ``MASK`` only in an ordinary file."""
    import io

    from astrid.science.fitsio import NoImageDataError, companion_hdus, science_hdus

    plane = np.ones((30, 40), np.float32)

    def fits_bytes(*hdus: fits.ImageHDU) -> bytes:
        buf = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), *hdus]).writeto(buf)
        return buf.getvalue()

    mosaic = fits_bytes(
        fits.ImageHDU(plane, name="N4"),  # 1
        fits.ImageHDU(plane, name="N4_MASK"),  # 2
        fits.ImageHDU(plane, name="N5"),  # 3
        fits.ImageHDU(plane, name="VARIANCE.N5"),  # 4
        fits.ImageHDU(plane, name="n5-mask"),  # 5
        fits.ImageHDU(np.ones((9, 9), np.float32), name="S1"),  # 6: another shape
        fits.ImageHDU(plane, name="MASK"),  # 7: belongs to no CCD
        fits.ImageHDU(plane, name="S2"),  # 8
    )
    assert science_hdus(mosaic) == [(1, "N4"), (3, "N5"), (8, "S2")]
    assert companion_hdus(mosaic, 1) == {"MASK": 2}
    assert companion_hdus(mosaic, 3) == {"MASK": 5, "VARIANCE": 4}
    assert companion_hdus(mosaic, 8) == {} and companion_hdus(mosaic, 6) == {}
    single = fits_bytes(
        fits.ImageHDU(plane, name="CCD"), fits.ImageHDU(plane, name="VARIANCE"),
        fits.ImageHDU(plane, name="MASK"),
    )  # fmt: skip
    assert science_hdus(single) == [(1, "CCD")]
    assert companion_hdus(single, 1) == {"VARIANCE": 2, "MASK": 3}
    assert science_hdus(fits_bytes(fits.ImageHDU(plane, name="SCI"), fits.ImageHDU(plane))) == [
        (1, "SCI")
    ]
    with pytest.raises(NoImageDataError):
        science_hdus(fits_bytes())


def test_uncompressed_removes_a_gzip_or_bzip2_layer_once() -> None:
    import bz2

    from astrid.science.fitsio import InvalidFitsError, uncompressed

    plain = write_image(None, np.ones((30, 40), np.float32))
    assert uncompressed(plain) is plain
    assert uncompressed(gzip.compress(plain)) == plain == uncompressed(bz2.compress(plain))
    with pytest.raises(InvalidFitsError):
        uncompressed(gzip.compress(plain)[:-40])


@pytest.mark.parametrize(
    ("cards", "mjd"),
    [
        ({"MJD-OBS": 59030.25}, 59030.25),
        ({"JD": 2459030.75}, 59030.25),
        ({"DATE-OBS": "2020-06-29T06:00:00"}, 59029.25),
        ({"DATE-OBS": "2020-06-29", "TIME-OBS": "06:00:00"}, 59029.25),
        ({"DATE-BEG": "2020-06-29T06:00:00"}, 59029.25),
        # the deprecated pre-1999 form: DD/MM/YY of 19YY, with the time in UT
        ({"DATE-OBS": "29/06/95", "UT": "06:00:00"}, 49897.25),
        # a placeholder MJD-OBS = 0 does not hide the real date
        ({"MJD-OBS": 0.0, "DATE-OBS": "2020-06-29T06:00:00"}, 59029.25),
        ({"DATE-OBS": "not a date"}, None),
        ({}, None),
    ],
)
def test_observation_time_from_the_keywords_other_pipelines_write(
    cards: dict[str, object], mjd: float | None
) -> None:
    header = make_wcs((64, 64), ra=150.0, dec=2.0, pixel_scale=0.5).to_header()
    for key, value in cards.items():
        header[key] = value
    got = image_metadata(header, (64, 64)).mjd
    assert got == (None if mjd is None else pytest.approx(mjd, abs=1e-6))


def _hst_like(chips: int, plane: np.ndarray) -> bytes:
    """An HST ``_flt``-style file: ``SCI,n``, ``ERR,n``, ``DQ,n`` for each chip ``n``."""
    import io

    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU()]
    for n in range(1, chips + 1):
        hdus.append(fits.ImageHDU(plane + 10 * n, name="SCI", ver=n))
        hdus.append(fits.ImageHDU(plane * 0 + n, name="ERR", ver=n))
        hdus.append(fits.ImageHDU((plane * 0 + n).astype(np.int16), name="DQ", ver=n))
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def test_hst_chips_told_apart_by_extver_are_one_image_each() -> None:
    """Two SCI images with EXTVER 1 and 2: the scan records EXTVER, ``science_hdus`` lists
    both chips as ``SCI,1``/``SCI,2``, ``companion_hdus`` gives each chip its own ERR/DQ,
    ``read_image`` reads ``SCI,2`` by name and refuses to pick one silently; one SCI
    (EXTVER 1, JWST's layout) is an ordinary file as before."""
    from astrid.science.fitsio import AmbiguousImageError, companion_hdus, science_hdus
    from astrid.science.fitsscan import scan_fits

    plane = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    two = _hst_like(2, plane)
    assert [(h.name, h.extver) for h in scan_fits(two).hdus[1:]] == [
        ("SCI", 1), ("ERR", 1), ("DQ", 1), ("SCI", 2), ("ERR", 2), ("DQ", 2),
    ]  # fmt: skip
    assert scan_fits(two).hdus[0].extver == 1  # no EXTVER: 1
    assert science_hdus(two) == [(1, "SCI,1"), (4, "SCI,2")]
    kinds = ("MASK", "VARIANCE", "DQ", "ERR")
    assert companion_hdus(two, 1, kinds) == {"DQ": 3, "ERR": 2}
    assert companion_hdus(two, 4, kinds) == {"DQ": 6, "ERR": 5}
    assert companion_hdus(two, 5, kinds) == {}  # a plane is no chip
    for hdu in ("SCI,2", ("SCI", 2), 4):
        chip = read_image(two, hdu=hdu, validate=True)
        assert chip.hdu_index == 4 and chip.hdu_name == "SCI,2"
        assert np.allclose(chip.data, plane + 20)
    assert read_image(two, hdu="sci, 1").hdu_name == "SCI,1"
    with pytest.raises(AmbiguousImageError) as err:
        read_image(two)
    assert "2 chips (HDUs 1 (SCI,1), 4 (SCI,2))" in str(err.value)
    assert "--hdu SCI,2" in (err.value.hint or "")
    with pytest.raises(NoImageDataError, match="SCI,3"):
        read_image(two, hdu="SCI,3")

    # an EXTVER that is no positive integer counts as 1 (the FITS default): one SCI,1 twice
    odd = bytearray(two)
    at = odd.index(b"EXTVER  =                    2")
    odd[at : at + 30] = b"EXTVER  = 'two'               "
    assert [h.extver for h in scan_fits(bytes(odd)).hdus] == [1, 1, 1, 1, 1, 2, 2]
    assert science_hdus(bytes(odd)) == [(1, "SCI")]

    one = _hst_like(1, plane)  # JWST-style: one SCI (EXTVER 1), its ERR and DQ
    assert science_hdus(one) == [(1, "SCI")]
    assert companion_hdus(one, 1, kinds) == {"DQ": 3, "ERR": 2}
    single = read_image(one)
    assert single.hdu_index == 1 and single.hdu_name == "SCI"
    assert np.allclose(single.data, plane + 10)


def test_big_endian_planes_are_read_natively_with_the_same_values(tmp_path: Path) -> None:
    # float32 pixels are byte-swapped in astropy's own buffer (no fresh copy): the values
    # are the file's, native-endian, from a path, bytes or a gzipped file alike
    rng = np.random.default_rng(8)
    pix = rng.normal(100.0, 5.0, (30, 40)).astype(np.float32)
    pix[3, 4] = np.nan
    dq = rng.integers(0, 4, (30, 40)).astype(np.uint32)
    dq[5, 6] = 2**30 + 1  # a DO_NOT_USE pixel with a high bit: not representable in float32
    path = tmp_path / "img.fits"
    fits.HDUList([fits.PrimaryHDU(pix), fits.ImageHDU(dq, name="DQ")]).writeto(path)
    gz = tmp_path / "img.fits.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    for source in (path, path.read_bytes(), gz):
        img = read_image(source, validate=False)
        assert img.data.dtype == np.float32 and img.data.dtype.isnative
        np.testing.assert_array_equal(img.data, pix)
        plane = read_image(source, hdu="DQ", as_float=False).data
        assert plane.dtype == np.uint32 and plane.dtype.isnative
        np.testing.assert_array_equal(plane, dq)
        assert read_image(source, hdu="DQ").data.dtype == np.float32  # the default


def test_file_mask_keeps_dq_bits_above_float32_precision(tmp_path: Path) -> None:
    from astrid.science.prepared_reference import file_mask_of

    dq = np.zeros((20, 20), np.uint32)
    dq[2, 3] = 2**30 + 1  # DO_NOT_USE and a high informational bit
    dq[4, 5] = 2**30  # only the high bit: kept for JWST
    dq[6, 7] = 4  # JUMP_DET: kept for JWST
    path = tmp_path / "jwst.fits"
    head = fits.Header({"TELESCOP": "JWST"})
    pix = np.ones((20, 20), np.float32)
    fits.HDUList([fits.PrimaryHDU(pix, header=head), fits.ImageHDU(dq, name="DQ")]).writeto(path)
    jwst = file_mask_of(path, (20, 20), header=head)
    assert jwst is not None and np.flatnonzero(jwst).tolist() == [2 * 20 + 3]
    anybit = file_mask_of(path, (20, 20))
    assert anybit is not None and anybit.sum() == 3
