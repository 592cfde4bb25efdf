"""Re-scoring after a promotion and the flows registered for ``astrid schedule``."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from astrid.flows.library import FLOWS
from astrid.flows.schedules import RetryPlan, run_flow
from astrid.model.registry import promote
from astrid.runtime import Runtime
from astrid.store.tables import Detection, ShadowScore
from tests.domain.loop_fixtures import NAME, add_stamped_detections, register_champion


def test_model_flows_are_registered() -> None:
    assert {"retrain", "rescore", "shadow", "drift"} <= set(FLOWS)


def test_rescore_after_a_promotion_rescores_once(runtime: Runtime, tmp_path: Path) -> None:
    uri = runtime.settings.resolved_mlflow_uri
    first = register_champion(uri, tmp_path, trained=False, seed=1)
    second = register_champion(uri, tmp_path, trained=True, seed=2)
    dets = add_stamped_detections(runtime, 12, confidence=0.5)
    with runtime.db.session() as s:  # a detection without stamps is skipped, the rest go on
        s.add(Detection(ra=10.0, dec=0.0, healpix=0, confidence=0.5))
    # the first champion scores everything
    run = run_flow(runtime, "rescore", {"model_name": NAME}, retry=RetryPlan(retries=0))
    assert run.status == "succeeded", run.error
    assert run.result["scored"] == 12 and run.result["skipped"] == 1
    assert run.result["energy"]["energy_kwh_per_1000"] > 0
    again = run_flow(runtime, "rescore", {"model_name": NAME}, retry=RetryPlan(retries=0))
    assert again.result["scored"] == 0  # nothing new for the same champion

    promote(uri, second["semver"], NAME)
    run = run_flow(runtime, "rescore", {"model_name": NAME}, retry=RetryPlan(retries=0))
    assert run.result["scored"] == 12 and run.result["model_version"].endswith(second["semver"])
    with runtime.db.session() as s:
        rows = {(r.detection_id, r.model_version): r.score for r in s.scalars(select(ShadowScore))}
        for det_id, _real in dets:
            det = s.get_one(Detection, det_id)
            assert det.model_version == f"{NAME}@{second['semver']}"
            assert abs(det.confidence - rows[(det_id, second["semver"])]) < 1e-9
            assert (det_id, first["semver"]) in rows  # the earlier version's score is kept
    bad = run_flow(runtime, "rescore", {"days": 1, "bogus": 2}, retry=RetryPlan(retries=0))
    assert bad.status == "failed" and "unknown parameters" in (bad.error or "")
