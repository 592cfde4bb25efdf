"""Master bias/dark/flat frames in the pipeline, on SQLite and PostgreSQL.

A simulated sky image is turned into a raw frame ``raw = sky * flat + bias + rate * t`` with
known masters; registered for the instrument, filter and dates, the preprocess stage must give
back ``(raw - bias - rate * t) / flat`` to float32 precision, propagate the variance by the
formula of :mod:`astrid.science.calibrate`, and record the frames in the product's
provenance. Bad frames are refused with the field named and nothing stored.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy import func, select

from astrid.domain.calibration import (
    CalibrationChipsError,
    CalibrationFieldError,
    calibration_for,
    list_calibrations,
    register_calibration,
    register_calibrations,
)
from astrid.pipeline.stages.ingest import ingest_bytes
from astrid.pipeline.stages.preprocess import preprocess_observation
from astrid.pipeline.stages.products import read_array
from astrid.runtime import Runtime
from astrid.science.simulate_image import simulate_star_field, write_simulated
from astrid.science.simulate_model import AnalyticPSF
from astrid.store.tables import CalibrationFrame, Observation, ObservationStatus, PreprocessResult

SHAPE = (128, 144)
T = 90.0  # s
VAR_BIAS, VAR_RATE, VAR_FLAT = 4.0, 1e-4, 1e-5


def _masters() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    bias = 300.0 + 0.05 * xx + rng.normal(0, 2.0, SHAPE)
    rate = 0.02 + np.zeros(SHAPE)
    rate[40, 50] = 30.0  # a hot pixel: 2700 ADU in 90 s
    flat = 1.0 + 0.08 * np.sin(xx / 20.0) * np.cos(yy / 30.0) + rng.normal(0, 0.005, SHAPE)
    return bias, rate, flat / np.median(flat)


def _fits(data: np.ndarray, var: float | None = None, **cards: object) -> bytes:
    hdus = [fits.PrimaryHDU(np.asarray(data, np.float32))]
    for k, v in cards.items():
        hdus[0].header[k] = v
    if var is not None:
        hdus.append(fits.ImageHDU(np.full(data.shape, var, np.float32), name="VARIANCE"))
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def _raw_image() -> tuple[bytes, np.ndarray, fits.Header]:
    sky = simulate_star_field(
        SHAPE, 150, 5, psf=AnalyticPSF(fwhm=3.0), mjd=60100.5, filter="r", exptime=T,
    )  # fmt: skip
    with fits.open(io.BytesIO(write_simulated(sky, extensions=False))) as hdul:
        header = hdul[0].header.copy()
        clean = np.asarray(hdul[0].data, np.float64)
    bias, rate, flat = _masters()
    raw = (clean * flat + bias + rate * T).astype(np.float32)
    header["INSTRUME"] = "SIMCAM"
    buf = io.BytesIO()
    fits.PrimaryHDU(raw, header=header).writeto(buf)
    return buf.getvalue(), raw.astype(np.float64), header


def _register_all(runtime: Runtime) -> dict[str, int]:
    bias, rate, flat = _masters()
    db, blobs = runtime.db, runtime.blobs
    window = {"valid_from": "2023-01-01", "valid_to": 60200.0}
    ids = {
        "bias": register_calibration(
            db, blobs, _fits(bias, VAR_BIAS), kind="bias", instrument="SIMCAM", **window
        ).id,
        # a dark in ADU over 60 s with its EXPTIME: stored as ADU/s
        "dark": register_calibration(
            db,
            blobs,
            _fits(rate * 60.0, VAR_RATE * 3600.0, EXPTIME=60.0),
            kind="dark",
            instrument="simcam",
            **window,
        ).id,
        "flat": register_calibration(
            db,
            blobs,
            _fits(flat * 5000.0, VAR_FLAT * 5000.0**2, FILTER="r"),
            kind="flat",
            instrument="SIMCAM",
            **window,
        ).id,
    }
    return ids


def test_preprocess_applies_registered_masters_with_variance_and_provenance(
    runtime: Runtime,
) -> None:
    raw_bytes, raw, header = _raw_image()
    ids = _register_all(runtime)
    # A flat of another band and an expired bias exist too: neither may be picked.
    bias, _, flat = _masters()
    register_calibration(runtime.db, runtime.blobs, _fits(flat * 0.5), kind="flat",
                         instrument="SIMCAM", filter="g")  # fmt: skip
    register_calibration(runtime.db, runtime.blobs, _fits(bias + 1000.0), kind="bias",
                         instrument="SIMCAM", valid_to="2023-01-01")  # fmt: skip
    obs_id, _ = ingest_bytes(runtime, raw_bytes, source="test", filename="raw.fits")

    result = preprocess_observation(runtime, obs_id)
    assert result.status == "done", result
    assert result.value["calibration"] == ["bias", "dark", "flat"]
    with runtime.db.session() as s:
        pre = s.scalars(select(PreprocessResult)).one()
        prov = pre.provenance["calibration"]
        image_key, variance_key = pre.image_key, pre.variance_key
    assert {k: v["id"] for k, v in prov["frames"].items()} == ids
    assert prov["variance"] == "propagated"

    bias, rate, flat = _masters()
    image, img_header = read_array(runtime, image_key)
    expected = (raw - bias - rate * T) / flat
    np.testing.assert_allclose(image, expected, rtol=2e-6, atol=2e-3)
    assert img_header["CALFLAT"] == ids["flat"] and "AstrID calibrate" in str(img_header["HISTORY"])
    # var = [ (raw - bias)/g + (rn/g)² + var_bias + t² var_rate ] / flat² + d² var_flat / flat⁴
    gain, rn = float(header["GAIN"]), float(header["RDNOISE"])
    d = raw - bias - rate * T
    var_d = np.clip(raw - bias, 0, None) / gain + (rn / gain) ** 2 + VAR_BIAS + T**2 * VAR_RATE
    expected_var = var_d / flat**2 + d**2 * VAR_FLAT / flat**4
    variance, _ = read_array(runtime, variance_key)
    np.testing.assert_allclose(variance, expected_var, rtol=1e-5)

    # Re-running reuses the product; a newly registered master makes a new one.
    assert preprocess_observation(runtime, obs_id).status == "reused"
    register_calibration(runtime.db, runtime.blobs, _fits(bias, VAR_BIAS), kind="bias",
                         instrument="SIMCAM", valid_from=60000)  # fmt: skip
    assert preprocess_observation(runtime, obs_id).status == "done"


def test_bad_calibration_frames_are_named_and_store_nothing(runtime: Runtime) -> None:
    raw_bytes, _, _ = _raw_image()
    ingest_bytes(runtime, raw_bytes, source="test", filename="raw.fits")  # SIMCAM is 128x144
    bias, rate, flat = _masters()
    db, blobs = runtime.db, runtime.blobs

    def refused(field: str, data: bytes, **kw: object) -> str:
        before = len(list_calibrations(db))
        with pytest.raises(CalibrationFieldError) as err:
            register_calibration(db, blobs, data, **kw)  # type: ignore[arg-type]
        assert err.value.field == field, err.value
        assert len(list_calibrations(db)) == before
        return str(err.value)

    msg = refused("file", _fits(bias[:100]), kind="bias", instrument="SIMCAM")
    assert "100x144 matches none of SIMCAM's images (128x144)" in msg
    zeros = flat.copy()
    zeros[5, 5:9] = 0.0
    assert "4 zero, negative or non-finite" in refused(
        "file", _fits(zeros, FILTER="r"), kind="flat", instrument="SIMCAM"
    )
    assert "FILTER='g'" in refused(
        "filter", _fits(flat, FILTER="g"), kind="flat", instrument="SIMCAM", filter="r"
    )
    refused("filter", _fits(flat), kind="flat", instrument="SIMCAM")  # no band at all
    refused("filter", _fits(bias), kind="bias", instrument="SIMCAM", filter="r")
    assert "INSTRUME='OTHERCAM'" in refused(
        "instrument", _fits(bias, INSTRUME="OTHERCAM"), kind="bias", instrument="SIMCAM"
    )
    refused("kind", _fits(bias), kind="sky", instrument="SIMCAM")
    refused("file", _fits(rate), kind="dark", instrument="SIMCAM")  # no EXPTIME
    refused("valid_to", _fits(bias), kind="bias", instrument="SIMCAM", valid_from=60100,
            valid_to="2020-01-01")  # fmt: skip
    refused("valid_from", _fits(bias), kind="bias", instrument="SIMCAM", valid_from="soon")
    refused("file", b"not a fits file", kind="bias", instrument="SIMCAM")
    with runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(CalibrationFrame)) == 0
        # matching: no frame yet, none applied
        assert calibration_for(s, "SIMCAM", "r", 60100.5, SHAPE) == {}


def test_master_of_another_shape_at_apply_time_fails_the_stage_by_name(
    runtime: Runtime,
) -> None:
    """A master registered before any image of its instrument, of the wrong shape: the
    preprocess stage fails with the mismatch named (never an uncalibrated product)."""
    bias, _, _ = _masters()
    register_calibration(runtime.db, runtime.blobs, _fits(bias[:, :100]), kind="bias",
                         instrument="SIMCAM")  # fmt: skip
    raw_bytes, _, _ = _raw_image()
    obs_id, _ = ingest_bytes(runtime, raw_bytes, source="test", filename="raw.fits")
    result = preprocess_observation(runtime, obs_id)
    assert result.status == "failed"
    assert "CalibrationMismatchError" in (result.error or "")
    assert "is 128x100 but the image is 128x144" in (result.error or "")
    with runtime.db.session() as s:
        assert s.get(Observation, obs_id).status == ObservationStatus.FAILED
        assert s.scalar(select(func.count()).select_from(PreprocessResult)) == 0


def _two_chips(levels: tuple[float, float], *, sky: bool) -> bytes:
    """An HST-style two-chip file (``SCI,1``/``SCI,2`` with ``VARIANCE,n``): with ``sky``,
    two simulated fields (their own WCS) plus a flat bias of ``levels[n-1]`` ADU; else just
    the two bias levels (a master bias per chip)."""
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU()]
    hdus[0].header["INSTRUME"] = "SIMCAM"
    for chip, level in enumerate(levels, start=1):
        if sky:
            field = simulate_star_field(SHAPE, 150, 10 + chip, psf=AnalyticPSF(fwhm=3.0),
                                        mjd=60100.5, exptime=T, ra=150.0 + chip)  # fmt: skip
            with fits.open(io.BytesIO(write_simulated(field, extensions=False))) as hdul:
                header = hdul[0].header.copy()
                data = np.asarray(hdul[0].data, np.float32) + np.float32(level)
            header.remove("INSTRUME", ignore_missing=True)
        else:
            header, data = fits.Header(), np.full(SHAPE, level, np.float32)
        hdus.append(fits.ImageHDU(data, header, name="SCI", ver=chip))
        hdus.append(fits.ImageHDU(np.full(SHAPE, 4.0, np.float32), name="VARIANCE", ver=chip))
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def test_a_two_chip_master_is_registered_per_chip_and_applied_to_its_chip(
    runtime: Runtime,
) -> None:
    """A master bias file holding two chips is refused without ``hdu`` (field ``hdu``,
    nothing stored); registered chip by chip (``hdu="SCI,1"``, ``hdu=2``... by name or
    index) each master records its chip and the preprocess stage subtracts from each chip
    of a two-chip observation its own chip's bias, preferred to a newer instrument-wide one
    (which still applies to a single-image observation)."""
    db, blobs = runtime.db, runtime.blobs
    master = _two_chips((300.0, 900.0), sky=False)
    with pytest.raises(CalibrationFieldError) as err:
        register_calibration(db, blobs, master, kind="bias", instrument="SIMCAM")
    assert err.value.field == "hdu" and "SCI,1" in str(err.value) and "SCI,2" in str(err.value)
    with pytest.raises(CalibrationFieldError) as err:
        register_calibration(db, blobs, master, kind="bias", instrument="SIMCAM", hdu="ERR,2")
    assert err.value.field == "hdu"
    assert list_calibrations(db) == []
    one = register_calibration(db, blobs, master, kind="bias", instrument="SIMCAM", hdu="SCI,1")
    two = register_calibration(db, blobs, master, kind="bias", instrument="SIMCAM", hdu="3")
    assert (one.chip, two.chip) == ("SCI,1", "SCI,2")
    assert not any("noiseless" in n for n in one.notes + two.notes)  # VARIANCE,n read
    # an instrument-wide bias registered later: the chips keep their own
    everywhere = register_calibration(db, blobs, _fits(np.full(SHAPE, 50.0)), kind="bias",
                                      instrument="SIMCAM")  # fmt: skip
    assert everywhere.chip is None

    raw = _two_chips((300.0, 900.0), sky=True)
    out = ingest_bytes(runtime, raw, source="test", filename="two_flt.fits")
    with runtime.db.session() as s:
        obs = {o.extra["hdu_name"]: o.id for o in s.scalars(select(Observation))}
    assert set(obs) == {"SCI,1", "SCI,2"}, out
    with fits.open(io.BytesIO(raw)) as hdul:
        raw_pixels = {f"SCI,{v}": np.asarray(hdul["SCI", v].data, np.float64) for v in (1, 2)}
    for chip, master_id, level in (("SCI,1", one.id, 300.0), ("SCI,2", two.id, 900.0)):
        result = preprocess_observation(runtime, obs[chip])
        assert result.status == "done", result
        with runtime.db.session() as s:
            pre = s.scalars(
                select(PreprocessResult).where(PreprocessResult.observation_id == obs[chip])
            ).one()
            frames = pre.provenance["calibration"]["frames"]
            image_key = pre.image_key
        assert frames["bias"]["id"] == master_id
        image, _ = read_array(runtime, image_key)
        np.testing.assert_allclose(image, raw_pixels[chip] - level, atol=1e-3)
    with runtime.db.session() as s:
        # the instrument-wide master applies to an image of no chip, a chip's does not
        rows = calibration_for(s, "SIMCAM", "r", 60100.5, SHAPE)
        assert rows["bias"].id == everywhere.id
        assert calibration_for(s, "SIMCAM", "r", 60100.5, SHAPE, "SCI,2")["bias"].id == two.id


def test_every_chip_of_a_master_file_is_registered_in_one_call_or_none(
    runtime: Runtime,
) -> None:
    """``hdu="all"``: one row per chip with its ``chip`` and its own VARIANCE,n, in file
    order, and the preprocess stage subtracts each chip's own bias. A flat whose chip 2 has
    a zero pixel is refused as a whole (CalibrationChipsError naming SCI,2 and the field),
    storing nothing, not even chip 1."""
    db, blobs = runtime.db, runtime.blobs
    infos = register_calibrations(db, blobs, _two_chips((300.0, 900.0), sky=False),
                                  kind="bias", instrument="SIMCAM", hdu="all")  # fmt: skip
    assert [i.chip for i in infos] == ["SCI,1", "SCI,2"]
    assert not any("noiseless" in n for i in infos for n in i.notes)
    with runtime.db.session() as s:
        rows = s.scalars(select(CalibrationFrame).order_by(CalibrationFrame.id)).all()
        assert [(r.chip, r.kind) for r in rows] == [("SCI,1", "bias"), ("SCI,2", "bias")]

    raw = _two_chips((300.0, 900.0), sky=True)
    ingest_bytes(runtime, raw, source="test", filename="two_flt.fits")
    with runtime.db.session() as s:
        obs = {o.extra["hdu_name"]: o.id for o in s.scalars(select(Observation))}
    with fits.open(io.BytesIO(raw)) as hdul:
        raw_pixels = {f"SCI,{v}": np.asarray(hdul["SCI", v].data, np.float64) for v in (1, 2)}
    for info, level in zip(infos, (300.0, 900.0), strict=True):
        chip = str(info.chip)
        assert preprocess_observation(runtime, obs[chip]).status == "done"
        with runtime.db.session() as s:
            pre = s.scalars(
                select(PreprocessResult).where(PreprocessResult.observation_id == obs[chip])
            ).one()
            assert pre.provenance["calibration"]["frames"]["bias"]["id"] == info.id
            image_key = pre.image_key
        image, _ = read_array(runtime, image_key)
        np.testing.assert_allclose(image, raw_pixels[chip] - level, atol=1e-3)

    broken = fits.HDUList(fits.open(io.BytesIO(_two_chips((5000.0, 6000.0), sky=False))))
    broken["SCI", 2].data[7, 9] = 0.0
    broken[0].header["FILTER"] = "r"
    buf = io.BytesIO()
    broken.writeto(buf)
    with pytest.raises(CalibrationChipsError) as err:
        register_calibrations(db, blobs, buf.getvalue(), kind="flat", instrument="SIMCAM",
                              hdu="ALL")  # fmt: skip
    assert err.value.field == "file" and err.value.chip == "SCI,2"
    assert [(c, f) for c, f, _ in err.value.failures] == [("SCI,2", "file")]
    assert "chip SCI,2" in str(err.value) and "zero, negative" in str(err.value)
    assert "SCI,1" not in str(err.value)
    assert [i.kind for i in list_calibrations(db)] == ["bias", "bias"]  # no flat, chip 1 too
    # the single-master entry point refuses "all" by name
    with pytest.raises(CalibrationFieldError) as one:
        register_calibration(db, blobs, buf.getvalue(), kind="flat", instrument="SIMCAM",
                             hdu="all")  # fmt: skip
    assert one.value.field == "hdu"


def test_a_single_image_master_keyed_to_a_chip_applies_to_that_chip_only(
    runtime: Runtime,
) -> None:
    """A per-chip master shipped as its own single-image file, ``chip="SCI,2"``: stored with
    that chip, chosen for chip SCI,2's observations and never for SCI,1's. Chip names are
    checked as hdu names are (field ``chip``), and ``chip`` is refused for a file whose
    chips the file itself names."""
    db, blobs = runtime.db, runtime.blobs
    info = register_calibration(db, blobs, _fits(np.full(SHAPE, 900.0), VAR_BIAS),
                                kind="bias", instrument="SIMCAM", chip=" sci , 2 ")  # fmt: skip
    assert info.chip == "sci,2"
    with runtime.db.session() as s:
        assert calibration_for(s, "SIMCAM", "r", 60100.5, SHAPE, "SCI,2")["bias"].id == info.id
        assert calibration_for(s, "SIMCAM", "r", 60100.5, SHAPE, "SCI,1") == {}
        assert calibration_for(s, "SIMCAM", "r", 60100.5, SHAPE) == {}
    raw = _two_chips((300.0, 900.0), sky=True)
    ingest_bytes(runtime, raw, source="test", filename="two_flt.fits")
    with runtime.db.session() as s:
        obs = {o.extra["hdu_name"]: o.id for o in s.scalars(select(Observation))}
    with fits.open(io.BytesIO(raw)) as hdul:
        chip2 = np.asarray(hdul["SCI", 2].data, np.float64)
    assert preprocess_observation(runtime, obs["SCI,2"]).status == "done"
    with runtime.db.session() as s:
        pre = s.scalars(
            select(PreprocessResult).where(PreprocessResult.observation_id == obs["SCI,2"])
        ).one()
        assert pre.provenance["calibration"]["frames"]["bias"]["id"] == info.id
        image_key = pre.image_key
    image, _ = read_array(runtime, image_key)
    np.testing.assert_allclose(image, chip2 - 900.0, atol=1e-3)

    for bad in ("x" * 73, "4", "all", "SCI,two", "N4\x00", "N\t4", "SCI,2,3"):
        with pytest.raises(CalibrationFieldError) as err:
            register_calibration(db, blobs, _fits(np.full(SHAPE, 1.0)), kind="bias",
                                 instrument="SIMCAM", chip=bad)  # fmt: skip
        assert err.value.field == "chip", bad
    with pytest.raises(CalibrationFieldError) as err:
        register_calibration(db, blobs, _two_chips((1.0, 2.0), sky=False), kind="bias",
                             instrument="SIMCAM", hdu="SCI,1", chip="SCI,2")  # fmt: skip
    assert err.value.field == "chip" and "SCI,1, SCI,2" in str(err.value)
    assert [i.id for i in list_calibrations(db)] == [info.id]
