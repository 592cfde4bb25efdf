"""The ``astrid subtract`` / ``astrid detect`` contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from typer.testing import CliRunner

from astrid.cli import app
from astrid.science.simulate import simulate_pair
from astrid.science.simulate_image import write_simulated
from astrid.science.simulate_model import AnalyticPSF, Exposure

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("pair")
    new = Exposure(psf=AnalyticPSF(fwhm=3.0), mjd=60030, offset=(2.6, -1.4), rotation=0.2)
    p = simulate_pair((256, 256), 150, seed=17, new=new, n_transients=8,
                      transient_flux_range=(2000, 5000))  # fmt: skip
    write_simulated(p.new, tmp / "new.fits")
    write_simulated(p.ref, tmp / "ref.fits")
    return tmp, p


def test_detect_writes_the_contract_columns(files) -> None:  # type: ignore[no-untyped-def]
    tmp, p = files
    out = tmp / "c.csv"
    result = runner.invoke(app, ["detect", str(tmp / "new.fits"), str(tmp / "ref.fits"),
                                 "-o", str(out), "--threshold", "5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    table = Table.read(out, format="ascii.csv")
    for col in ("ra", "dec", "x", "y", "snr", "flux", "flux_err", "mag", "score"):
        assert col in table.colnames
    tr = p.truth[p.truth["kind"] == "transient"]
    found = 0
    for row in tr:
        sep = np.hypot((table["ra"] - row["ra"]) * np.cos(np.radians(row["dec"])),
                       table["dec"] - row["dec"]) * 3600  # fmt: skip
        found += bool(len(table)) and sep.min() < 1.0
    assert found >= len(tr) - 1
    assert np.all(table["snr"] >= 5)


def test_subtract_writes_named_hdus_on_the_reference_grid(files) -> None:  # type: ignore[no-untyped-def]
    tmp, p = files
    out = tmp / "d.fits"
    result = runner.invoke(app, ["subtract", str(tmp / "new.fits"), str(tmp / "ref.fits"),
                                 "-o", str(out), "--method", "classic"])  # fmt: skip
    assert result.exit_code == 0, result.output
    with fits.open(out) as hdul:
        names = [h.name for h in hdul]
        for name in ("D", "SCORR", "PSF_D", "PSF_NEW", "PSF_REF", "MASK"):
            assert name in names
        assert hdul["D"].data.shape == p.ref.data.shape
        assert hdul["SCORR"].header["CTYPE1"].startswith("RA---TAN")
        assert hdul["SCORR"].header["CRVAL1"] == pytest.approx(p.ref.header["CRVAL1"])
        assert hdul[0].header["ASTMETH"] == "classic"


@pytest.mark.parametrize("role", ["new image", "reference"])
def test_a_constant_image_is_refused_by_name(files, tmp_path: Path, role: str) -> None:  # type: ignore[no-untyped-def]
    """A constant image has no noise: SEP reports an RMS of 1 for it, which used to give
    dozens of "candidates" on a blank frame; now the image is named and nothing is written.
    A NaN border and a masked bright pixel do not hide it."""
    tmp, p = files
    src = p.new if role == "new image" else p.ref
    data = np.full(src.data.shape, 1234.5, dtype=np.float32)
    data[:, :7] = np.nan
    data[40, 40] = 9.0e4
    mask = np.zeros(data.shape, np.uint8)
    mask[40, 40] = 1
    flat = tmp_path / "flat.fits"
    fits.HDUList([fits.PrimaryHDU(data, src.header),
                  fits.ImageHDU(mask, name="MASK")]).writeto(flat)  # fmt: skip
    pair = [str(flat), str(tmp / "ref.fits")] if role == "new image" else [
        str(tmp / "new.fits"), str(flat)]  # fmt: skip
    out = tmp_path / "c.csv"
    result = runner.invoke(app, ["detect", *pair, "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert f"valid pixels of the {role} equal 1234.5: no sky noise" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not out.exists()


def test_bad_input_is_a_message_not_a_traceback(files, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tmp, p = files
    plain = tmp_path / "plain.fits"
    fits.PrimaryHDU(p.new.data).writeto(plain)
    result = runner.invoke(app, ["detect", str(plain), str(tmp / "ref.fits"), "-o",
                                 str(tmp_path / "x.csv")])  # fmt: skip
    assert result.exit_code == 1
    assert "WCS" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    result = runner.invoke(app, ["subtract", str(tmp / "new.fits"), str(tmp / "ref.fits"),
                                 "-o", str(tmp_path / "x.fits"), "--method", "nope"])  # fmt: skip
    assert result.exit_code == 2
    far = simulate_pair((64, 64), 10, seed=1, n_transients=0, ra=200.0)
    write_simulated(far.ref, tmp_path / "far.fits")
    result = runner.invoke(app, ["detect", str(tmp / "new.fits"), str(tmp_path / "far.fits"),
                                 "-o", str(tmp_path / "y.csv")])  # fmt: skip
    assert result.exit_code == 1
    assert "overlap" in result.output


def _two_chips(chip1, chip2, dq2: np.ndarray | None = None) -> fits.HDUList:  # type: ignore[no-untyped-def]
    """An HST ``_flt``-style file: ``SCI,1``/``DQ,1`` and ``SCI,2``/``DQ,2``."""
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU()]
    for ver, image in ((1, chip1), (2, chip2)):
        header = image.header.copy()
        for key in ("SIMPLE", "EXTEND", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2"):
            header.remove(key, ignore_missing=True, remove_all=True)
        hdus.append(fits.ImageHDU(image.data.astype(np.float32), header, name="SCI", ver=ver))
        dq = np.zeros(image.data.shape, np.int16) if ver == 1 or dq2 is None else dq2
        hdus.append(fits.ImageHDU(dq, name="DQ", ver=ver))
    return fits.HDUList(hdus)


def test_detect_reads_the_chip_named_by_hdu(files, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Two-chip files (``SCI,1``/``SCI,2``): without ``--hdu`` a named refusal; with
    ``--hdu SCI,2`` (or ``--new-hdu 3 --ref-hdu SCI,2``) the pair's transients are found on
    chip 2, and chip 2's own DQ (not chip 1's) hides the one it flags."""
    _, p = files
    other = simulate_pair((128, 128), 40, seed=5, n_transients=0, ra=200.0)
    tr = p.truth[p.truth["kind"] == "transient"]
    hidden = tr[0]
    dq2 = np.zeros(p.new.data.shape, np.int16)
    x, y = (
        int(round(float(v))) for v in p.new.wcs.world_to_pixel_values(hidden["ra"], hidden["dec"])
    )
    dq2[y - 6 : y + 7, x - 6 : x + 7] = 1024
    new, ref = tmp_path / "new_flt.fits", tmp_path / "ref_flt.fits"
    _two_chips(other.new, p.new, dq2).writeto(new)
    _two_chips(other.ref, p.ref).writeto(ref)

    out = tmp_path / "c.csv"
    refused = runner.invoke(app, ["detect", str(new), str(ref), "-o", str(out)])
    assert refused.exit_code == 1 and "2 chips (HDUs 1 (SCI,1), 3 (SCI,2))" in refused.output
    assert not out.exists()

    for picks in (["--hdu", "SCI,2"], ["--new-hdu", "3", "--ref-hdu", "SCI,2"]):
        result = runner.invoke(app, ["detect", str(new), str(ref), "-o", str(out), *picks])
        assert result.exit_code == 0, result.output
        table = Table.read(out, format="ascii.csv")
        seps = [
            np.hypot((table["ra"] - row["ra"]) * np.cos(np.radians(row["dec"])),
                     table["dec"] - row["dec"]).min() * 3600
            for row in tr
        ]  # fmt: skip
        assert seps[0] > 5.0  # flagged by DQ,2
        assert sum(s < 1.0 for s in seps[1:]) >= len(tr) - 2
    result = runner.invoke(app, ["subtract", str(new), str(ref), "-o", str(tmp_path / "d.fits"),
                                 "--hdu", "SCI,2", "--method", "classic"])  # fmt: skip
    assert result.exit_code == 0, result.output
    with fits.open(tmp_path / "d.fits") as hdul:
        assert hdul["D"].data.shape == p.ref.data.shape
