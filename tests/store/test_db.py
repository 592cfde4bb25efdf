"""Migrations, schema parity and pool settings on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from astrid.store.db import (
    Database,
    DatabaseError,
    PoolSettings,
    current_revision,
    downgrade,
    normalise_url,
    upgrade,
)
from astrid.store.tables import Base

EXPECTED_TABLES = {
    "surveys",
    "observations",
    "calibration_frames",
    "preprocess_results",
    "reference_images",
    "differences",
    "candidates",
    "detections",
    "models",
    "model_runs",
    "training_datasets",
    "domain_events",
}


def _head() -> str | None:
    from alembic.script import ScriptDirectory

    from astrid.store.db import _alembic_config

    return ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()


def test_upgrade_creates_every_table_and_downgrade_removes_them(database_url: str) -> None:
    assert current_revision(database_url) is None
    upgrade(database_url)
    db = Database(database_url)
    try:
        tables = set(inspect(db.engine).get_table_names())
        assert tables >= EXPECTED_TABLES
        assert db.is_migrated()
    finally:
        db.dispose()
    assert current_revision(database_url) == _head()
    downgrade(database_url, "base")
    db = Database(database_url)
    try:
        assert not (EXPECTED_TABLES & set(inspect(db.engine).get_table_names()))
    finally:
        db.dispose()


def test_migrated_schema_matches_the_orm(migrated_url: str) -> None:
    """Alembic finds no difference between the migrations and the ORM on this backend."""
    db = Database(migrated_url)
    try:
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        db.dispose()
    assert diff == []


def test_upgrade_twice_is_a_no_op(migrated_url: str) -> None:
    upgrade(migrated_url)
    assert current_revision(migrated_url) == _head()


def test_pool_settings_are_honoured(postgres_url: str) -> None:
    db = Database(postgres_url, PoolSettings(size=3, max_overflow=2, timeout=7.5, pre_ping=True))
    try:
        pool = db.engine.pool
        assert pool.size() == 3  # type: ignore[attr-defined]
        assert pool._max_overflow == 2  # type: ignore[attr-defined]
        assert pool._timeout == 7.5  # type: ignore[attr-defined]
        assert pool._pre_ping is True
    finally:
        db.dispose()


def test_postgres_urls_use_psycopg3() -> None:
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_bad_url_is_a_named_error() -> None:
    with pytest.raises(DatabaseError, match="cannot parse database URL"):
        Database("not a url at all")
    with pytest.raises(DatabaseError, match="no driver"):
        Database("nosuchdb://host/db")
