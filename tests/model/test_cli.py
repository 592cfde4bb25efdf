"""`astrid train`, `astrid models ...` and `astrid score-alerts` end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from astrid.cli import app

TINY = Path(__file__).resolve().parents[2] / "notebooks" / "tiny_config.toml"


def test_train_list_promote_rollback(env) -> None:
    runner = CliRunner()
    uri = f"sqlite:///{env / 'data' / 'mlflow.db'}"
    # energy tracking on (the tiny config turns it off for the notebook's speed)
    config = env / "tiny_energy.toml"
    config.write_text(TINY.read_text().replace("track_emissions = false", "track_emissions = true"))
    r1 = runner.invoke(app, ["train", "--config", str(config), "--export", str(env / "pkg")])
    assert r1.exit_code == 0, r1.output
    assert "test ROC-AUC" in r1.output and "(1.0.0)" in r1.output
    assert (env / "pkg" / "model.pt").is_file() and (env / "pkg" / "config.json").is_file()
    assert "recorded dataset" in r1.output
    from sqlalchemy import select

    from astrid.store.db import Database
    from astrid.store.tables import Model, ModelRun, TrainingDataset

    with Database(f"sqlite:///{env / 'astrid.db'}").session() as session:
        model = session.scalars(select(Model)).one()
        assert model.version == "1.0.0" and model.training_dataset_id is not None
        runs = session.scalars(select(ModelRun).order_by(ModelRun.id)).all()
        assert [r.kind for r in runs] == ["train", "evaluate"]
        # every training records its energy (codecarbon, or the CPU-time estimate)
        train_metrics = runs[0].metrics
        assert train_metrics["energy_kwh"] > 0 and train_metrics["emissions_kg_co2eq"] > 0
        assert train_metrics["cpu_seconds"] > 0
        assert 0.0 <= runs[1].metrics["test_roc_auc"] <= 1.0
        assert "test_fpr_at_fnr_2pct" in runs[1].metrics
        assert session.scalars(select(TrainingDataset)).one().n_members > 0
    # a second version of the same package (registering is what is tested here)
    import mlflow

    from astrid.model.registry import register_run

    mlflow.set_tracking_uri(uri)
    exp_id = mlflow.create_experiment("cli-test", (env / "mlruns").as_uri())
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_artifacts(str(env / "pkg"), "model")
    assert register_run(uri, run.info.run_id, bump="patch")["semver"] == "1.0.1"
    listed = runner.invoke(app, ["models", "list", "--tracking-uri", uri])
    assert "1.0.0" in listed.output and "1.0.1" in listed.output
    assert runner.invoke(app, ["models", "promote", "1.0.1"]).exit_code == 0
    listed = runner.invoke(app, ["models", "list"]).output.splitlines()
    assert "champion" in listed[1] and "champion" not in listed[0]
    rolled = runner.invoke(app, ["models", "rollback"])
    assert rolled.exit_code == 0 and "(1.0.0)" in rolled.output
    again = runner.invoke(app, ["models", "rollback"])
    assert again.exit_code == 2 and "no earlier champion" in again.output


def test_train_refuses_bad_config(env) -> None:
    bad = env / "bad.toml"
    bad.write_text("[train]\nepochz = 3\n")
    result = CliRunner().invoke(app, ["train", "--config", str(bad)])
    assert result.exit_code == 2 and "epochz" in result.output


@pytest.mark.realdata
def test_score_alerts_writes_the_contract(env, shared_data) -> None:
    out = env / "scores.csv"
    alerts = shared_data / "ztf_alerts"
    one = sorted(alerts.glob("*.avro"))[0]
    result = CliRunner().invoke(app, ["score-alerts", str(alerts), str(one), "-o", str(out)])
    assert result.exit_code == 0, result.output
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 51
    assert list(rows[0])[:6] == ["objectId", "candid", "ra", "dec", "score", "model_version"]
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    assert rows[0]["model_version"].startswith("astrid-realbogus@")
    assert rows[-1]["candid"] == rows[0]["candid"]  # the single file repeats the first alert
    # --no-symmetry: one view for every alert; the scores differ only where the single-view
    # score was undecided (0.05-0.95)
    plain_out = env / "plain.csv"
    result = CliRunner().invoke(
        app, ["score-alerts", str(alerts), "-o", str(plain_out), "--no-symmetry"]
    )
    assert result.exit_code == 0, result.output
    with plain_out.open() as handle:
        plain = {r["candid"]: float(r["model_score"] or r["score"]) for r in csv.DictReader(handle)}
    sym = {r["candid"]: float(r["model_score"] or r["score"]) for r in rows}
    moved = [c for c in plain if abs(plain[c] - sym[c]) > 1e-6]
    assert moved and all(0.05 <= plain[c] <= 0.95 for c in moved)


def test_score_alerts_without_registered_model_is_a_clear_error(env, shared_data) -> None:
    result = CliRunner().invoke(
        app, ["score-alerts", str(shared_data / "ztf_alerts"), "--alias", "champion"]
    )
    assert result.exit_code == 2 and "no registered model" in result.output
