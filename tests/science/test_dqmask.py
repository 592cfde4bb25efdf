"""Data-quality planes read by mission: JWST's DO_NOT_USE, any bit elsewhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from astrid.science.dqmask import dq_mask


def test_jwst_excludes_do_not_use_and_others_any_set_bit() -> None:
    dq = np.array([[0, 1, 4, 5], [2, 1024, 0, 513]], dtype=np.uint32)
    jwst = fits.Header({"TELESCOP": "JWST"})
    assert dq_mask(dq, jwst).tolist() == [[False, True, False, True], [False, False, False, True]]
    hst = fits.Header({"TELESCOP": "HST"})
    assert dq_mask(dq, hst).tolist() == (dq != 0).tolist()
    assert dq_mask(dq).tolist() == (dq != 0).tolist()  # no header: any bit


def test_float_planes_and_nan() -> None:
    plane = np.array([0.0, 1.0, np.nan, 4.0])
    assert dq_mask(plane).tolist() == [False, True, True, True]
    assert dq_mask(plane, fits.Header({"TELESCOP": " jwst "})).tolist() == [
        False,
        True,
        True,
        False,
    ]


# Every one of the 16 DQ bits, by HST instrument: the bits that keep the pixel (module
# docstring of astrid.science.dqmask: STScI's drizzle "good" bits, WFPC2's repaired warm
# pixel; STIS without SDQFLAGS: none, calstis's default 32767 makes every bit serious).
HST_KEPT = {
    ("ACS", "WFC"): {16, 64},
    ("WFC3", "UVIS"): {16, 64},
    ("WFC3", "IR"): {16, 512},
    ("WFPC2", ""): {1024},
    ("STIS", "CCD"): set(),
    ("NICMOS", "IR"): set(),  # no rule: any bit
}
BITS = [1 << i for i in range(16)]


def _hst_header(instrument: str, detector: str) -> fits.Header:
    header = fits.Header({"TELESCOP": "HST", "INSTRUME": instrument})
    if detector:
        header["DETECTOR"] = detector
    return header


def test_hst_informational_bits_keep_the_pixel_by_instrument() -> None:
    dq = np.array([[0, *BITS]], dtype=np.int64).astype(np.int16)  # 32768 wraps, as on disk
    for (instrument, detector), kept in HST_KEPT.items():
        mask = dq_mask(dq, _hst_header(instrument, detector))[0]
        expected = [False] + [bit not in kept for bit in BITS]
        assert mask.tolist() == expected, (instrument, detector)
    # cosmic rays flagged by AstroDrizzle (4096) or CR-SPLIT (8192) and saturation exclude
    acs = _hst_header("ACS", "WFC")
    assert dq_mask(np.array([4096, 8192, 256, 16 | 64, 16 | 4096]), acs).tolist() == [
        True, True, True, False, True,
    ]  # fmt: skip


def test_stis_without_sdqflags_excludes_every_bit_as_calstis_does() -> None:
    """calstis's default when the keyword is missing is 32767 (hstcal calstis8.c
    ``GetKeyInfo8``): a small blemish (1024) excludes the pixel like any other flag (the
    31743 used before kept it); a header that does carry SDQFLAGS = 31743 still keeps it."""
    from astrid.science.dqmask import STIS_SDQFLAGS, excluding_bits

    header = _hst_header("STIS", "CCD")
    assert STIS_SDQFLAGS == 32767
    assert excluding_bits(header) is not None and excluding_bits(header) & STIS_SDQFLAGS == 32767
    dq = np.array([0, 1024, 4, 1024 | 4, 16384], dtype=np.int16)
    assert dq_mask(dq, header).tolist() == [False, True, True, True, True]
    header["SDQFLAGS"] = 31743
    assert dq_mask(dq, header).tolist() == [False, False, True, True, True]


def test_an_sdqflags_keyword_names_the_serious_bits() -> None:
    header = _hst_header("STIS", "CCD")
    header["SDQFLAGS"] = 4 | 256
    dq = np.array([0, 4, 16, 256, 1024, 8192])
    assert dq_mask(dq, header).tolist() == [False, True, False, True, False, False]


def _hst_two_chip_file(path: Path) -> None:
    """An ACS/WFC ``_flt``-like file: ``SCI,n``/``ERR,n``/``DQ,n``, TELESCOP/INSTRUME in the
    primary only, chip 2's DQ holding each of the 16 bits on its own 4x4 block."""
    from astrid.science.simulate_image import simulate_star_field

    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU()]
    hdus[0].header.update({"TELESCOP": "HST", "INSTRUME": "ACS", "DETECTOR": "WFC"})
    for chip in (1, 2):
        sim = simulate_star_field((64, 80), n_stars=5, seed=chip, ra=10.0 + chip)
        header = sim.header.copy()
        header.remove("TELESCOP")  # HST: in the primary header only
        hdus.append(fits.ImageHDU(sim.data, header, name="SCI", ver=chip))
        hdus.append(fits.ImageHDU(np.ones((64, 80), np.float32), name="ERR", ver=chip))
        dq = np.zeros((64, 80), np.int16)
        if chip == 2:
            for i, bit in enumerate(BITS):
                dq[4 * (i // 4) : 4 * (i // 4) + 4, 4 * (i % 4) : 4 * (i % 4) + 4] = np.int16(
                    bit - 65536 if bit >= 32768 else bit
                )
        hdus.append(fits.ImageHDU(dq, name="DQ", ver=chip))
    fits.HDUList(hdus).writeto(path)


def test_an_hst_file_read_by_astrid_detect_keeps_hot_and_warm_pixels(tmp_path: Path) -> None:
    """The plane ``astrid detect --hdu SCI,2`` reads beside chip 2 (``file_mask_of``): of
    the 16 bits only 16 (hot) and 64 (warm) keep their block."""
    from astrid.science.fitsio import read_image
    from astrid.science.prepared_reference import file_mask_of

    path = tmp_path / "j_flt.fits"
    _hst_two_chip_file(path)
    image = read_image(path, "SCI,2")
    mask = file_mask_of(path, image.data.shape, image.hdu_index, image.header)
    assert mask is not None
    for i, bit in enumerate(BITS):
        block = mask[4 * (i // 4) : 4 * (i // 4) + 4, 4 * (i % 4) : 4 * (i % 4) + 4]
        assert bool(block.all()) == (bit not in (16, 64)) and (block.all() or not block.any())
    assert not mask[16:, :].any()


def test_float_plane_is_read_as_truncated_integers() -> None:
    # a float plane is the integer plane truncated toward zero (any set bit excludes):
    # |value| < 1 is 0 and kept; NaN and inf are excluded, as the integer conversion did
    plane = np.array([0.0, 0.5, -0.5, 0.999, 1.0, -1.0, 2.7, -3.2, np.nan, np.inf, -np.inf,
                      4096.0, 255.0], np.float32)  # fmt: skip
    bad = ~np.isfinite(plane)
    as_int = np.where(bad, 0, plane).astype(np.int64)
    expected = bad | (as_int != 0)
    assert dq_mask(plane).tolist() == expected.tolist()
    assert dq_mask(plane.astype(np.float64)).tolist() == expected.tolist()
