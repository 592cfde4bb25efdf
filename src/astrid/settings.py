"""The one settings object of AstrID.

Every value comes from the environment (prefix ``ASTRID_``) or a ``.env`` file in the
working directory; nothing else in AstrID reads the environment. Defaults give the
embedded laptop set-up: a data directory ``./astrid-data`` holding an SQLite database,
a ``file://`` blob store, and in-process workers.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """AstrID configuration; see ``docs/configuration.md`` for every field."""

    model_config = SettingsConfigDict(
        env_prefix="ASTRID_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(default=Path("astrid-data"), description="Root of local state.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///<data_dir>/astrid.db."
    )
    storage_url: str | None = Field(
        default=None,
        description="Blob store: file:///path or s3://bucket/prefix; default <data_dir>/blobs.",
    )
    broker_url: str | None = Field(
        default=None, description="redis://... or amqp://...; unset = run tasks in process."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow store; default sqlite:///<data_dir>/mlflow.db."
    )
    shared_data_dir: Path | None = Field(
        default=None, description="Folder of real test data (the repo's ../shared/data)."
    )

    # Database pool (ignored by SQLite).
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout: float = Field(default=30.0, gt=0)
    db_pool_pre_ping: bool = True
    db_echo: bool = False

    # S3-compatible object storage (AWS S3, Cloudflare R2, MinIO).
    s3_endpoint_url: str | None = None
    s3_region: str = "auto"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None

    # Secrets used by the API (tokens); a random per-process default is unsafe in production.
    secret_key: SecretStr = SecretStr("change-me-in-production")

    # REST API: external identity providers, limits (``astrid serve`` flags override these).
    supabase_jwt_secret: SecretStr | None = Field(
        default=None, description="Supabase project JWT secret: accept Supabase tokens."
    )
    oidc_issuer: str | None = Field(default=None, description="Accept tokens of this issuer.")
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = Field(
        default=None, description="Default: <issuer>/.well-known/jwks.json"
    )
    api_auto_provision_role: str | None = Field(
        default="viewer", description="Role of an external identity seen first (None = refuse)."
    )
    api_rate_limit: int = Field(default=600, ge=0, description="Requests per window (0 = off).")
    api_rate_window_s: int = Field(default=60, ge=1)
    api_max_upload_mb: float = Field(default=512.0, gt=0)
    api_predict_max_mb: float = Field(
        default=16.0, gt=0, description="Largest body of POST /models/{name}/predict, MiB."
    )
    api_predict_max_triplets: int = Field(
        default=1024, ge=1, description="Most triplets in one predict request."
    )
    api_cors_origins: list[str] = Field(default_factory=list)

    log_level: str = "INFO"

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to an SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'astrid.db').resolve()}"

    @property
    def resolved_storage_url(self) -> str:
        """The blob-store URL, defaulting to ``file://<data_dir>/blobs``."""
        if self.storage_url:
            return self.storage_url
        return (self.data_dir / "blobs").resolve().as_uri()

    @property
    def resolved_mlflow_uri(self) -> str:
        """The MLflow tracking URI, defaulting to an SQLite store in the data directory."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings (cached; call ``get_settings.cache_clear()`` to reload)."""
    return Settings()
