"""Backup and restore drills: a processed deployment → `astrid backup` → `astrid restore`
into an empty deployment (SQLite and PostgreSQL) → every row, every blob and the API's
answers identical; refusals for a non-empty target, a damaged backup and a full disk."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from astrid.api import ApiConfig, create_app
from astrid.api.security import create_api_key, create_user
from astrid.flows.backup import table_digests
from astrid.pipeline.demo import simulate_demo_survey
from astrid.runtime import Runtime
from astrid.store.blobs import blob_key
from astrid.store.db import upgrade

SECRET = "backup-drill-secret-0123456789abcdef"


def _env(data_dir: Path, database_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRID_")}
    env["ASTRID_DATA_DIR"] = str(data_dir)
    env["ASTRID_SECRET_KEY"] = SECRET
    if database_url:
        env["ASTRID_DATABASE_URL"] = database_url
    return env


def _astrid(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "astrid", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], str]]:
    """A processed SQLite deployment (1 field × 2 epochs) with a user and an API key."""
    root = tmp_path_factory.mktemp("source")
    env = _env(root / "data")
    survey = simulate_demo_survey(
        root / "raw", seed=5, n_fields=1, n_epochs=2, n_transients=3, flux_range=(3000, 6000)
    )
    for args in (("init",), ("ingest", str(root / "raw")), ("process", "--pending")):
        run = _astrid(env, *args)
        assert run.returncode == 0, run.stderr + run.stdout
    assert len(survey.paths) == 2
    from astrid.settings import Settings

    rt = Runtime(Settings(data_dir=root / "data", _env_file=None))  # type: ignore[call-arg]
    config = ApiConfig.from_settings(rt.settings, secret_key=SECRET)
    with rt.db.session() as s:
        user = create_user(s, "drill", "a-long-password-1", role="admin")
        _, key = create_api_key(s, config, user, "drill")
    rt.close()
    yield env, key


def _runtime(env: dict[str, str]) -> Runtime:
    from astrid.settings import Settings

    return Runtime(
        Settings(
            data_dir=Path(env["ASTRID_DATA_DIR"]),
            database_url=env.get("ASTRID_DATABASE_URL"),
            _env_file=None,  # type: ignore[call-arg]
        )
    )


def _answers(runtime: Runtime, key: str) -> list[object]:
    app = create_app(runtime, ApiConfig.from_settings(runtime.settings, secret_key=SECRET))
    client = TestClient(app)
    out: list[object] = []
    for url in ("/api/v1/observations?limit=50", "/api/v1/detections?limit=50"):
        response = client.get(url, headers={"X-API-Key": key})
        assert response.status_code == 200, response.text
        out.append(response.json())
    first = out[1]["items"][0]["id"]  # type: ignore[index]
    response = client.get(f"/api/v1/detections/{first}", headers={"X-API-Key": key})
    assert response.status_code == 200
    out.append(response.json())
    return out


def test_backup_restore_drill(
    source: tuple[dict[str, str], str], database_url: str, tmp_path: Path
) -> None:
    env, key = source
    backup_dir = tmp_path / "backup"
    run = _astrid(env, "backup", "-o", str(backup_dir))
    assert run.returncode == 0, run.stderr
    assert "backup written to" in run.stdout

    target = _env(tmp_path / "target", database_url)
    run = _astrid(target, "restore", str(backup_dir))
    assert run.returncode == 0, run.stderr
    assert "checksums verified" in run.stdout

    src, dst = _runtime(env), _runtime(target)
    try:
        before, after = table_digests(src.db.engine), table_digests(dst.db.engine)
        assert before == after  # every row of every table, on either backend
        assert before["detections"][0] > 0 and before["observations"][0] == 2
        keys = sorted(src.blobs.keys())
        assert keys and sorted(dst.blobs.keys()) == keys
        assert all(blob_key(dst.blobs.get(k)) == k for k in keys)
        assert _answers(src, key) == _answers(dst, key)  # the API serves the same answers
    finally:
        src.close()
        dst.close()

    again = _astrid(target, "restore", str(backup_dir))
    assert again.returncode == 2
    assert "not empty" in again.stderr and "--force" in again.stderr
    forced = _astrid(target, "restore", str(backup_dir), "--force")
    assert forced.returncode == 0, forced.stderr


def test_damaged_backup_is_refused_and_nothing_is_stored(
    source: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, _ = source
    backup_dir = tmp_path / "backup"
    assert _astrid(env, "backup", "-o", str(backup_dir)).returncode == 0
    table = backup_dir / "tables" / "detections.jsonl.gz"
    lines = gzip.decompress(table.read_bytes()).splitlines(keepends=True)
    table.write_bytes(gzip.compress(b"".join(lines[:-1])))  # one row lost

    target = _env(tmp_path / "target")
    run = _astrid(target, "restore", str(backup_dir))
    assert run.returncode == 2
    assert "detections" in run.stderr and "damaged" in run.stderr
    assert len(run.stderr.strip().splitlines()) <= 2  # one line (and a hint), no traceback
    rt = _runtime(target)
    try:
        assert all(n == 0 for n, _ in table_digests(rt.db.engine).values())
    finally:
        rt.close()


def test_backup_into_a_full_disk_names_the_problem(
    source: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, _ = source
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"cannot mount a small tmpfs: {made.stderr!r}")
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {made.stderr!r}")
    try:
        run = _astrid(env, "backup", "-o", str(mount / "backup"))
        assert run.returncode == 2
        assert "No space left on device" in run.stderr
        assert "Traceback" not in run.stderr
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_backup_into_a_non_empty_folder_or_a_file_is_refused(
    source: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, _ = source
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    run = _astrid(env, "backup", "-o", str(tmp_path / "busy"))
    assert run.returncode == 2 and "not an empty folder" in run.stderr
    (tmp_path / "file").write_text("x")
    run = _astrid(env, "backup", "-o", str(tmp_path / "file" / "sub"))
    assert run.returncode == 2 and "cannot write the backup" in run.stderr


def test_restore_of_something_that_is_not_a_backup(tmp_path: Path) -> None:
    run = _astrid(_env(tmp_path / "t"), "restore", str(tmp_path))
    assert run.returncode == 2 and "not an AstrID backup" in run.stderr


def test_sqlite_backup_restores_into_postgresql_with_working_sequences(
    source: tuple[dict[str, str], str],
    postgres_url: str,
    tmp_path: Path,
    make_runtime: Callable[..., Runtime],
) -> None:
    """After a restore into PostgreSQL, new rows get fresh ids (sequences moved on)."""
    env, _ = source
    backup_dir = tmp_path / "backup"
    assert _astrid(env, "backup", "-o", str(backup_dir)).returncode == 0
    assert _astrid(_env(tmp_path / "pg", postgres_url), "restore", str(backup_dir)).returncode == 0
    upgrade(postgres_url)  # idempotent: already at head
    rt = make_runtime(postgres_url)
    with rt.db.session() as s:
        user = create_user(s, "after-restore", "a-long-password-2", role="viewer")
        s.flush()
        assert user.id > 1
