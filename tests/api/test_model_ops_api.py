"""Model operations over HTTP on real databases and a real MLflow store, with tiny models:
the drift job (a shifted night raises ``model.drift``, an unshifted one does not), shadow
scores per version and their summary, and the retraining run started by an admin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select

from astrid.domain.model_drift import check_drift
from astrid.domain.model_scores import shadow_recent
from astrid.model.drift import stamp_statistics
from astrid.model.shadow import in_shadow
from astrid.store.tables import DomainEvent, ShadowScore
from tests.api.conftest import Api
from tests.domain.loop_fixtures import (
    NAME,
    add_stamped_detections,
    curate,
    raw_triplet,
    register_champion,
)


def _reference(n: int = 400) -> dict[str, list[float]]:
    """A training reference: uniform scores and the statistics of unshifted stamps."""
    rng = np.random.default_rng(7)
    stats = stamp_statistics(np.stack([np.stack(raw_triplet(i % 2 == 0, rng)) for i in range(n)]))
    ref = {k: [float(x) for x in v] for k, v in stats.items()}
    ref["score"] = [float(x) for x in rng.uniform(0, 1, n)]
    return ref


def _set_confidences(api: Api, ids: list[int], values: np.ndarray) -> None:
    from astrid.store.tables import Detection

    with api.runtime.db.session() as s:
        for det_id, v in zip(ids, values, strict=True):
            s.get_one(Detection, det_id).confidence = float(v)


def test_drift_job_emits_an_event_only_for_a_shifted_night(api: Api, tmp_path: Path) -> None:
    uri = api.runtime.settings.resolved_mlflow_uri
    register_champion(uri, tmp_path, trained=False, extra={"drift_reference": _reference()})
    rng = np.random.default_rng(3)
    calm = add_stamped_detections(api.runtime, 40, seed=11, mjd=60000.8)
    _set_confidences(api, [d for d, _ in calm], rng.uniform(0, 1, 40))
    shifted = add_stamped_detections(api.runtime, 40, seed=12, mjd=60001.8, shift=400.0)
    _set_confidences(api, [d for d, _ in shifted], rng.beta(8, 1, 40))

    rows = check_drift(api.runtime, name=NAME, nights=["60000", "60001"])
    by_night = {r["night"]: r for r in rows}
    assert not by_night["60000"]["drifted"], by_night["60000"]["psi"]
    assert by_night["60000"]["max_psi"] < 0.25
    assert by_night["60001"]["drifted"]
    assert by_night["60001"]["psi"]["new_median"] > 1.0  # sky moved by 80 sigma
    assert by_night["60001"]["psi"]["score"] > 0.25
    with api.runtime.db.session() as s:
        events = list(s.scalars(select(DomainEvent).where(DomainEvent.event_type == "model.drift")))
    assert len(events) == 1
    assert events[0].payload["night"] == "60001"
    assert "new_median" in events[0].payload["quantities"]

    got = api.client.get(f"/api/v1/models/{NAME}/drift", headers=api.as_role("viewer"))
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["drifting"] is True and [c["night"] for c in body["checks"]] == ["60001", "60000"]
    assert (
        api.client.get("/api/v1/models/nope/drift", headers=api.as_role("viewer")).status_code
        == 404
    )
    metrics = api.client.get("/metrics").text
    assert (
        'astrid_model_drift_psi{model="astrid-realbogus",night="60001",quantity="score"}' in metrics
    )


def test_drift_without_a_reference_is_a_named_error(api: Api, tmp_path: Path) -> None:
    import pytest

    from astrid.domain.model_drift import DriftReferenceError

    register_champion(api.runtime.settings.resolved_mlflow_uri, tmp_path, trained=False)
    add_stamped_detections(api.runtime, 20, mjd=60000.8)
    with pytest.raises(DriftReferenceError, match="no drift reference"):
        check_drift(api.runtime, name=NAME, nights=["60000"])


def test_shadow_scores_per_version_and_their_summary(api: Api, tmp_path: Path) -> None:
    uri = api.runtime.settings.resolved_mlflow_uri
    champion = register_champion(uri, tmp_path, trained=True)
    challenger = register_champion(uri, tmp_path, trained=False, seed=5)
    dets = add_stamped_detections(api.runtime, 40, seed=2)
    curate(api.runtime, dets[:30])  # 10 stay unlabelled

    result = shadow_recent(api.runtime, name=NAME, fraction=0.5)
    chosen = {d for d, _ in dets if in_shadow(d, 0.5)}
    assert result["chosen"] == len(chosen) and 5 < len(chosen) < 35
    with api.runtime.db.session() as s:
        stored = list(s.scalars(select(ShadowScore)))
    versions = {(r.model_version, r.role) for r in stored}
    assert versions == {(champion["semver"], "champion"), (challenger["semver"], "challenger")}
    assert {r.detection_id for r in stored} == chosen
    a = {r.detection_id: r.score for r in stored if r.role == "champion"}
    b = {r.detection_id: r.score for r in stored if r.role == "challenger"}
    truth = dict(dets)
    labelled = [d for d in chosen if d in dict(dets[:30])]

    got = api.client.get(f"/api/v1/models/{NAME}/shadow", headers=api.as_role("viewer"))
    assert got.status_code == 200, got.text
    s = got.json()
    assert s["champion"] == champion["semver"] and s["challenger"] == challenger["semver"]
    assert s["n"] == len(chosen) and s["n_labelled"] == len(labelled)
    expected_agreement = np.mean([(a[d] >= 0.5) == (b[d] >= 0.5) for d in chosen])
    assert abs(s["agreement"] - expected_agreement) < 1e-9
    hits = [d for d in labelled if a[d] >= 0.5]
    reals = [d for d in labelled if truth[d]]
    assert abs(s["champion_recall"] - sum(truth[d] for d in hits) / len(reals)) < 1e-9
    assert abs(s["champion_precision"] - sum(truth[d] for d in hits) / len(hits)) < 1e-9
    b_hits = [d for d in labelled if b[d] >= 0.5]
    if b_hits:
        assert abs(s["challenger_precision"] - sum(truth[d] for d in b_hits) / len(b_hits)) < 1e-9
    bad = api.client.get(f"/api/v1/models/{NAME}/shadow?threshold=2", headers=api.as_role("viewer"))
    assert bad.status_code == 422


def test_admin_starts_a_retraining_and_polls_it(api: Api, tmp_path: Path) -> None:
    uri = api.runtime.settings.resolved_mlflow_uri
    register_champion(uri, tmp_path, trained=False)
    curate(api.runtime, add_stamped_detections(api.runtime, 36, seed=4))
    url = f"/api/v1/models/{NAME}/retrain"
    body = {"epochs": 2, "lr": 0.01, "sim_pairs": 0, "promote_if_better": True}
    assert api.client.post(url, json=body, headers=api.as_role("expert")).status_code == 403
    bad = api.client.post(url, json={"epochs": 0}, headers=api.as_role("admin"))
    assert bad.status_code == 422 and "epochs" in bad.text
    missing = api.client.post("/api/v1/models/nope/retrain", json={}, headers=api.as_role("admin"))
    assert missing.status_code == 404

    started = api.client.post(url, json=body, headers=api.as_role("admin"))
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    # the test client runs the background task before it returns; a server answers at once
    status = api.client.get(f"{url}/{run_id}", headers=api.as_role("viewer")).json()
    assert status["status"] == "succeeded", status
    result = status["result"]
    assert len(result["dataset_version"]) == 64
    assert result["challenger"]["semver"] == "1.1.0"
    assert "criterion" in result and "ROC-AUC" in result["criterion"]
    assert result["promoted"] == (
        result["challenger_metrics"]["curated_holdout_roc_auc"]
        > result["champion_metrics"]["curated_holdout_roc_auc"]
    )
    other = api.client.get(f"/api/v1/models/other/retrain/{run_id}", headers=api.as_role("viewer"))
    assert other.status_code == 404
