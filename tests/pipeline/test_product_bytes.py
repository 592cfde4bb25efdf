"""The stages' product FITS: the fast writer gives astropy's own ``writeto`` bytes.

Blob keys are content hashes, so :func:`fits_bytes` without ``writeto`` (2-d float32 and
uint8) must be byte for byte what astropy writes; other arrays take astropy's path.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from astrid.pipeline.stages import products
from astrid.pipeline.stages.products import data_unit, fits_bytes, fits_parts, header_unit

TAG = {"ASTRSTG": "preprocess", "ASTRVER": "0.1.0"}


def _astropy(data: np.ndarray, header: fits.Header | None, extra: dict[str, str]) -> bytes:
    """What ``fits.PrimaryHDU(...).writeto`` writes for the header ``fits_bytes`` builds."""
    hdr = fits.Header() if header is None else header.copy()
    hdr.strip()
    for key in ("BZERO", "BSCALE", "EXTNAME"):
        hdr.remove(key, ignore_missing=True, remove_all=True)
    for key, value in extra.items():
        hdr[key] = value
    buf = io.BytesIO()
    fits.PrimaryHDU(np.ascontiguousarray(data), header=hdr).writeto(buf)
    return buf.getvalue()


def _wcs() -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.1, 2.2]
    w.wcs.crpix = [1024.5, 1020.3]
    w.wcs.cd = [[-7.3e-5, 1e-6], [1.2e-6, 7.3e-5]]
    return w.to_header(relax=True)


def _long() -> fits.Header:
    """A header of several 2880-byte records: WCS, COMMENT/HISTORY, a long string, layout
    cards and scaling cards ``fits_bytes`` drops."""
    hdr = fits.Header()
    hdr["SIMPLE"] = True
    hdr["BITPIX"] = 16
    hdr["NAXIS"] = 0
    hdr["BZERO"] = 32768
    hdr["BSCALE"] = 1.0
    hdr["EXTNAME"] = "SCI"
    hdr["OBJECT"] = "field 7"
    hdr["FILTER"] = ("r", "a filter")
    hdr["EXPTIME"] = (30.0, "[s]")
    hdr["OBSERVER"] = "x" * 150  # CONTINUE cards
    hdr["HIERARCH ESO DET CHIP NAME"] = "CCD-42"
    for i in range(60):
        hdr[f"KEY{i:03d}"] = (i * 0.125, f"card {i}")
    for i in range(20):
        hdr.add_comment(f"comment {i} " + "c" * 40)
        hdr.add_history(f"history {i} " + "h" * 40)
    hdr.extend(_wcs())
    return hdr


HEADERS = {"none": None, "wcs": _wcs(), "long": _long(), "empty": fits.Header()}
# 1xN, Nx1, odd sizes, and float32 / uint8 sizes filling 2880-byte records exactly
SHAPES = [(1, 1), (1, 37), (37, 1), (17, 23), (24, 30), (48, 60), (720, 4), (64, 45), (96, 90)]


def _data(shape: tuple[int, int], dtype: str, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, 256, shape).astype(dtype)
    data = rng.normal(100.0, 20.0, shape).astype(dtype)
    flat = data.reshape(-1)
    flat[:: max(1, flat.size // 3)] = np.nan
    if flat.size > 2:
        flat[1], flat[-1] = np.inf, -np.inf
    return data


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "u1"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", list(HEADERS))
def test_fast_path_gives_astropy_writeto_bytes(
    dtype: str, shape: tuple[int, int], name: str
) -> None:
    data = _data(shape, dtype)
    assert products._fast_dtype(data)  # not astropy's writeto: two writers compared
    fast = fits_bytes(data, HEADERS[name], TAG)
    assert fast == _astropy(data, HEADERS[name], TAG)
    assert len(fast) % 2880 == 0
    with fits.open(io.BytesIO(fast)) as hdul:
        assert hdul[0].header["BITPIX"] == (8 if dtype == "u1" else -32)
        np.testing.assert_array_equal(hdul[0].data, data)  # NaN == NaN here


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "u1"])
def test_non_contiguous_input_gives_astropy_writeto_bytes(dtype: str) -> None:
    base = _data((40, 62), dtype)
    for view in (base[::2, 1::3], base.T, base[:, ::-1], np.asfortranarray(base)):
        assert not view.flags.c_contiguous or view is base
        fast = fits_bytes(view, HEADERS["wcs"], TAG)
        assert fast == _astropy(view, HEADERS["wcs"], TAG)
        with fits.open(io.BytesIO(fast)) as hdul:
            np.testing.assert_array_equal(hdul[0].data, view)


def test_nan_payloads_and_signed_zero_are_kept_bit_for_bit() -> None:
    data = np.array([[np.nan, -np.nan, -0.0, 0.0, np.float32(1e-45)]], dtype=np.float32)
    data.view(np.uint32)[0, 0] = 0x7FC12345  # a NaN with a payload
    fast = fits_bytes(data)
    assert fast == _astropy(data, None, {})
    with fits.open(io.BytesIO(fast)) as hdul:
        back = np.asarray(hdul[0].data, dtype="<f4")
    np.testing.assert_array_equal(back.view(np.uint32), data.view(np.uint32))


@pytest.mark.parametrize(
    "data",
    [
        np.linspace(-3.0, 3.0, 35).reshape(5, 7),  # float64
        np.arange(-20, 15, dtype=np.int16).reshape(5, 7),
        np.arange(35, dtype=">i4").reshape(7, 5),
        np.arange(60, dtype=np.float32).reshape(3, 4, 5),  # 3-d
        np.arange(12, dtype=np.float32),  # 1-d
        np.zeros((0, 4), dtype=np.float32),  # empty
    ],
    ids=["float64", "int16", "int32-big", "float32-3d", "float32-1d", "float32-empty"],
)
def test_other_arrays_take_astropy_and_round_trip(data: np.ndarray) -> None:
    assert not products._fast_dtype(data)
    raw = fits_bytes(data, HEADERS["wcs"], TAG)
    assert raw == _astropy(data, HEADERS["wcs"], TAG)
    with fits.open(io.BytesIO(raw)) as hdul:
        assert hdul[0].header["ASTRSTG"] == "preprocess"
        if data.size:
            np.testing.assert_array_equal(hdul[0].data, data)
            assert hdul[0].data.dtype.newbyteorder("=") == data.dtype.newbyteorder("=")


def test_an_invalid_header_is_refused_as_writeto_refuses_it() -> None:
    """A card ``writeto`` would not write (verification) is refused on the fast path too."""
    bad = fits.Header()
    bad.append(fits.Card.fromstring("BADKEY! = 'x'".ljust(80)))
    data = _data((4, 4), "<f4")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(fits.VerifyError):
            _astropy(data, bad, {})
        with pytest.raises(fits.VerifyError):
            fits_bytes(data, bad)


def test_header_and_data_units_fill_whole_records() -> None:
    assert len(header_unit(_long())) % 2880 == 0
    assert header_unit(fits.Header()).startswith(b"END" + b" " * 77)
    assert b"".join(data_unit(np.zeros((24, 30), dtype=np.float32))) == b"\0" * 2880
    assert b"".join(data_unit(np.ones((1, 1), dtype="<f4"))) == b"\x3f\x80\x00\x00" + b"\0" * 2876
    assert len(b"".join(data_unit(np.ones((1, 2881), dtype=np.uint8)))) == 5760
    swapped = np.arange(6, dtype=">f4").reshape(2, 3)[:, ::-1]  # non-contiguous, big-endian
    assert bytes(data_unit(swapped)[0]) == np.ascontiguousarray(swapped).tobytes()


def _joined(data: np.ndarray, header: fits.Header | None) -> bytes:
    """The pieces of :func:`fits_parts` joined as a blob store gets them (each piece is
    consumed before the next is asked for: the buffer is reused)."""
    return b"".join(bytes(piece) for piece in fits_parts(data, header, TAG))


@pytest.mark.parametrize("piece_bytes", [1, 100, 2880, 1 << 20])
@pytest.mark.parametrize("dtype", ["<f4", ">f4", "u1"])
def test_parts_join_to_fits_bytes(
    dtype: str, piece_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pieces of one row, of a few rows with a short last piece, and of the whole array
    all give ``fits_bytes``' bytes, for every shape and header, non-contiguous views
    included."""
    monkeypatch.setattr(products, "_PIECE_BYTES", piece_bytes)
    for shape in SHAPES:
        data = _data(shape, dtype)
        for name, header in HEADERS.items():
            assert _joined(data, header) == fits_bytes(data, header, TAG), (shape, name)
    base = _data((40, 62), dtype)
    for view in (base[::2, 1::3], base.T, base[:, ::-1], np.asfortranarray(base)):
        assert _joined(view, HEADERS["wcs"]) == fits_bytes(view, HEADERS["wcs"], TAG)


def test_parts_of_other_arrays_are_writeto_bytes() -> None:
    for data in (np.arange(12, dtype=np.float64).reshape(3, 4), np.zeros((2, 3, 4), np.int16)):
        assert _joined(data, None) == fits_bytes(data, None, TAG)


def test_an_invalid_header_is_refused_before_any_piece() -> None:
    header = fits.Header()
    header.append(fits.Card.fromstring("BADKEY  = 'unterminated"))
    with pytest.raises(fits.VerifyError):
        fits_parts(_data((4, 4), "<f4"), header, TAG)
