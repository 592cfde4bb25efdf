"""AstrID's flows on a real Prefect (its local server, in a temporary home): a flow run is
recorded by both Prefect and AstrID, a failed AstrID run fails the Prefect run with the same
reason, schedules become deployments with the same cron/time zone, and a scheduled
occurrence fired twice (Prefect and a cron timer) runs once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from astrid.flows.schedules import add_schedule, list_flow_runs
from astrid.runtime import Runtime
from astrid.store.tables import FlowRunStatus, Schedule


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Prefect's own test harness: a local Prefect server with a fresh database."""
    try:
        from prefect.testing.utilities import prefect_test_harness
    except ImportError:  # an optional extra: present in the dev install, so CI runs this
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("prefect is not installed (pip install -e '.[dev]')")
        pytest.skip("prefect is not installed (the optional extra astrid[prefect])")
    from prefect.settings import (
        PREFECT_HOME,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )

    home = tmp_path_factory.mktemp("prefect-home")
    # The server starts slowly on a busy 2-core machine: give it time.
    with (
        temporary_settings({PREFECT_HOME: str(home), PREFECT_SERVER_ANALYTICS_ENABLED: False}),
        prefect_test_harness(server_startup_timeout=300),
    ):
        yield


@pytest.fixture
def sqlite_runtime(make_runtime, tmp_path: Path) -> Runtime:  # type: ignore[no-untyped-def]
    from astrid.store.db import upgrade

    url = f"sqlite:///{tmp_path / 'astrid.db'}"
    upgrade(url)
    runtime: Runtime = make_runtime(url)
    return runtime


def test_a_flow_run_is_recorded_by_prefect_and_astrid(
    prefect_server: None, sqlite_runtime: Runtime
) -> None:
    from astrid.flows.prefect_runner import prefect_flow

    state = prefect_flow("process-pending", sqlite_runtime.settings)(params={}, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    (run,) = list_flow_runs(sqlite_runtime, flow="process-pending")
    assert run.status == FlowRunStatus.SUCCEEDED.value
    assert result["astrid_run_id"] == run.id and result["observations"] == 0


def test_a_failed_astrid_run_fails_the_prefect_run_with_its_reason(
    prefect_server: None, sqlite_runtime: Runtime
) -> None:
    from astrid.flows.prefect_runner import prefect_flow

    state = prefect_flow("backup", sqlite_runtime.settings)(params={}, return_state=True)
    assert state.is_failed()
    assert "backup needs params.folder" in (state.message or "")
    (run,) = list_flow_runs(sqlite_runtime, flow="backup")
    assert run.status == FlowRunStatus.FAILED.value and run.attempts == 1  # permanent: no retry


def test_a_database_down_before_the_run_is_retried_then_fails_with_the_reason(
    prefect_server: None,
    make_runtime,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """The database down when the flow starts: AstrID cannot record its run, so the Prefect
    flow run tries again with backoff and then fails naming the database; never a silent
    skip or a completed run."""
    from astrid.flows.prefect_runner import prefect_flow
    from astrid.flows.schedules import RetryPlan

    # nothing listens on port 9: every connection is refused at once
    down = make_runtime("postgresql://postgres@127.0.0.1:9/test?connect_timeout=2")
    waits: list[float] = []
    flow = prefect_flow(
        "process-pending", down.settings, retry=RetryPlan(2, 0.25), sleep=waits.append
    )
    state = flow(params={}, return_state=True)
    assert state.is_failed()
    message = state.message or ""
    assert "could not start after 3 attempts (a dependency is down)" in message, message
    assert "OperationalError" in message or "database" in message.lower()
    assert waits == [0.25, 0.5]


def test_schedules_become_deployments_and_an_occurrence_runs_once(
    prefect_server: None, sqlite_runtime: Runtime, tmp_path: Path
) -> None:
    from astrid.flows.prefect_runner import prefect_deployments, prefect_flow

    nightly = add_schedule(
        sqlite_runtime,
        "nightly-backup",
        "backup",
        "30 2 * * *",
        "Europe/Madrid",
        {"folder": str(tmp_path / "backups")},
    )
    off = add_schedule(sqlite_runtime, "paused", "process-pending", "*/5 * * * *")
    with sqlite_runtime.db.session() as s:
        s.execute(update(Schedule).where(Schedule.id == off.id).values(enabled=False))
    (deployment,) = prefect_deployments(sqlite_runtime)
    assert deployment.name == "nightly-backup"
    (schedule,) = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("30 2 * * *", "Europe/Madrid")
    assert deployment.parameters == {
        "params": {"folder": str(tmp_path / "backups")},
        "schedule_id": nightly.id,
    }
    # Make the occurrence due now, then fire it twice (Prefect and a cron timer at once).
    with sqlite_runtime.db.session() as s:
        s.execute(
            update(Schedule)
            .where(Schedule.id == nightly.id)
            .values(next_run_at=datetime.now(UTC) - timedelta(seconds=5))
        )
    flow = prefect_flow("backup", sqlite_runtime.settings)
    first = flow(schedule_id=nightly.id, return_state=True)
    second = flow(schedule_id=nightly.id, return_state=True)
    assert first.is_completed() and second.is_completed()
    assert "astrid_run_id" in first.result() and "skipped" in second.result()
    (run,) = list_flow_runs(sqlite_runtime, flow="backup")
    assert run.status == FlowRunStatus.SUCCEEDED.value and run.schedule_id == nightly.id
    assert any((tmp_path / "backups").iterdir())  # the backup was really written
