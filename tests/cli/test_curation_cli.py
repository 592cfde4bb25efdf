"""Curation commands: ``users create --password-stdin``, ``curation vote|undo|queue|sync``,
``objects list|show`` on a migrated database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from astrid.api.security import verify_password
from astrid.cli import app
from astrid.runtime import Runtime
from astrid.settings import Settings, get_settings
from astrid.store.auth_tables import User
from astrid.store.tables import CurationState, ObjectMember
from tests.domain.curation_fixtures import add_detection


@pytest.fixture
def env(migrated_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    monkeypatch.setenv("ASTRID_DATABASE_URL", migrated_url)
    monkeypatch.setenv("ASTRID_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield migrated_url
    get_settings.cache_clear()


def _runtime(url: str, tmp_path: Path) -> Runtime:
    return Runtime(Settings(database_url=url, data_dir=tmp_path, _env_file=None))  # type: ignore[call-arg]


def test_users_create_reads_the_password_from_stdin(env: str, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["users", "create", "dana", "--role", "curator", "--email", "dana@example.org"]
    r = runner.invoke(app, [*args, "--password-stdin"], input="a long password\nignored\n")
    assert r.exit_code == 0, r.output
    empty = runner.invoke(app, ["users", "create", "eve", "--password-stdin"], input="\n")
    assert empty.exit_code == 2 and "stdin has no password" in empty.output
    bad = runner.invoke(
        app,
        ["users", "create", "eve", "--email", "not-an-address", "--password-stdin"],
        input="a long password\n",
    )
    assert bad.exit_code == 2 and "--email" in bad.output
    runtime = _runtime(env, tmp_path)
    try:
        with runtime.db.session() as s:
            user = s.scalars(select(User).where(User.username == "dana")).one()
            assert (user.role, user.email) == ("curator", "dana@example.org")
            assert verify_password(user.password_hash, "a long password")
            assert s.scalar(select(User).where(User.username == "eve")) is None
    finally:
        runtime.close()


def test_vote_queue_objects_and_sync(env: str, tmp_path: Path) -> None:
    runner = CliRunner()
    runtime = _runtime(env, tmp_path)
    try:
        with runtime.db.session() as s:
            det = add_detection(s, 10.0, 20.0, confidence=0.9, snr=12.0, mag=19.0, mjd=60000.5)
            late = add_detection(s, 30.0, 20.0, confidence=0.4, register=False)
            det_id, late_id = det.id, late.id
    finally:
        runtime.close()
    for args in (
        ["users", "create", "cur", "--role", "curator", "--password-stdin"],
        ["users", "create", "view", "--password-stdin"],
    ):
        assert runner.invoke(app, args, input="a long password\n").exit_code == 0
    queue = runner.invoke(app, ["curation", "queue", "--json"])
    assert [q["detection_id"] for q in json.loads(queue.output)] == [det_id]
    r = runner.invoke(
        app,
        [
            "curation",
            "vote",
            str(det_id),
            "real",
            "--user",
            "cur",
            "--classification",
            "transient/nova",
        ],
    )
    assert r.exit_code == 0 and "awaiting → awaiting" in r.output, r.output
    r = runner.invoke(app, ["curation", "vote", str(det_id), "real", "--user", "view"])
    assert r.exit_code == 2 and "viewer" in r.output
    r = runner.invoke(
        app,
        ["curation", "vote", str(det_id), "real", "--user", "cur", "--classification", "unicorn"],
    )
    assert r.exit_code == 2 and "classification" in r.output
    assert runner.invoke(app, ["curation", "undo", str(det_id), "--user", "cur"]).exit_code == 0
    r = runner.invoke(app, ["curation", "sync"])
    assert r.exit_code == 0 and "1 detection(s)" in r.output
    listed = json.loads(runner.invoke(app, ["objects", "list", "--json"]).output)
    assert len(listed) == 2
    shown = runner.invoke(app, ["objects", "show", str(listed[-1]["id"])])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["light_curve"][0]["kind"] == "detection"
    runtime = _runtime(env, tmp_path)
    try:
        with runtime.db.session() as s:
            assert s.get(CurationState, late_id) is not None
            assert s.scalar(select(ObjectMember).where(ObjectMember.detection_id == late_id))
    finally:
        runtime.close()
