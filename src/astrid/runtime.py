"""The platform's handles, built from the one settings object.

``Runtime.from_settings()`` opens the database and the blob store named in settings; the CLI,
the API and the workers all start here, so changing a URL in the environment moves the
whole system from SQLite + local files to PostgreSQL + S3 without code changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from astrid.settings import Settings, get_settings
from astrid.store.blobs import BlobStore, open_blob_store
from astrid.store.db import Database, DatabaseError, PoolSettings

__all__ = ["Runtime"]


@dataclass
class Runtime:
    """Database and blob store for one process."""

    settings: Settings

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Runtime:
        return cls(settings or get_settings())

    @cached_property
    def db(self) -> Database:
        s = self.settings
        return Database(
            s.resolved_database_url,
            PoolSettings(
                size=s.db_pool_size,
                max_overflow=s.db_max_overflow,
                timeout=s.db_pool_timeout,
                pre_ping=s.db_pool_pre_ping,
                ping_idle_s=s.db_pool_ping_idle_s,
                echo=s.db_echo,
            ),
        )

    @cached_property
    def blobs(self) -> BlobStore:
        s = self.settings
        return open_blob_store(
            s.resolved_storage_url,
            endpoint_url=s.s3_endpoint_url,
            region=s.s3_region,
            access_key_id=s.s3_access_key_id,
            secret_access_key=(
                s.s3_secret_access_key.get_secret_value() if s.s3_secret_access_key else None
            ),
        )

    def require_migrated(self) -> Database:
        """The database, or a clear error if ``astrid db upgrade`` has not run."""
        if not self.db.is_migrated():
            raise DatabaseError(
                f"database {self.db.engine.url.render_as_string(hide_password=True)} "
                "has no AstrID schema",
                hint="run `astrid init` (or `astrid db upgrade`) first",
            )
        return self.db

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
