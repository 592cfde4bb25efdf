"""The closed loop end to end with tiny models: votes in the database → a stored, hashed
dataset → a challenger registered in MLflow → a promotion decision that is a real
comparison (a better challenger is promoted, a worse one is not)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from sqlalchemy import select

from astrid.domain.retrain import RetrainError, RetrainOptions, retrain
from astrid.model.registry import list_versions
from astrid.runtime import Runtime
from astrid.store.blobs import DatasetManifest
from astrid.store.tables import ModelRun, TrainingDataset
from tests.domain.loop_fixtures import NAME, add_stamped_detections, curate, register_champion


def _aliases(uri: str) -> dict[str, int]:
    return {a: r["version"] for r in list_versions(uri, NAME) for a in r["aliases"]}


def test_better_challenger_is_promoted_and_everything_recorded(
    runtime: Runtime, tmp_path: Path
) -> None:
    uri = runtime.settings.resolved_mlflow_uri
    register_champion(uri, tmp_path, trained=False)  # an untrained champion
    curate(runtime, add_stamped_detections(runtime, 96))
    opts = RetrainOptions(
        epochs=4,
        lr=1e-2,
        batch_size=16,
        sim_pairs=2,
        image_size=96,
        promote_if_better=True,
        warm_start=False,
        num_threads=1,
    )
    report = retrain(runtime, opts, tracking_uri=uri)

    # the dataset: stored in the blob store with a manifest whose hash is its version
    manifest = DatasetManifest.from_bytes(runtime.blobs.get(report.manifest_key))
    assert manifest.version == report.dataset_version
    sources = {m.get("label_source", "truth") for _k, m in manifest.members}
    assert sources == {"curated", "truth"}  # curated votes + simulated truth
    assert report.counts["curated_holdout"] > 0 and report.counts["simulated"] > 0
    with runtime.db.session() as s:
        ds = s.scalar(select(TrainingDataset).where(TrainingDataset.version == manifest.version))
        assert ds is not None and ds.n_members == len(manifest.members)
        run = s.scalar(select(ModelRun).where(ModelRun.kind == "retrain"))
        assert run is not None and run.mlflow_run_id == report.mlflow_run_id
        assert run.metrics["promoted"] == 1.0

    # the decision is a comparison on the held-out curated set
    ch = report.challenger_metrics["curated_holdout_roc_auc"]
    cm = report.champion_metrics["curated_holdout_roc_auc"]
    assert ch > 0.95 and ch > cm, (ch, cm)
    assert report.promoted
    assert _aliases(uri)["champion"] == report.challenger["version"] == 2

    # MLflow: params, metrics, the dataset hash, the decision, the energy
    logged = mlflow.MlflowClient(uri).get_run(report.mlflow_run_id)
    assert logged.data.params["dataset_version"] == report.dataset_version
    assert logged.data.tags["dataset_hash"] == report.dataset_version
    assert "challenger better" in logged.data.tags["decision"]
    assert logged.data.metrics["promoted"] == 1.0
    assert logged.data.metrics["train_energy_kwh"] > 0
    assert logged.data.metrics["score_energy_kwh"] > 0
    assert logged.data.tags["energy_method"] in ("codecarbon", "estimate")


def test_worse_challenger_is_not_promoted(runtime: Runtime, tmp_path: Path) -> None:
    uri = runtime.settings.resolved_mlflow_uri
    champion = register_champion(uri, tmp_path, trained=True)
    curate(runtime, add_stamped_detections(runtime, 48, seed=1))
    # a challenger that barely moves from a fresh network: worse than the trained champion
    opts = RetrainOptions(
        epochs=1,
        lr=1e-7,
        batch_size=16,
        sim_pairs=0,
        promote_if_better=True,
        warm_start=False,
        num_threads=1,
    )
    report = retrain(runtime, opts, tracking_uri=uri)
    assert report.champion_metrics["curated_holdout_roc_auc"] > 0.95
    assert (
        report.challenger_metrics["curated_holdout_roc_auc"]
        < report.champion_metrics["curated_holdout_roc_auc"]
    )
    assert not report.promoted and "not better" in report.decision
    aliases = _aliases(uri)
    assert aliases["champion"] == champion["version"]
    assert aliases["challenger"] == report.challenger["version"]
    tags = mlflow.MlflowClient(uri).get_run(report.mlflow_run_id).data.tags
    assert "not better" in tags["decision"]


def test_too_few_curated_detections_is_a_named_error(runtime: Runtime) -> None:
    curate(runtime, add_stamped_detections(runtime, 2))
    with pytest.raises(RetrainError, match="at least 3 observations"):
        retrain(
            runtime, RetrainOptions(sim_pairs=0), tracking_uri=runtime.settings.resolved_mlflow_uri
        )
    with pytest.raises(RetrainError, match="unknown retrain options"):
        RetrainOptions.from_params({"epoch": 3})


def test_real_alerts_join_the_set_and_their_held_out_night_is_evaluated(
    runtime: Runtime, tmp_path: Path, shared_data: Path
) -> None:
    import csv
    import shutil

    folder = shared_data / "ztf_alerts_train"
    alerts = tmp_path / "alerts"
    alerts.mkdir()
    with (folder / "labels.csv").open() as f:
        for row in csv.DictReader(f):
            if row["night"] in ("2459540", "2458849"):
                shutil.copy(folder / f"{row['candid']}.avro", alerts)
    uri = runtime.settings.resolved_mlflow_uri
    register_champion(uri, tmp_path, trained=True)
    curate(runtime, add_stamped_detections(runtime, 24, seed=3))
    opts = RetrainOptions(
        epochs=1,
        batch_size=32,
        sim_pairs=0,
        alerts=[str(alerts)],
        holdout_nights=["2458849"],
        num_threads=1,
    )
    report = retrain(runtime, opts, tracking_uri=uri)
    assert report.counts["holdout_nights"] == ["2458849"]
    assert report.counts["alerts_holdout"] == 50 and report.counts["alerts_fit"] > 100
    by_source = report.counts["by_source"]
    assert (
        by_source["curated"] > 0
        and by_source.get("drb", 0) + by_source.get("known_asteroid", 0) > 0
    )
    for side in (report.challenger_metrics, report.champion_metrics):
        assert side["alerts_holdout_n"] == 50 and 0.0 <= side["alerts_holdout_roc_auc"] <= 1.0
    assert "alerts_holdout" in report.criterion and "curated_holdout" in report.criterion
    # nothing of the held-out night is in the stored training set
    manifest = DatasetManifest.from_bytes(runtime.blobs.get(report.manifest_key))
    assert "2458849" not in {m.get("night") for _k, m in manifest.members}
