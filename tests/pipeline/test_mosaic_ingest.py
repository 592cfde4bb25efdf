"""A mosaic file (several CCD images in one FITS file, none named SCI) is ingested as one
observation per CCD, on SQLite and PostgreSQL: the bytes stored once, a broken CCD refused by
name while the others go on, the same file again only duplicates, and ``process`` of a mosaic
new epoch against a mosaic reference epoch finds each injected transient in its own CCD at its
own RA/Dec, reading each CCD's own MASK/VARIANCE planes."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy import delete, func, select

from astrid.pipeline.demo import DemoSurvey, simulate_demo_survey
from astrid.pipeline.orchestrate import process_pending
from astrid.pipeline.stages.ingest import ccd_content_hash, ingest_paths
from astrid.runtime import Runtime
from astrid.store.blobs import blob_key
from astrid.store.sky_index import angular_separation_deg
from astrid.store.tables import Detection, Observation, PreprocessResult, StageRun
from tests._cli import astrid_in, clean_env

CCDS = ("N4", "N5", "S1")  # field-a, field-b, field-c of the simulated survey
#: pixels of N5's reference epoch flagged by its own mask plane (N5_MASK), and only there
FLAGGED = (slice(0, 10), slice(0, 12))


def _strip(header: fits.Header) -> fits.Header:
    out = header.copy()
    for key in ("SIMPLE", "EXTEND", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2"):
        out.remove(key, ignore_missing=True, remove_all=True)
    return out


def _mosaic(survey: DemoSurvey, epoch: int, broken: str) -> bytes:
    """Epoch ``epoch`` of the three fields as CCDs N4, N5, S1 (each with its own WCS, MJD,
    ``<CCD>_VARIANCE`` and ``<CCD>_MASK`` planes), then a broken CCD S2."""
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU()]
    hdus[0].header["INSTRUME"] = "SIMCAM"
    for ccd, field in zip(CCDS, ("field-a", "field-b", "field-c"), strict=True):
        path = next(p for p in survey.paths if p.name == f"{field}-e{epoch}.fits")
        with fits.open(path) as hdul:
            header = _strip(hdul[0].header)
            hdus.append(fits.ImageHDU(hdul[0].data.astype(np.float32), header, name=ccd))
            mask = np.array(hdul["MASK"].data, dtype=np.uint8)
            if ccd == "N5" and epoch == 0:
                mask[FLAGGED] = 1
            hdus.append(fits.ImageHDU(np.array(hdul["VARIANCE"].data), name=f"{ccd}_VARIANCE"))
            hdus.append(fits.ImageHDU(mask, name=f"{ccd}_MASK"))
    bad = hdus[1].data.copy()
    if broken == "no wcs":
        wcs_keys = ("CTYPE", "CRVAL", "CRPIX", "CD", "PC", "CUNIT", "WCSAXES", "RADESYS")
        header = fits.Header(
            [c for c in hdus[1].header.cards if not c.keyword.startswith(wcs_keys)]
        )
    else:
        bad[:] = np.nan
        header = hdus[1].header.copy()
    hdus.append(fits.ImageHDU(bad, header, name="S2"))
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def _process_and_find(
    runtime: Runtime,
    survey: DemoSurvey,
    new_ids: dict[str, int],
    ref_ids: dict[str, int],
    image_of_field: dict[str, str],
    *,
    flagged: str,
    n_transients: int,
) -> None:
    """Process everything; every new image (by name) completes; of the reference images
    ``ref_ids``, only ``flagged``'s preprocess mask covers :data:`FLAGGED` (its own plane
    was read); each injected transient of epoch 1 is found within 1 arcsec, and only on the
    image its field is in."""
    summary = process_pending(runtime)
    status = {r.observation_id: r.status for r in summary.reports}
    for name, obs_id in new_ids.items():
        assert status[obs_id] == "completed", (name, summary.reports)
    with runtime.db.session() as s:
        masks = {
            name: s.scalar(
                select(PreprocessResult.mask_key).where(PreprocessResult.observation_id == i)
            )
            for name, i in ref_ids.items()
        }
        found = s.execute(
            select(Detection.ra, Detection.dec, Observation.extra)
            .join(Observation, Observation.id == Detection.observation_id)
        ).all()  # fmt: skip
    covered = {}
    for name, mask_key in masks.items():
        with fits.open(io.BytesIO(runtime.blobs.get(str(mask_key)))) as hdul:
            covered[name] = bool(np.all(hdul[0].data[FLAGGED]))
    assert covered == {name: name == flagged for name in ref_ids}
    truth = survey.truth[survey.truth["epoch"] == 1]
    assert len(truth) == n_transients
    for row in truth:
        image = image_of_field[str(row["field"])]
        near = [
            f
            for f in found
            if angular_separation_deg(float(row["ra"]), float(row["dec"]), f.ra, f.dec) < 1.0 / 3600
        ]
        assert near, (image, row)
        assert all(f.extra["hdu_name"] == image for f in near)


def test_a_mosaic_is_one_observation_per_ccd_through_process(
    runtime: Runtime, tmp_path: Path
) -> None:
    survey = simulate_demo_survey(
        tmp_path / "sim", seed=4, n_fields=3, n_epochs=2, n_transients=3,
        flux_range=(3000.0, 6000.0),
    )  # fmt: skip
    ref_file, new_file = tmp_path / "exp-e0.fits", tmp_path / "exp-e1.fits.gz"
    ref_file.write_bytes(_mosaic(survey, 0, broken="no wcs"))
    new_file.write_bytes(gzip.compress(_mosaic(survey, 1, broken="all nan"), 1))  # as stored

    outcomes = ingest_paths(runtime, [ref_file, new_file], survey="test")
    assert [(Path(o.path).name, o.hdu, o.status) for o in outcomes] == [
        *((ref_file.name, ccd, "ingested") for ccd in CCDS),
        (ref_file.name, "S2", "failed"),
        *((new_file.name, ccd, "ingested") for ccd in CCDS),
        (new_file.name, "S2", "failed"),
    ]
    ref_fail, new_fail = (o for o in outcomes if o.status == "failed")
    assert "HDU 10 (S2)" in (ref_fail.error or "") and "no celestial WCS" in (ref_fail.error or "")
    assert "HDU 10 (S2)" in (new_fail.error or "") and "NaN" in (new_fail.error or "")
    assert ref_fail.label == f"{ref_file}[S2]"

    keys = {blob_key(p.read_bytes()): p.name for p in (ref_file, new_file)}
    with runtime.db.session() as s:
        rows = s.scalars(select(Observation).order_by(Observation.id)).all()
        obs = {
            (keys[o.blob_key], o.extra["hdu_name"]): (o.id, o.hdu_index, o.content_hash, o.ra)
            for o in rows
        }
    assert len(rows) == 6 and sorted(runtime.blobs.keys()) == sorted(keys)  # bytes stored once
    for (name, ccd), (_, index, content_hash, _) in obs.items():
        key = next(k for k, n in keys.items() if n == name)
        assert index == 1 + 3 * CCDS.index(ccd) and content_hash == ccd_content_hash(key, index)
        assert len(content_hash) == 64 and content_hash != key
    # each CCD where its own WCS puts it (the fields are far apart on the sky)
    assert [round(obs[(ref_file.name, c)][3]) for c in CCDS] == [0, 318, 120]

    again = ingest_paths(runtime, [ref_file, new_file], survey="test")
    assert [o.status for o in again] == (["duplicate"] * 3 + ["failed"]) * 2
    assert [o.observation_id for o in again if o.observation_id] == [
        o.observation_id for o in outcomes if o.observation_id
    ]
    with runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Observation)) == 6

    _process_and_find(
        runtime,
        survey,
        {ccd: obs[(new_file.name, ccd)][0] for ccd in CCDS},
        {ccd: obs[(ref_file.name, ccd)][0] for ccd in ("N4", "N5")},
        dict(zip(("field-a", "field-b", "field-c"), CCDS, strict=True)),
        flagged="N5",  # N5's own mask plane, not N4's
        n_transients=9,
    )


def test_astrid_ingest_names_the_broken_ccd_of_a_mosaic(tmp_path: Path) -> None:
    """The command counts CCDs and prints one line for the refused one, ``file[CCD]: why``;
    exit 0 (something was ingested); again: all present."""
    survey = simulate_demo_survey(tmp_path / "sim", seed=2, n_fields=3, n_epochs=2)
    mosaic = tmp_path / "in" / "exp.fits"
    mosaic.parent.mkdir()
    mosaic.write_bytes(_mosaic(survey, 0, broken="no wcs"))
    astrid = astrid_in(clean_env(tmp_path / "data"))
    assert astrid("init").returncode == 0
    run = astrid("ingest", str(tmp_path / "in"))
    assert run.returncode == 0, run.stderr
    assert "3 ingested, 0 already present, 1 failed" in run.stdout
    (line,) = [ln for ln in run.stdout.splitlines() if ln.startswith("skipped")]
    assert f"{mosaic}[S2]: HDU 10 (S2)" in line and "no celestial WCS" in line
    again = astrid("ingest", str(mosaic))
    assert "0 ingested, 3 already present, 1 failed" in again.stdout


def test_an_interrupted_mosaic_ingest_is_finished_by_the_retry(
    runtime: Runtime, tmp_path: Path
) -> None:
    """A run that stopped after storing some CCDs (here: its stage run and one CCD's row
    removed, as if it had died before them) is finished by running it again: the missing
    CCD is created, the others are found by their content hash, the blob is not stored
    twice."""
    survey = simulate_demo_survey(tmp_path / "sim", seed=6, n_fields=3, n_epochs=2)
    path = tmp_path / "exp.fits"
    path.write_bytes(_mosaic(survey, 0, broken="all nan"))
    first = ingest_paths(runtime, [path])
    ids = [o.observation_id for o in first if o.observation_id]
    assert len(ids) == 3
    with runtime.db.session() as s:
        s.execute(delete(StageRun).where(StageRun.stage == "ingest"))
        s.execute(delete(Observation).where(Observation.id == ids[1]))
    retry = ingest_paths(runtime, [path])
    assert [(o.hdu, o.status) for o in retry] == [
        ("N4", "duplicate"), ("N5", "ingested"), ("S1", "duplicate"), ("S2", "failed"),
    ]  # fmt: skip
    assert [retry[0].observation_id, retry[2].observation_id] == [ids[0], ids[2]]
    with runtime.db.session() as s:
        rows = s.scalars(select(Observation).order_by(Observation.hdu_index)).all()
        assert [o.extra["hdu_name"] for o in rows] == ["N4", "N5", "S1"]
        assert len({o.blob_key for o in rows}) == 1
        runs = s.scalars(select(StageRun).where(StageRun.stage == "ingest")).all()
        assert [r.status for r in runs] == ["succeeded"]
    assert len(list(runtime.blobs.keys())) == 1


def _hst_chips(
    survey: DemoSurvey, epoch: int, fields: tuple[str, ...] = ("field-a", "field-b")
) -> bytes:
    """Epoch ``epoch`` of field-a and field-b as an HST ``_flt``-style two-chip file:
    ``SCI,1``, ``ERR,1``, ``DQ,1``, ``SCI,2``, ``ERR,2``, ``DQ,2`` (each chip its own WCS;
    ERR the square root of the simulated variance, DQ its mask; chip 2's DQ of the reference
    epoch also flags :data:`FLAGGED`). One field: a single-chip file (``SCI,1`` alone, its
    DQ flagged)."""
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU()]
    hdus[0].header["INSTRUME"] = "SIMCAM"
    for chip, field in enumerate(fields, start=1):
        path = next(p for p in survey.paths if p.name == f"{field}-e{epoch}.fits")
        with fits.open(path) as hdul:
            header = _strip(hdul[0].header)
            hdus.append(
                fits.ImageHDU(hdul[0].data.astype(np.float32), header, name="SCI", ver=chip)
            )
            err = np.sqrt(np.array(hdul["VARIANCE"].data, dtype=np.float32))
            hdus.append(fits.ImageHDU(err, name="ERR", ver=chip))
            dq = np.array(hdul["MASK"].data, dtype=np.int16) * 4  # any flag excludes
            if chip == len(fields) and epoch == 0:
                dq[FLAGGED] |= 16
            hdus.append(fits.ImageHDU(dq, name="DQ", ver=chip))
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def test_hst_chips_are_one_observation_each_through_process(
    runtime: Runtime, tmp_path: Path
) -> None:
    """A two-chip file (``SCI,1``/``SCI,2`` told apart by EXTVER, each with its ERR and DQ):
    one observation per chip, named ``SCI,n``; processed against a two-chip reference epoch,
    each chip reads its own DQ (chip 2's flag reaches chip 2's mask only) and each injected
    transient is found on its own chip at its RA/Dec."""
    survey = simulate_demo_survey(
        tmp_path / "sim", seed=4, n_fields=2, n_epochs=2, n_transients=3,
        flux_range=(3000.0, 6000.0),
    )  # fmt: skip
    ref_file, new_file = tmp_path / "j_e0_flt.fits", tmp_path / "j_e1_flt.fits"
    ref_file.write_bytes(_hst_chips(survey, 0))
    new_file.write_bytes(_hst_chips(survey, 1))

    outcomes = ingest_paths(runtime, [ref_file, new_file], survey="test")
    assert [(Path(o.path).name, o.hdu, o.status) for o in outcomes] == [
        (name, chip, "ingested") for name in (ref_file.name, new_file.name)
        for chip in ("SCI,1", "SCI,2")
    ]  # fmt: skip
    assert outcomes[1].label == f"{ref_file}[SCI,2]"
    keys = {blob_key(p.read_bytes()): p.name for p in (ref_file, new_file)}
    with runtime.db.session() as s:
        rows = s.scalars(select(Observation).order_by(Observation.id)).all()
        obs = {(keys[o.blob_key], o.extra["hdu_name"]): (o.id, o.hdu_index, o.ra) for o in rows}
    assert len(rows) == 4
    assert {chip: index for (_, chip), (_, index, _) in obs.items()} == {"SCI,1": 1, "SCI,2": 4}
    assert [round(obs[(ref_file.name, c)][2]) for c in ("SCI,1", "SCI,2")] == [0, 318]

    _process_and_find(
        runtime,
        survey,
        {chip: obs[(new_file.name, chip)][0] for chip in ("SCI,1", "SCI,2")},
        {chip: obs[(ref_file.name, chip)][0] for chip in ("SCI,1", "SCI,2")},
        {"field-a": "SCI,1", "field-b": "SCI,2"},
        flagged="SCI,2",  # chip 2's own DQ, not chip 1's
        n_transients=6,
    )


def test_a_single_sci_file_is_one_observation_reading_its_dq_and_err(
    runtime: Runtime, tmp_path: Path
) -> None:
    """One SCI (EXTVER 1) with its ERR and DQ (WFC3/IR, JWST): one observation as before
    (``SCI``, content hash = blob key); preprocess reads its DQ as the mask (any flag set =
    excluded) and its ERR squared as the variance, as for each chip of a two-chip file."""
    from astrid.pipeline.stages.preprocess import preprocess_observation

    survey = simulate_demo_survey(tmp_path / "sim", seed=4, n_fields=1, n_epochs=2)
    path = tmp_path / "single_flt.fits"
    path.write_bytes(_hst_chips(survey, 0, ("field-a",)))
    (outcome,) = ingest_paths(runtime, [path], survey="test")
    assert outcome.status == "ingested" and outcome.hdu is None
    assert outcome.observation_id is not None
    with runtime.db.session() as s:
        obs = s.get(Observation, outcome.observation_id)
        assert obs is not None and obs.extra["hdu_name"] == "SCI" and obs.hdu_index == 1
        assert obs.content_hash == obs.blob_key == blob_key(path.read_bytes())
    preprocess_observation(runtime, outcome.observation_id)
    with runtime.db.session() as s:
        row = s.scalars(
            select(PreprocessResult).where(
                PreprocessResult.observation_id == outcome.observation_id
            )
        ).one()
        mask_key, variance_key = str(row.mask_key), str(row.variance_key)
    with fits.open(io.BytesIO(runtime.blobs.get(mask_key))) as hdul:
        mask = np.array(hdul[0].data, dtype=bool)
    with fits.open(io.BytesIO(runtime.blobs.get(variance_key))) as hdul:
        variance = np.array(hdul[0].data, dtype=np.float64)
    with fits.open(path) as hdul:
        err = np.array(hdul["ERR", 1].data, dtype=np.float64)
    assert mask[FLAGGED].all()  # DQ,1's flag
    good = ~mask & np.isfinite(variance)
    assert np.median(variance[good] / err[good] ** 2) == pytest.approx(1.0, rel=1e-3)


def test_a_jwst_dq_plane_excludes_do_not_use_pixels_only(runtime: Runtime, tmp_path: Path) -> None:
    """JWST sets DO_NOT_USE (1) on every unusable pixel; JUMP_DET (4, a ray removed from
    the ramp) leaves a good slope: preprocess masks the first and keeps the second."""
    from astrid.pipeline.stages.preprocess import preprocess_observation

    survey = simulate_demo_survey(tmp_path / "sim", seed=4, n_fields=1, n_epochs=2)
    with fits.open(io.BytesIO(_hst_chips(survey, 0, ("field-a",)))) as hdul:
        hdul[0].header["TELESCOP"] = "JWST"
        hdul["SCI", 1].header.remove("TELESCOP", ignore_missing=True)  # JWST: primary only
        dq = np.zeros(hdul["DQ", 1].data.shape, np.uint32)  # JWST's DQ is 32-bit
        dq[60:70, 60:72] = 4  # JUMP_DET only
        dq[20:30, 40:50] = 1 | 4  # DO_NOT_USE and JUMP_DET
        # DO_NOT_USE beside a bit above 2**24, where float32 has no room for bit 0: the
        # plane must be read as integers
        dq[80:90, 40:50] = 2**30 | 1
        hdul["DQ", 1].data = dq
        path = tmp_path / "jw_cal.fits"
        hdul.writeto(path)
    (outcome,) = ingest_paths(runtime, [path], survey="test")
    assert outcome.observation_id is not None
    preprocess_observation(runtime, outcome.observation_id)
    with runtime.db.session() as s:
        row = s.scalars(
            select(PreprocessResult).where(
                PreprocessResult.observation_id == outcome.observation_id
            )
        ).one()
        mask_key = str(row.mask_key)
    with fits.open(io.BytesIO(runtime.blobs.get(mask_key))) as hdul:
        mask = np.array(hdul[0].data, dtype=bool)
    assert mask[20:30, 40:50].all()
    assert mask[80:90, 40:50].all()
    assert mask[60:70, 60:72].mean() < 0.5  # kept (only preprocess's own rules may touch them)


def _preprocessed_mask(runtime: Runtime, observation_id: int) -> np.ndarray:
    with runtime.db.session() as s:
        mask_key = s.scalars(
            select(PreprocessResult.mask_key).where(
                PreprocessResult.observation_id == observation_id
            )
        ).one()
    with fits.open(io.BytesIO(runtime.blobs.get(str(mask_key)))) as hdul:
        return np.array(hdul[0].data, dtype=bool)


def test_an_hst_dq_plane_keeps_hot_and_warm_pixels(runtime: Runtime, tmp_path: Path) -> None:
    """ACS/WFC (TELESCOP and INSTRUME in the primary header): hot (16) and warm (64) pixels
    keep their value, STScI's drizzle "good" bits; a cosmic ray flagged by AstroDrizzle
    (4096) and a hot pixel that is also saturated (16 | 256) are masked by preprocess."""
    from astrid.pipeline.stages.preprocess import preprocess_observation

    survey = simulate_demo_survey(tmp_path / "sim", seed=4, n_fields=1, n_epochs=2)
    with fits.open(io.BytesIO(_hst_chips(survey, 0, ("field-a",)))) as hdul:
        hdul[0].header.update({"TELESCOP": "HST", "INSTRUME": "ACS", "DETECTOR": "WFC"})
        hdul["SCI", 1].header.remove("TELESCOP", ignore_missing=True)
        dq = np.zeros_like(hdul["DQ", 1].data)
        dq[60:70, 60:72] = 16  # hot
        dq[80:90, 20:30] = 64  # warm
        dq[20:30, 40:50] = 4096  # cosmic ray (AstroDrizzle)
        dq[100:110, 100:110] = 16 | 256  # hot and saturated
        hdul["DQ", 1].data = dq
        path = tmp_path / "j_flt.fits"
        hdul.writeto(path)
    (outcome,) = ingest_paths(runtime, [path], survey="test")
    assert outcome.observation_id is not None
    preprocess_observation(runtime, outcome.observation_id)
    mask = _preprocessed_mask(runtime, outcome.observation_id)
    assert mask[20:30, 40:50].all() and mask[100:110, 100:110].all()
    # kept (only preprocess's own rules, stars' saturation say, may touch them)
    assert mask[60:70, 60:72].mean() < 0.5 and mask[80:90, 20:30].mean() < 0.5


def test_preprocessing_a_gzipped_mosaic_reads_and_decompresses_it_once(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each CCD of a gzipped mosaic is its own observation; preprocessing them one after
    the other fetches (reads, hash-checks) and decompresses the file once, not once per
    CCD (``products.raw_fits``), and each CCD still reads its own mask plane."""
    from astrid.pipeline.stages import products
    from astrid.pipeline.stages.preprocess import preprocess_observation

    survey = simulate_demo_survey(tmp_path / "sim", seed=4, n_fields=3, n_epochs=2)
    data = gzip.compress(_mosaic(survey, 0, broken="all nan"), 1)
    key = blob_key(data)
    outcomes = ingest_paths(runtime, [_write(tmp_path / "exp.fits.gz", data)], survey="test")
    ids = {o.hdu: o.observation_id for o in outcomes if o.observation_id}
    assert set(ids) == set(CCDS)
    products.clear_recent_products()
    from tests.pipeline.test_raw_spool import _count_decompressions

    fetched, unzipped = _count_decompressions(runtime, monkeypatch)
    for ccd in CCDS:
        assert preprocess_observation(runtime, ids[ccd]).status == "done"
    # one streamed decompression; the file (below the cache) kept in memory, not spooled
    assert fetched.count(key) == 1 and unzipped == ["stream"]
    assert not (products.raw_spool_dir(runtime) / f"{key}.fits").exists()
    masks = {ccd: _preprocessed_mask(runtime, ids[ccd]) for ccd in CCDS}
    assert [bool(masks[c][FLAGGED].all()) for c in CCDS] == [False, True, False]  # N5_MASK


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_file_mixing_chips_and_ccd_named_images_is_one_observation_each(
    runtime: Runtime, tmp_path: Path
) -> None:
    """``SCI,1``/``SCI,2`` (with DQ,n) and a CCD-named image ``N4`` (with ``N4_MASK``) of
    the same shape, and a distortion array of another shape (HST's WCSDVARR): three
    observations (the chips and N4), N4 reading its own mask; the distortion array is not
    an image to ingest."""
    survey = simulate_demo_survey(tmp_path / "sim", seed=4, n_fields=3, n_epochs=2)
    with fits.open(io.BytesIO(_hst_chips(survey, 0))) as hdul:
        hdus = list(hdul)
        path = next(p for p in survey.paths if p.name == "field-c-e0.fits")
        with fits.open(path) as ccd:
            hdus.append(fits.ImageHDU(ccd[0].data.astype(np.float32), _strip(ccd[0].header),
                                      name="N4"))  # fmt: skip
            mask = np.zeros(ccd[0].data.shape, np.uint8)
            mask[FLAGGED] = 1
            hdus.append(fits.ImageHDU(mask, name="N4_MASK"))
        hdus.append(fits.ImageHDU(np.zeros((33, 65), np.float32), name="WCSDVARR", ver=1))
        mixed = tmp_path / "mixed.fits"
        fits.HDUList(hdus).writeto(mixed)
    outcomes = ingest_paths(runtime, [mixed], survey="test")
    assert [(o.hdu, o.status) for o in outcomes] == [
        ("SCI,1", "ingested"), ("SCI,2", "ingested"), ("N4", "ingested"),
    ]  # fmt: skip
    with runtime.db.session() as s:
        rows = s.scalars(select(Observation).order_by(Observation.hdu_index)).all()
        assert [(o.extra["hdu_name"], o.hdu_index) for o in rows] == [
            ("SCI,1", 1), ("SCI,2", 4), ("N4", 7),
        ]  # fmt: skip
        n4 = rows[2].id
    from astrid.pipeline.stages.preprocess import preprocess_observation

    assert preprocess_observation(runtime, n4).status == "done"
    assert _preprocessed_mask(runtime, n4)[FLAGGED].all()
