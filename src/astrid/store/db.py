"""Engines, sessions and migrations for SQLite (embedded default) and PostgreSQL.

``Database(url)`` owns one engine and a session factory; ``upgrade(url)`` applies the Alembic
migrations shipped inside the package, so ``astrid db upgrade`` works from any directory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from astrid.errors import AstridError

__all__ = [
    "Database",
    "DatabaseError",
    "DatabaseUnavailableError",
    "PoolSettings",
    "current_revision",
    "is_unavailable",
    "make_engine",
    "normalise_url",
    "safe_url",
    "unavailable_error",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class DatabaseError(AstridError):
    """The database URL is wrong, unreachable, or the schema is not migrated."""


class DatabaseUnavailableError(DatabaseError):
    """The database cannot be reached now (refused, down, timed out): worth retrying later."""


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "the database is not reachable now", not "bad statement".

    SQLAlchemy wraps the driver's connection failures (refused, reset, admin shutdown, SQLite
    "unable to open database file" or "database is locked") as ``OperationalError`` /
    ``InterfaceError``; a connection lost mid-statement sets ``connection_invalidated``; a
    full pool raises ``TimeoutError``.
    """
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def safe_url(url: str) -> str:
    """``url`` with its password masked (safe for logs and error messages)."""
    try:
        return make_url(normalise_url(url)).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def unavailable_error(url: str, exc: BaseException) -> DatabaseUnavailableError:
    """One line naming the database (password masked) and the driver's first reason line."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = reason[0].strip() if reason else type(exc).__name__
    return DatabaseUnavailableError(
        f"database {safe_url(url)} is unavailable: {first[:300]}",
        hint="is the server running and the URL (ASTRID_DATABASE_URL) right?",
    )


class PoolSettings:
    """Connection-pool settings (ignored for SQLite).

    ``pre_ping`` tests a connection before it is handed out (a server restart or a dropped
    connection then costs no request); with ``ping_idle_s`` > 0 only connections that sat
    unused in the pool at least that long are tested, so a busy server does not pay one
    extra round trip per transaction (a connection used a moment ago is alive; if the server
    dropped it in that moment, the statement fails, the pool is invalidated and reconnects).
    """

    def __init__(
        self,
        size: int = 5,
        max_overflow: int = 10,
        timeout: float = 30.0,
        pre_ping: bool = True,
        echo: bool = False,
        ping_idle_s: float = 0.0,
    ) -> None:
        self.size = size
        self.max_overflow = max_overflow
        self.timeout = timeout
        self.pre_ping = pre_ping
        self.echo = echo
        self.ping_idle_s = ping_idle_s


def normalise_url(url: str) -> str:
    """Map ``postgresql://`` and ``postgres://`` to the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, pool: PoolSettings | None = None) -> Engine:
    """Create an engine for ``url`` with AstrID's connection settings."""
    pool = pool or PoolSettings()
    url = normalise_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"cannot parse database URL {url!r}: {exc}") from exc
    kwargs: dict[str, Any] = {"echo": pool.echo, "future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs.update(
            pool_size=pool.size,
            max_overflow=pool.max_overflow,
            pool_timeout=pool.timeout,
            pool_pre_ping=pool.pre_ping and pool.ping_idle_s <= 0,
        )
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        raise DatabaseError(
            f"no driver for database URL {parsed.render_as_string(hide_password=True)}: {exc}",
            hint="install the extra, e.g. pip install 'astrid[postgres]'",
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif pool.pre_ping and pool.ping_idle_s > 0:
        _ping_when_idle(engine, pool.ping_idle_s)
    return engine


def _ping_when_idle(engine: Engine, idle_s: float) -> None:
    """Test a connection at checkout only when it sat in the pool ``idle_s`` or longer.

    SQLAlchemy's "pessimistic disconnect handling" recipe: a failed ping raises
    :class:`~sqlalchemy.exc.DisconnectionError`, and the pool replaces the connection.
    """

    def checkin(_dbapi: Any, record: Any) -> None:
        record.info["astrid_idle_since"] = time.monotonic()

    def checkout(dbapi: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("astrid_idle_since")
        if since is not None and time.monotonic() - since < idle_s:
            return
        try:
            alive = engine.dialect.do_ping(dbapi)
        except Exception as exc:
            raise DisconnectionError(f"connection failed its ping: {exc}") from exc
        if not alive:
            raise DisconnectionError("connection failed its ping")

    event.listen(engine, "checkin", checkin)
    event.listen(engine, "checkout", checkout)


class Database:
    """One engine and session factory.

    Parameters
    ----------
    url : str
        SQLAlchemy URL (``sqlite:///path`` or ``postgresql://user@host/db``).
    pool : PoolSettings, optional
        Connection-pool settings for server databases.
    """

    def __init__(self, url: str, pool: PoolSettings | None = None) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, pool)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        reader = self.engine
        if self.engine.dialect.name == "postgresql":
            reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._reader = reader
        self._read_sessionmaker = sessionmaker(reader, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self.sessionmaker() as session, session.begin():
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for reading only: on PostgreSQL in autocommit mode, so a request that
        reads costs its queries and no ``BEGIN``/``COMMIT`` round trips (each statement
        sees its own snapshot). Never write through it; use :meth:`session`."""
        with self._read_sessionmaker() as session:
            yield session

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """A Core connection for reading only, as :meth:`read_session` but without the ORM
        session (for hot read paths that select columns, not objects); on PostgreSQL in
        autocommit mode. On SQLite the implicit transaction is rolled back at the end."""
        with self._reader.connect() as conn:
            yield conn

    def is_migrated(self) -> bool:
        """True when the schema exists (the Alembic version table is present).

        Raises :class:`DatabaseUnavailableError` when the database cannot be reached.
        """
        try:
            return inspect(self.engine).has_table("alembic_version")
        except (DBAPIError, PoolTimeoutError) as exc:
            if is_unavailable(exc):
                raise unavailable_error(self.url, exc) from exc
            raise

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


# alembic (with mako) is imported inside the migration functions for start-up time: every
# command opens a Database, only ``astrid db`` and the tests migrate.


def _alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = normalise_url(url)
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (creates the schema on an empty database)."""
    from alembic import command

    make_engine(url).dispose()  # validates the URL and creates the SQLite folder
    command.upgrade(_alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Revert migrations down to ``revision`` (``base`` drops everything)."""
    from alembic import command

    command.downgrade(_alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    """The revision the database is at, or None when unmigrated."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
