"""Fixtures shared by the whole suite.

Real test data lives in the ``shared/data`` folder beside the repository; the one setting
``ASTRID_SHARED_DATA_DIR`` points elsewhere. Where the folder is absent, tests that need it
skip with that reason, except under ``CI=true``, where a missing folder fails the run.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from astrid.runtime import Runtime
from astrid.settings import Settings
from tests._s3 import s3_client

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    configured = os.environ.get("ASTRID_SHARED_DATA_DIR")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real telescope data (decam_cutouts/, nircam_pair/, ...)."""
    path = _shared_data_dir()
    if not path.is_dir():
        message = f"real test data folder {path} is missing (set ASTRID_SHARED_DATA_DIR)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


# --- real services -----------------------------------------------------------------------

POSTGRES_URL = os.environ.get(
    "ASTRID_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """URL of the PostgreSQL server the tests use (``ASTRID_TEST_POSTGRES_URL``)."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=5) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        _unavailable(f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}")
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty schema in the test database, dropped afterwards (isolation per test)."""
    import psycopg

    schema = f"astrid_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in postgres_server else "?"
    yield f"{postgres_server}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend: a fresh SQLite file and a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'astrid.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def migrated_url(database_url: str) -> str:
    """``database_url`` with AstrID's migrations applied."""
    from astrid.store.db import upgrade

    upgrade(database_url)
    return database_url


REDIS_URL = os.environ.get("ASTRID_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_server() -> str:
    """URL of the Redis server the tests use (``ASTRID_TEST_REDIS_URL``)."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        _unavailable(f"Redis at {REDIS_URL} is not reachable: {exc}")
    return REDIS_URL


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3-protocol server (moto) on loopback; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: str) -> str:
    """A fresh bucket on the loopback S3 server; returns its name."""
    name = f"astrid-{uuid.uuid4().hex[:10]}"
    s3_client(s3_server).create_bucket(Bucket=name)
    return name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """Factory of runtimes on a given database (and optionally S3) in a temp data dir."""
    made: list[Runtime] = []

    def factory(database_url: str, storage_url: str | None = None, **extra: Any) -> Runtime:
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=database_url,
            storage_url=storage_url,
            _env_file=None,  # type: ignore[call-arg]
            **extra,
        )
        runtime = Runtime(settings)
        made.append(runtime)
        return runtime

    yield factory
    for runtime in made:
        runtime.close()


@pytest.fixture
def runtime(migrated_url: str, make_runtime: Callable[..., Runtime]) -> Runtime:
    """A runtime on a migrated database (each backend) with a local blob store."""
    return make_runtime(migrated_url)
