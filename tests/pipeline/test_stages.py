"""The pipeline stages on a simulated field, on SQLite and PostgreSQL.

One field, three epochs: a deep reference (epoch 0) and two later epochs with bright
transients injected at known positions. The stages must pick epoch 0 as the reference,
find every injected transient as a detection at its position, store cutouts, move the
observations through their status machine with events, and store nothing twice when run
again.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from sqlalchemy import func, select

from astrid.pipeline.demo import DemoSurvey, match_truth
from astrid.pipeline.orchestrate import process_observation
from astrid.pipeline.params import PipelineParams, PreprocessParams
from astrid.pipeline.runner import stable_hash
from astrid.pipeline.stages.common import StageResult, advance_status, identity_hash
from astrid.pipeline.stages.ingest import ingest_bytes
from astrid.pipeline.stages.preprocess import LowQualityError, preprocess_observation
from astrid.pipeline.stages.reference import choose_reference
from astrid.runtime import Runtime
from astrid.store.db import upgrade
from astrid.store.sky_index import angular_separation_deg
from astrid.store.tables import (
    Candidate,
    Detection,
    Difference,
    DomainEvent,
    Observation,
    ObservationStatus,
    PreprocessResult,
    Reference,
)
from tests.pipeline.conftest import one_field_survey


def _survey(runtime: Runtime, tmp_path: Path) -> tuple[list[int], DemoSurvey]:
    return one_field_survey(runtime, tmp_path / "raw", seed=7, n_epochs=3, n_transients=5,
                            flux_range=(2500.0, 6000.0))  # fmt: skip


def _detect(runtime: Runtime, obs_id: int) -> StageResult:
    """The last stage result of the whole chain for one observation (the orchestrator)."""
    return process_observation(runtime, obs_id).stages[-1]


def _count(runtime: Runtime, table: type) -> int:
    with runtime.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


def test_stages_recover_injected_transients_and_rerun_stores_nothing_twice(
    runtime: Runtime, tmp_path: Path
) -> None:
    (e0, e1, e2), survey = _survey(runtime, tmp_path)
    truth = survey.truth

    # The first epoch has nothing earlier: it is preprocessed and waits as a reference.
    pre0 = preprocess_observation(runtime, e0)
    assert pre0.status == "done"
    first = choose_reference(runtime, e0, pre0)
    assert first.status == "skipped" and "no earlier" in (first.error or "")

    results = {i: _detect(runtime, i) for i in (e1, e2)}
    assert all(r.status == "done" for r in results.values()), results

    with runtime.db.session() as s:
        statuses = {o.id: o.status for o in s.scalars(select(Observation))}
        refs = list(s.scalars(select(Reference)))
        diffs = list(s.scalars(select(Difference)))
        dets = list(s.scalars(select(Detection)))
        pre = {p.observation_id: p for p in s.scalars(select(PreprocessResult))}
    assert statuses == {
        e0: ObservationStatus.PREPROCESSED,
        e1: ObservationStatus.COMPLETED,
        e2: ObservationStatus.COMPLETED,
    }
    # Epoch 0 (FWHM 2.6 px, twice the exposure) is the reference of both later epochs.
    assert len(refs) == 1 and refs[0].observation_ids == [e0]
    assert refs[0].blob_key == pre[e0].image_key
    assert abs(pre[e0].fwhm - 2.6) < 0.3 and abs(pre[e1].fwhm - 3.3) < 0.3
    assert sorted(d.observation_id for d in diffs) == [e1, e2]

    # Every injected transient (ideal S/N > 20) is a detection within 1 arcsec.
    names = {e1: "field-a-e1.fits", e2: "field-a-e2.fits"}
    found, conf = match_truth(
        truth, [(d.ra, d.dec, d.confidence, names[d.observation_id]) for d in dets], 1.0
    )
    assert len(truth) == 10 and found.all(), truth[~found]
    offsets = [
        float(
            np.min(
                angular_separation_deg(
                    np.array([d.ra for d in dets if names[d.observation_id] == row["file"]]),
                    np.array([d.dec for d in dets if names[d.observation_id] == row["file"]]),
                    row["ra"],
                    row["dec"],
                )
            )
        )
        * 3600.0
        for row in truth
    ]
    assert np.median(offsets) < 0.25  # arcsec (0.5 px)
    assert np.nanmedian(conf) > 0.5  # the model calls bright PSF-like transients real

    # Cutouts: FITS with NEW/REF/DIFF 63x63 stamps and a PNG triptych.
    keys = dets[0].cutout_keys
    with fits.open(io.BytesIO(runtime.blobs.get(keys["fits"]))) as hdul:
        assert [h.name for h in hdul[1:]] == ["NEW", "REF", "DIFF"]
        assert hdul["DIFF"].data.shape == (63, 63)
        # the stamp's WCS puts the detection at its centre pixel (31, 31), within 0.5 px
        ra_c, dec_c = WCS(hdul["DIFF"].header).pixel_to_world_values(31, 31)
        assert angular_separation_deg(ra_c, dec_c, dets[0].ra, dets[0].dec) * 3600 < 0.36
    assert runtime.blobs.get(keys["png"])[:8] == b"\x89PNG\r\n\x1a\n"

    # Events: one per detection, and the full status path of a processed observation.
    with runtime.db.session() as s:
        n_created = s.scalar(
            select(func.count())
            .select_from(DomainEvent)
            .where(DomainEvent.event_type == "detection.created")
        )
        path = [
            e.payload["to"]
            for e in s.scalars(
                select(DomainEvent)
                .where(
                    DomainEvent.event_type == "observation.status_changed",
                    DomainEvent.aggregate_id == e1,
                )
                .order_by(DomainEvent.id)
            )
        ]
    assert n_created == len(dets)
    assert path == [
        "preprocessing",
        "preprocessed",
        "differencing",
        "differenced",
        "detecting",
        "completed",
    ]

    # Re-running stores nothing twice: exactly one Difference per (obs, ref, method, params).
    counts = {t: _count(runtime, t) for t in (PreprocessResult, Difference, Candidate, Detection)}
    again = [_detect(runtime, i) for i in (e0, e1, e2)]
    assert [r.status for r in again[1:]] == ["reused", "reused"]
    assert {t: _count(runtime, t) for t in counts} == counts

    # Other parameters are another product: a second Difference for e1, not a replacement.
    def difference_only(params: dict[str, dict[str, float]]) -> StageResult:
        return process_observation(runtime, e1, params, stages=("difference",)).stages[-1]

    other = difference_only({"difference": {"threshold": 8.0}})
    assert other.stage == "difference" and other.status == "done"
    assert difference_only({"difference": {"threshold": 8.0}}).status == "reused"
    with runtime.db.session() as s:
        hashes = s.scalars(select(Difference.params_hash).where(Difference.observation_id == e1))
        assert len(set(hashes)) == 2
        assert s.get(Observation, e1).status == ObservationStatus.DIFFERENCED
    # New preprocessing parameters mid-chain: the status walks on through the re-run edge
    # (completed → preprocessing) with checked transitions, and a second product is stored.
    redo = preprocess_observation(runtime, e1, PreprocessParams(detect_cosmics=False))
    assert redo.status == "done", redo
    with runtime.db.session() as s:
        assert s.get(Observation, e1).status == ObservationStatus.PREPROCESSED
        n_pre = s.scalar(
            select(func.count())
            .select_from(PreprocessResult)
            .where(PreprocessResult.observation_id == e1)
        )
    assert n_pre == 2


def test_identity_hash_and_params() -> None:
    p = PipelineParams.from_mapping({"difference": {"threshold": 6}})
    assert p.difference.as_dict() == {"method": "zogy", "threshold": 6.0}
    assert isinstance(p.difference.threshold, float)  # 6 and 6.0 name the same product
    a = identity_hash("difference", p.difference, {"new": "k1"})
    assert a == identity_hash("difference", p.difference.as_dict(), {"new": "k1"})
    assert a != identity_hash("difference", p.difference, {"new": "k2"})
    assert a != identity_hash("difference", PipelineParams().difference, {"new": "k1"})
    with pytest.raises(Exception, match="unknown difference parameter"):
        PipelineParams.from_mapping({"difference": {"sigma": 3}})
    with pytest.raises(Exception, match="unknown pipeline parameter section"):
        PipelineParams.from_mapping({"differences": {}})
    with pytest.raises(Exception, match=r"preprocess\.detect_cosmics='yes' is not a bool"):
        PipelineParams.from_mapping({"preprocess": {"detect_cosmics": "yes"}})
    assert PipelineParams.from_mapping(p.as_dict()) == p


def test_default_parameters_hash_as_the_string_keyed_defaults_did() -> None:
    """Stored products and stage runs of earlier versions are recognised: the typed defaults
    serialise to exactly the dicts that were hashed before (``DEFAULT_PARAMS``)."""
    before = {
        "preprocess": {"detect_cosmics": True, "min_quality": 0.05},
        "reference": {"max_offset": 0.5, "min_overlap": 0.5, "min_quality": 0.2},
        "difference": {"method": "zogy", "threshold": 5.0},
        "detect": {"model": "default", "cutout_size": 63},
    }
    now = PipelineParams().as_dict()
    for stage, values in before.items():
        assert stable_hash(now[stage]) == stable_hash(values)
        assert identity_hash(stage, values, {"k": 1}) == identity_hash(
            stage, getattr(PipelineParams(), stage), {"k": 1}
        )
    # the params hashes stage runs of the previous layout stored (computed from its code)
    stored = {
        "preprocess": "44b1315682274587ea011f110917beb1938971b88ddd6da9c64db236aba11a03",
        "reference": "d20655ed2421a3609e619eec0b427424c45f111632cd759945b0b3ad1920d9bc",
        "difference": "1a7831fdd8bbed808311a2611a37f6f6f82c84ca005723bf7499486fedba8331",
        "detect": "4155c80f8adf4b2e398b28984336e862c160d396d4dea74469d2638a23135ef2",
    }
    assert {stage: stable_hash(values) for stage, values in now.items()} == stored


def test_low_quality_image_parks_the_observation(runtime: Runtime, tmp_path: Path) -> None:
    (e0, *_), _ = _survey(runtime, tmp_path)
    result = preprocess_observation(runtime, e0, PreprocessParams(min_quality=0.999))
    assert result.status == "failed" and LowQualityError.__name__ in (result.error or "")
    with runtime.db.session() as s:
        obs = s.get(Observation, e0)
        assert obs.status == ObservationStatus.FAILED
        assert "quality score" in (obs.status_reason or "")
        # a failed observation is not moved by the status walk
        advance_status(s, obs, ObservationStatus.COMPLETED, "test")
        assert obs.status == ObservationStatus.FAILED
    assert preprocess_observation(runtime, e0).status == "skipped"


def test_real_decam_pair_finds_the_known_transient(
    shared_data: Path, tmp_path: Path, make_runtime: Callable[..., Runtime]
) -> None:
    """DECam i-band: reference DEC-OBS18a, science DEC-OBS04a (given a later MJD, since both
    cutouts carry the same MJD-OBS); the compact source at RA 318.1082, Dec -66.0157 stands
    at ~12.8 sigma in the SFFT authors' decorrelated difference."""
    url = f"sqlite:///{tmp_path / 'decam.db'}"
    upgrade(url)
    runtime = make_runtime(url)
    src = shared_data / "decam_cutouts"
    ref_id, _ = ingest_bytes(runtime, (src / "DEC-OBS18a.mini.fits").read_bytes())
    with fits.open(src / "DEC-OBS04a.mini.fits") as hdul:
        hdul[0].header["MJD-OBS"] = hdul[0].header["MJD-OBS"] + 30.0
        buf = io.BytesIO()
        hdul.writeto(buf)
    new_id, _ = ingest_bytes(runtime, buf.getvalue())
    assert preprocess_observation(runtime, ref_id).ok
    result = _detect(runtime, new_id)
    assert result.status == "done", result
    with runtime.db.session() as s:
        dets = list(s.scalars(select(Detection).where(Detection.observation_id == new_id)))
        ref = s.scalars(select(Reference)).one()
    assert ref.observation_ids == [ref_id]
    sep = (
        angular_separation_deg(
            np.array([d.ra for d in dets]), np.array([d.dec for d in dets]), 318.1082, -66.0157
        )
        * 3600.0
    )
    best = dets[int(np.argmin(sep))]
    assert float(np.min(sep)) < 0.6  # arcsec (DECam pixels are 0.26")
    assert best.snr > 8.0 and best.extra["sign"] == 1


def test_truth_matching_and_completeness_curve() -> None:
    from astropy.table import Table

    from astrid.pipeline.report import completeness_curve

    truth = Table({"ra": [10.0, 10.0, 10.01], "dec": [0.0, 0.001, 0.0], "file": ["a", "a", "b"]})
    dets = [(10.0 + 0.8 / 3600, 0.0, 0.9, "a"), (10.01, 0.0, None, "a")]  # 2nd: wrong file
    found, conf = match_truth(truth, dets, radius_arcsec=1.0)
    assert found.tolist() == [True, False, False] and conf[0] == 0.9 and np.isnan(conf[1])
    snr = np.array([1.0, 3.0, 5.0, 7.0, 9.0, 30.0])
    hit = np.array([False, False, True, True, True, True])
    x, frac, n = completeness_curve(snr, hit, edges=np.array([0.0, 4.0, 8.0, np.inf]))
    assert n.tolist() == [2, 2, 2] and frac.tolist() == [0.0, 1.0, 1.0]
    assert x.tolist() == [2.0, 6.0, 10.0]
