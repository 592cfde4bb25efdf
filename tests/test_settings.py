"""The one settings object: defaults, environment, .env, and import without configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from astrid.settings import Settings


def test_defaults_are_the_embedded_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for key in list(__import__("os").environ):
        if key.startswith("ASTRID_"):
            monkeypatch.delenv(key)
    s = Settings()
    assert s.data_dir == Path("astrid-data")
    assert s.resolved_database_url == f"sqlite:///{tmp_path / 'astrid-data' / 'astrid.db'}"
    assert s.resolved_storage_url == (tmp_path / "astrid-data" / "blobs").as_uri()
    assert s.resolved_mlflow_uri.endswith("astrid-data/mlflow.db")
    assert s.broker_url is None


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "ASTRID_BROKER_URL=redis://127.0.0.1:6379/3\nASTRID_DB_POOL_SIZE=9\n"
    )
    monkeypatch.setenv("ASTRID_DATABASE_URL", "postgresql://u@h/db")
    s = Settings()
    assert s.broker_url == "redis://127.0.0.1:6379/3"
    assert s.db_pool_size == 9
    assert s.resolved_database_url == "postgresql://u@h/db"


def test_invalid_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRID_DB_POOL_SIZE", "zero")
    with pytest.raises(ValueError, match="db_pool_size"):
        Settings()


def test_every_module_imports_without_configuration(tmp_path: Path) -> None:
    code = (
        "import importlib, pkgutil, astrid\n"
        "for m in pkgutil.walk_packages(astrid.__path__, 'astrid.'):\n"
        "    if '.migrations' in m.name or m.name == 'astrid.__main__':\n"
        "        continue\n"
        "    importlib.import_module(m.name)\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=300,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
