"""``astrid model retrain`` and ``astrid model drift`` on a migrated database (SQLite and
PostgreSQL) with a real MLflow store and a tiny champion."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from astrid.cli import app
from astrid.runtime import Runtime
from astrid.settings import Settings, get_settings
from tests.domain.loop_fixtures import add_stamped_detections, curate, register_champion


@pytest.fixture
def env(migrated_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Runtime]:
    monkeypatch.setenv("ASTRID_DATABASE_URL", migrated_url)
    monkeypatch.setenv("ASTRID_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    runtime = Runtime(Settings(database_url=migrated_url, data_dir=tmp_path, _env_file=None))  # type: ignore[call-arg]
    yield runtime
    runtime.close()
    get_settings.cache_clear()


def test_retrain_command_registers_a_challenger_and_states_the_decision(
    env: Runtime, tmp_path: Path
) -> None:
    runner = CliRunner()
    empty = runner.invoke(app, ["model", "retrain", "--epochs", "1"])
    assert empty.exit_code == 2
    assert "at least 3 observations" in empty.output and "Traceback" not in empty.output
    assert len(empty.output.strip().splitlines()) == 1

    register_champion(env.settings.resolved_mlflow_uri, tmp_path, trained=False)
    curate(env, add_stamped_detections(env, 30, seed=9))
    ok = runner.invoke(
        app, ["model", "retrain", "--epochs", "2", "--sim-pairs", "0", "--promote-if-better"]
    )
    assert ok.exit_code == 0, ok.output
    assert "challenger astrid-realbogus v2 (1.1.0)" in ok.output
    assert "decision: challenger" in ok.output
    assert ok.output.strip().splitlines()[-1] in ("promoted", "not promoted")

    drift = runner.invoke(app, ["model", "drift", "--night", "60000"])
    if ok.output.strip().endswith("\npromoted"):  # the new champion carries a reference
        assert drift.exit_code == 0 and "night 60000: n=30" in drift.output, drift.output
    else:  # the registered-by-hand champion has none: a named error, one line
        assert drift.exit_code == 2 and "no drift reference" in drift.output
    missing = runner.invoke(app, ["model", "retrain", "--alerts", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such alert folder" in missing.output
