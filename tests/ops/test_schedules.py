"""Schedules as data and flow runs, on SQLite and PostgreSQL: cron and time-zone rules
(DST included), due runs claimed once, retries of a flow whose dependency is down, real flows
(a backup, a watch-fields run against the loopback archive server) and the CLI contract."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from astrid.flows.schedules import (
    RetryPlan,
    ScheduleError,
    add_schedule,
    flow_failures,
    list_flow_runs,
    list_schedules,
    next_fire,
    remove_schedule,
    run_due,
    run_flow,
)
from astrid.runtime import Runtime
from astrid.store.tables import FlowRun, Schedule
from tests._cli import astrid_in, clean_env
from tests.pipeline.archive_server import ArchiveServer, centre_of
from tests.pipeline.conftest import DECAM

NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
NO_WAIT = RetryPlan(retries=2, backoff_s=0.5)


def test_next_fire_follows_the_time_zone_across_daylight_saving() -> None:
    # 03:00 in Madrid: UTC+1 on 28 March, UTC+2 from 29 March (DST starts at 02:00 local).
    first = next_fire("0 3 * * *", "Europe/Madrid", NOW)
    assert first == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert next_fire("0 3 * * *", "Europe/Madrid", first) == datetime(2026, 3, 30, 1, 0, tzinfo=UTC)
    assert next_fire("*/15 * * * *", "UTC", NOW) == NOW + timedelta(minutes=15)


@pytest.mark.parametrize(
    ("cron", "tz", "message"),
    [
        ("0 25 * * *", "UTC", "invalid cron expression '0 25 * * *'"),
        ("every night", "UTC", "invalid cron expression"),
        ("0 3 * * * *", "UTC", "invalid cron expression"),
        ("0 3 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_invalid_cron_or_time_zone_is_named(cron: str, tz: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message.replace("*", r"\*")):
        next_fire(cron, tz, NOW)


def test_add_list_remove(runtime: Runtime) -> None:
    row = add_schedule(runtime, "nightly", "process-pending", "0 3 * * *", "UTC", now=NOW)
    assert row.next_run_at == datetime(2026, 3, 29, 3, 0, tzinfo=UTC)
    with pytest.raises(ScheduleError, match="already exists"):
        add_schedule(runtime, "nightly", "process-pending", "0 4 * * *")
    with pytest.raises(ScheduleError, match="unknown flow 'nope'"):
        add_schedule(runtime, "x", "nope", "0 4 * * *")
    assert [s.name for s in list_schedules(runtime)] == ["nightly"]
    remove_schedule(runtime, "nightly")
    assert list_schedules(runtime) == []
    with pytest.raises(ScheduleError, match="no schedule named 'nightly'"):
        remove_schedule(runtime, "nightly")


def test_due_schedule_runs_once_and_moves_to_its_next_time(
    runtime: Runtime, tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    add_schedule(runtime, "backups", "backup", "0 * * * *", params={"folder": str(folder)}, now=NOW)
    assert run_due(runtime, NOW) == []  # not due yet
    later = NOW + timedelta(days=3)  # the machine was off: one run, not 72
    (run,) = run_due(runtime, later)
    assert run.status == "succeeded" and run.attempts == 1
    (written,) = folder.iterdir()
    assert (written / "manifest.json").is_file() and run.result["path"] == str(written)
    (sched,) = list_schedules(runtime)
    assert sched.next_run_at.replace(tzinfo=UTC) == later + timedelta(hours=1)
    assert run_due(runtime, later) == []


def test_two_timers_claim_a_due_schedule_once(
    postgres_url: str, make_runtime: Callable[..., Runtime], tmp_path: Path
) -> None:
    from astrid.store.db import upgrade

    upgrade(postgres_url)
    runtimes = [make_runtime(postgres_url) for _ in range(4)]
    add_schedule(runtimes[0], "b", "backup", "0 * * * *", params={"folder": str(tmp_path)}, now=NOW)
    barrier = threading.Barrier(len(runtimes))
    results: list[int] = []

    def timer(rt: Runtime) -> None:
        barrier.wait()
        results.append(len(run_due(rt, NOW + timedelta(hours=2))))

    threads = [threading.Thread(target=timer, args=(rt,)) for rt in runtimes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == [0, 0, 0, 1]
    with runtimes[0].db.session() as s:
        assert len(list(s.scalars(select(FlowRun)))) == 1


def test_flow_with_bad_parameters_fails_at_once_with_the_reason(runtime: Runtime) -> None:
    waits: list[float] = []
    run = run_flow(runtime, "backup", {}, retry=NO_WAIT, sleep=waits.append)
    assert run.status == "failed" and run.attempts == 1 and waits == []
    assert run.error == "backup needs params.folder (where dated backups are written)"
    assert flow_failures(runtime)[0]["error"] == run.error


def test_watch_fields_ingests_from_the_archive_and_retries_when_it_is_down(
    runtime: Runtime, archive_server: ArchiveServer, shared_data: Path
) -> None:
    ra, dec = centre_of(shared_data / DECAM)
    field = {"archive": "skyview", "survey": "DSS2 Red", "ra": ra, "dec": dec, "fov": 0.05}
    params = {"fields": [field], "base_url": archive_server.url, "process": False}
    ok = run_flow(runtime, "watch-fields", params, retry=NO_WAIT, sleep=lambda _: None)
    assert ok.status == "succeeded", ok.log
    assert ok.result == {"fields": 1, "images": 1}

    archive_server.state.fail_next["/current/cgi/runquery.pl"] = 999  # the archive is down
    waits: list[float] = []
    field2 = dict(field, survey="SDSSi")
    down = run_flow(
        runtime, "watch-fields", dict(params, fields=[field2]), retry=NO_WAIT, sleep=waits.append
    )
    assert down.status == "failed" and down.attempts == 3
    assert waits == [0.5, 1.0]  # exponential backoff between the attempts
    assert down.error is not None and "skyview fetch of SDSSi" in down.error
    assert "503" in down.error
    assert down.log.count("failed (transient)") == 3
    archive_server.state.fail_next.clear()
    assert [r.id for r in list_flow_runs(runtime)] == [down.id, ok.id]


def test_schedule_commands(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data")

    astrid = astrid_in(env)

    assert astrid("init").returncode == 0
    bad = astrid("schedule", "add", "n", "--flow", "backup", "--cron", "61 * * * *")
    assert bad.returncode == 2 and "invalid cron expression '61 * * * *'" in bad.stderr
    assert "Traceback" not in bad.stderr
    bad_tz = astrid("schedule", "add", "n", "--flow", "backup", "--cron", "0 3 * * *", "--tz", "X")
    assert bad_tz.returncode == 2 and "unknown time zone 'X'" in bad_tz.stderr
    folder = tmp_path / "backups"
    add = astrid(
        "schedule", "add", "nightly", "--flow", "backup", "--cron", "0 3 * * *",
        "--tz", "Europe/Madrid", "--params", f'{{"folder": "{folder}"}}',
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    assert "schedule nightly: backup at '0 3 * * *' (Europe/Madrid)" in add.stdout
    listed = astrid("schedule", "list", "--json")
    assert '"name": "nightly"' in listed.stdout
    assert astrid("schedule", "run-due").stdout.strip() == "no schedule is due"
    served = astrid("schedule", "serve", "--once")  # the scheduler process, one round
    assert served.returncode == 0 and served.stdout == served.stderr == ""  # nothing due
    run = astrid("schedule", "run", "backup", "--params", f'{{"folder": "{folder}"}}')
    assert run.returncode == 0 and "backup (run 1): succeeded after 1 attempt(s)" in run.stdout
    failed = astrid("schedule", "run", "backup")
    assert failed.returncode == 1 and "needs params.folder" in failed.stdout
    history = astrid("schedule", "history")
    assert "backup: failed" in history.stdout and "backup: succeeded" in history.stdout
    assert astrid("schedule", "remove", "nightly").returncode == 0


def test_schedule_rows_survive_in_the_table(runtime: Runtime) -> None:
    add_schedule(runtime, "a", "process-pending", "0 3 * * 1", "America/Santiago")
    with runtime.db.session() as s:
        (row,) = s.scalars(select(Schedule))
        assert (row.flow, row.timezone, row.enabled) == (
            "process-pending",
            "America/Santiago",
            True,
        )


def test_catalog_release_flow_releases_what_is_confirmed(runtime: Runtime) -> None:
    from tests.catalog.factory import make_object

    empty = run_flow(runtime, "catalog-release", {"note": "weekly"})
    assert empty.status == "succeeded" and empty.result["released"] is False
    assert "nothing is confirmed" in empty.result["reason"]
    with runtime.db.session() as s:
        make_object(s, 150.0, 2.0, classification="transient/supernova")
    run = run_flow(runtime, "catalog-release", {"note": "weekly", "version": "2026.w48"})
    assert run.status == "succeeded", run.error
    assert run.result["released"] is True and run.result["version"] == "2026.w48"
    assert run.result["n_entries"] == 1 and run.result["checksum"].startswith("sha256:")
    again = run_flow(runtime, "catalog-release", {"version": "2026.w48"})  # taken: permanent
    assert again.status == "failed" and again.attempts == 1 and "exists" in (again.error or "")
    bad = run_flow(runtime, "catalog-release", {"colour": "red"})
    assert bad.status == "failed" and "unknown parameters ['colour']" in (bad.error or "")


@pytest.mark.parametrize("flow", ["drift", "shadow", "rescore"])
def test_a_flow_whose_mlflow_server_is_down_is_retried_then_fails_with_the_reason(
    flow: str,
    migrated_url: str,
    make_runtime: Callable[..., Runtime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The registry unreachable is a dependency down (retried with backoff, then failed
    naming it), never read as "no such model" (failed at once with the wrong reason)."""
    from astrid.model.registry import RegistryUnavailableError, list_versions

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own retries off
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    down = "http://127.0.0.1:9"  # nothing listens: refused at once
    runtime = make_runtime(migrated_url, mlflow_tracking_uri=down)
    waits: list[float] = []
    run = run_flow(runtime, flow, {}, retry=NO_WAIT, sleep=waits.append)
    assert run.status == "failed" and run.attempts == 3, run.log
    assert waits == [0.5, 1.0]
    assert run.error is not None and run.error.startswith(
        f"the MLflow registry at {down} is unreachable"
    )
    assert run.log.count("failed (transient)") == 3
    with pytest.raises(RegistryUnavailableError, match="unreachable"):
        list_versions(down, "astrid-realbogus")
