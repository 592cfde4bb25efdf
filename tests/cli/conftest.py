"""Fixtures of the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._cli import clean_env


@pytest.fixture
def cli_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """The environment of an ``astrid`` process on the test database (SQLite or PostgreSQL),
    its data dir in ``tmp_path / "data"``; no ``ASTRID_*`` of this process leaks in."""
    return clean_env(tmp_path / "data", ASTRID_DATABASE_URL=database_url)
