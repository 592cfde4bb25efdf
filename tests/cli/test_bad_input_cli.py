"""Bad input to the pipeline, catalog, notify, schedule, curation and user commands: one named
error line on stderr, exit 2, nothing done. Each runs through ``astrid.cli.main`` (the console
script's entry point) in this process, on a migrated SQLite file."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from astrid.flows.schedules import FLOWS
from astrid.runtime import Runtime
from astrid.settings import Settings, get_settings
from astrid.store.tables import FlowRun, NotificationRule, Schedule, StageRun, User
from tests.cli.inprocess import Run, assert_one_error, migrated_sqlite_env, runner
from tests.domain.curation_fixtures import add_detection, make_actors


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield migrated_sqlite_env(tmp_path, monkeypatch)
    get_settings.cache_clear()


@pytest.fixture
def astrid(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    return runner(capsys)


_one_error = assert_one_error


def _count(url: str, table: type) -> int:
    runtime = Runtime(Settings(database_url=url, _env_file=None))  # type: ignore[call-arg]
    try:
        with runtime.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(table)) or 0)
    finally:
        runtime.close()


def test_process_refuses_bad_options_and_says_when_nothing_is_pending(
    db_url: str, astrid: Callable[..., Run]
) -> None:
    run = astrid
    _one_error(run("process", "--method", "fft"), "unknown method 'fft'", "zogy or classic")
    _one_error(run("process", "3", "--pending"), "give observation ids or --pending, not both")
    code, out, err = run("process", "--threshold", "0.5")  # below the option's minimum
    assert code == 2 and "--threshold" in err and "Traceback" not in err
    for args in (("process",), ("process", "--pending", "--retry-failed")):
        code, out, err = run(*args)
        assert (code, err) == (0, ""), err
        assert "nothing to process (no pending observation)" in out
    assert _count(db_url, StageRun) == 0  # no stage ran


def test_ingest_alerts_needs_avro_files(
    db_url: str, astrid: Callable[..., Run], tmp_path: Path
) -> None:
    run = astrid
    empty = tmp_path / "no-alerts"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an alert\n")
    _one_error(run("ingest-alerts", str(empty)), "no .avro alert files found", str(empty))
    _one_error(run("ingest-alerts", str(empty), str(tmp_path / "gone")), "gone does not exist")
    assert _count(db_url, StageRun) == 0


def test_catalog_commands_name_what_is_wrong(
    db_url: str, astrid: Callable[..., Run], tmp_path: Path
) -> None:
    run = astrid
    _one_error(run("catalog", "crossmatch"), "give --object ID or --all-new")
    _one_error(run("catalog", "crossmatch", "--object", "1", "--all-new"), "one of them")
    # nothing to match against (no catalogue file, provider or SkyBoT): said before any work
    for args in (("--all-new",), ("--object", "1", "--no-skybot")):
        _one_error(run("catalog", "crossmatch", *args), "nothing to match against")
    report = tmp_path / "at.json"
    _one_error(run("catalog", "tns-report", "7", "-o", str(report)), "DISCOVERY_ID 7")
    _one_error(
        run("catalog", "tns-report", "7", "--send", "--user", "nobody"),
        "--user 'nobody': no such active expert or admin",
    )
    assert not report.exists()
    _one_error(run("catalog", "verify", "DR9"), "release 'DR9': no such catalog release")
    code, out, err = run("catalog", "releases")
    assert (code, out, err) == (0, "", "")  # no release yet: an empty list
    code, out, _ = run("catalog", "sync")
    assert code == 0 and "catalog: 0 entries (0 added, 0 updated, 0 removed)" in out


def test_notify_add_rejects_bad_quiet_hours_and_unknown_owner(
    db_url: str, astrid: Callable[..., Run]
) -> None:
    run = astrid
    for quiet in ("22to6", "22-", "night"):
        _one_error(
            run("notify", "add", "--to", "a@example.org", "--quiet", quiet),
            f"--quiet {quiet!r}: give UTC hours as START-END",
        )
    _one_error(run("notify", "add", "--to", "a@example.org", "--user", "ghost"), "--user 'ghost'")
    assert _count(db_url, NotificationRule) == 0
    code, out, _ = run("notify", "add", "--to", "a@example.org", "--quiet", "22-6")
    assert code == 0 and "rule 1: email to a@example.org" in out
    (rule,) = [json.loads(line) for line in run("notify", "list")[1].splitlines()]
    assert rule["to"] == "a@example.org" and rule["quiet_hours"] == [22, 6]
    code, out, _ = run("notify", "dispatch")
    assert code == 0 and "0 events, 0 digests queued, 0 sent, 0 failed attempts" in out


def test_schedule_commands_reject_bad_params_and_unknown_names(
    db_url: str, astrid: Callable[..., Run], tmp_path: Path
) -> None:
    run = astrid
    code, out, _ = run("schedule", "flows")
    assert code == 0
    assert [line.split(":")[0] for line in out.strip().splitlines()] == list(FLOWS)
    cron = ("--flow", "backup", "--cron", "0 3 * * *")
    _one_error(
        run("schedule", "add", "n", *cron, "--params", "{folder"), "--params is not valid JSON"
    )
    _one_error(
        run("schedule", "add", "n", *cron, "--params", '["/backups"]'),
        "--params must be a JSON object",
    )
    _one_error(run("schedule", "run", "backup", "--params", "[]"), "--params must be a JSON")
    _one_error(
        run("schedule", "add", "n", "--flow", "nope", "--cron", "0 3 * * *"),
        "unknown flow 'nope' (flows are: watch-fields, process-pending, backup",
    )
    _one_error(run("schedule", "remove", "never-added"), "no schedule named 'never-added'")
    assert _count(db_url, Schedule) == 0 and _count(db_url, FlowRun) == 0
    code, out, _ = run("schedule", "list", "--json")
    assert (code, json.loads(out)) == (0, [])
    code, out, _ = run("schedule", "history")
    assert (code, out) == (0, "")
    # a run that fails is recorded, printed with its error, and the command exits 1
    code, out, _ = run("schedule", "run", "backup")
    assert code == 1 and "backup (run 1): failed after 1 attempt(s)" in out
    code, out, _ = run("schedule", "history", "--log")
    assert code == 0 and "backup: failed (1 attempt(s)) — backup needs params.folder" in out
    assert "attempt 1 failed (permanent)" in out  # --log prints the run's own log


def test_users_commands_refuse_unknown_users_and_roles(
    db_url: str, astrid: Callable[..., Run]
) -> None:
    run = astrid
    _one_error(run("users", "set-role", "ghost", "expert"), "no user called 'ghost'")
    _one_error(run("api-keys", "revoke", "nosuchprefix"), "no API key with prefix 'nosuchprefix'")
    assert _count(db_url, User) == 0


def test_ingest_objects_and_curation_name_what_is_missing(
    db_url: str, astrid: Callable[..., Run], tmp_path: Path
) -> None:
    run = astrid
    empty = tmp_path / "no-fits"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image\n")
    _one_error(run("ingest", str(empty)), "no FITS files found (looked for", str(empty))
    _one_error(run("calibration", "add", str(empty / "bias.fits"), "--kind", "bias",
                   "--instrument", "DECam"), "bias.fits does not exist")  # fmt: skip
    _one_error(run("objects", "show", "999"), "no object with id 999")
    runtime = Runtime(Settings(database_url=db_url, data_dir=tmp_path, _env_file=None))  # type: ignore[call-arg]
    try:
        make_actors(runtime, vera="viewer", cora="curator")
        with runtime.db.session() as session:
            det_id = add_detection(session, confidence=0.9).id
    finally:
        runtime.close()
    vote = ("curation", "vote", str(det_id), "real", "--user")
    _one_error(run(*vote, "ghost"), "--user 'ghost': no such active user")
    _one_error(run(*vote, "vera"), "--user 'vera' is a viewer; curators and above vote")
    _one_error(run("curation", "undo", str(det_id), "--user", "cora"), "no vote")
    _one_error(
        run("curation", "vote", str(det_id), "maybe", "--user", "cora"),
        "must be one of real, bogus, skip",
    )
    code, out, _ = run(*vote, "cora")
    assert code == 0 and f"detection {det_id}: " in out
    code, out, _ = run("curation", "undo", str(det_id), "--user", "cora")
    assert code == 0 and f"detection {det_id}: " in out
