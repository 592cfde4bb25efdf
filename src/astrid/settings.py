"""The one settings object of AstrID.

Every value comes from the environment (prefix ``ASTRID_``) or a ``.env`` file in the
working directory; nothing else in AstrID reads the environment. Defaults give the
embedded laptop set-up: a data directory ``./astrid-data`` holding an SQLite database,
a ``file://`` blob store, and in-process workers.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

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
    db_pool_ping_idle_s: float = Field(
        default=1.0, ge=0, description="Pre-ping only connections idle this long (0: always)."
    )
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
    api_auth_cache_s: float = Field(
        default=10.0, ge=0, le=300, description="Seconds a verified credential is remembered."
    )
    api_workers: int = Field(
        default=1, ge=1, le=64, description="uvicorn processes of `astrid serve`."
    )
    api_fast_reads: bool = Field(
        default=True,
        description="Serve the hot detection reads through asyncpg on PostgreSQL.",
    )
    api_hot_concurrency: int = Field(
        default=4,
        ge=0,
        le=1000,
        description=(
            "Hot detection reads served at once per API process; later ones wait their turn "
            "in arrival order (0 = no limit)."
        ),
    )
    api_threads: int = Field(
        default=40,
        ge=1,
        le=1000,
        description="Threads per API process running sync routes and database calls.",
    )
    api_max_upload_mb: float = Field(default=512.0, gt=0)
    api_predict_max_mb: float = Field(
        default=16.0, gt=0, description="Largest body of POST /models/{name}/predict, MiB."
    )
    api_predict_max_triplets: int = Field(
        default=1024, ge=1, description="Most triplets in one predict request."
    )
    api_cors_origins: list[str] = Field(default_factory=list)
    # Model operations: shadow A/B, drift, energy (astrid.domain.model_scores, model_drift).
    model_shadow_fraction: float = Field(
        default=0.2, ge=0, le=1, description="Share of detections the challenger shadows."
    )
    model_drift_threshold: float = Field(
        default=0.25, gt=0, description="PSI above which a night has drifted (model.drift)."
    )
    energy_tracking: bool = Field(default=True, description="Measure kWh/CO2 of model runs.")
    energy_country_iso_code: str = Field(
        default="FRA", description="Grid whose carbon intensity codecarbon uses (offline)."
    )
    energy_cpu_tdp_w: float = Field(
        default=65.0, gt=0, description="CPU package power for the estimate without codecarbon."
    )
    energy_carbon_g_per_kwh: float = Field(
        default=475.0, gt=0, description="Grid intensity for the estimate without codecarbon."
    )
    dashboard_dir: Path | None = Field(
        default=None,
        description="Built web dashboard served at / (default: the repository's web/out).",
    )
    api_max_body_kb: float = Field(
        default=1024.0, gt=0, description="Largest body of a non-upload request, KiB."
    )
    forwarded_allow_ips: str = Field(
        default="",
        description="Comma-separated proxy addresses/networks whose X-Forwarded-* headers "
        "are trusted ('' = none; '*' = any, only behind a proxy that strips them).",
    )
    api_login_free_failures: int = Field(
        default=3, ge=0, description="Failed logins of an account before backoff starts."
    )
    api_login_backoff_base_s: float = Field(default=1.0, gt=0)
    api_login_backoff_max_s: float = Field(default=900.0, gt=0)
    api_max_concurrent_logins: int = Field(
        default=4, ge=1, description="Password hashes computed at once per API process."
    )

    # Per-difference detection limits (astrid.pipeline.stages.limits): fake point sources
    # injected into each difference's own significance map and recovered by the same detection.
    pipeline_retain_heap: bool = Field(
        default=True,
        description="Pipeline processes (worker, process) keep freed memory for the next "
        "image (no page faults on large arrays); their RSS stays at its peak.",
    )
    pipeline_one_blas_thread: bool = Field(
        default=True,
        description="Pipeline processes (worker, process) run numpy/scipy BLAS on one "
        "thread (one observation per core; the same products).",
    )
    limits_fakes: int = Field(
        default=200, ge=0, le=100_000, description="Fakes per difference; 0 = no limits."
    )
    pipeline_reference_cache_mb: int = Field(
        default=512,
        ge=0,
        description="Memory per pipeline process for references loaded and prepared for "
        "differencing, kept for the next new image of their field (~45 MB per 2048² "
        "reference; least recently used dropped first); 0 = prepare every time.",
    )
    pipeline_recent_products_mb: int = Field(
        default=256,
        ge=0,
        description="Memory per pipeline process for products it just wrote and reads back "
        "for the same observation (new image and mask, difference, aligned image: ~52 MB "
        "per 2048² observation; oldest dropped first); 0 = read them back from storage.",
    )
    pipeline_raw_cache_mb: int = Field(
        default=512,
        ge=0,
        description="Memory per pipeline process for the raw FITS bytes of a multi-image "
        "file (a mosaic's CCDs, HST's chips), gzip already removed, kept for its next CCD's "
        "preprocess (least recently used dropped first; a file larger than this is read "
        "and decompressed again per CCD: see pipeline_raw_spool_mb); 0 = read every time.",
    )
    pipeline_raw_spool_mb: int = Field(
        default=8192,
        ge=0,
        description="Disk for the decompressed bytes of multi-image files larger than "
        "pipeline_raw_cache_mb (a full DECam exposure, ~2 GB): spooled once to a file in "
        "pipeline_raw_spool_dir, named by the stored file's hash, each CCD reading only its "
        "own HDUs from it (oldest dropped first); 0 = decompress such a file per CCD.",
    )
    pipeline_raw_spool_dir: Path | None = Field(
        default=None,
        description="Where those decompressed files go; default <data_dir>/cache/raw.",
    )

    # FITS input limits: a file claiming more is refused before its data is read.
    fits_max_pixels: int = Field(
        default=100_000_000, ge=1, description="Most pixels of one image (NAXIS1 × NAXIS2)."
    )
    fits_max_bytes: int = Field(
        default=1 << 30, ge=2880, description="Most bytes of a FITS file once decompressed."
    )
    fits_max_cards: int = Field(
        default=10_000, ge=36, description="Most 80-character cards in one FITS header."
    )

    # Notifications (astrid.notify): SMTP (SendGrid: host smtp.sendgrid.net, user "apikey",
    # password = the API key), webhook timeout, retries, and the URL links in messages use.
    smtp_host: str | None = Field(default=None, description="SMTP server; unset = no email.")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "AstrID <astrid@localhost>"
    smtp_tls: Literal["starttls", "ssl", "off"] = Field(
        default="starttls", description="starttls (587), ssl (implicit TLS, 465) or off."
    )
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    notify_webhook_timeout_s: float = Field(default=10.0, gt=0)
    notify_max_attempts: int = Field(default=5, ge=1)
    notify_retry_base_s: float = Field(default=30.0, ge=0, description="Backoff: base * 2^n.")
    notify_poll_s: float = Field(default=1.0, gt=0, description="Dispatcher loop period.")
    public_url: str = Field(
        default="http://127.0.0.1:8000", description="Base URL of the API in messages."
    )

    # Cross-match annotations (astrid.catalog.crossmatch) and TNS reports.
    crossmatch_provider: Literal["local", "gaia"] = "local"
    crossmatch_catalog: Path | None = Field(
        default=None, description="Local catalogue file (VOTable/FITS/ECSV/CSV) to match."
    )
    crossmatch_radius_arcsec: float = Field(default=5.0, gt=0)
    skybot_url: str | None = Field(
        default=None, description="SkyBoT cone-search URL; default astroquery's (IMCCE)."
    )
    tns_url: str | None = Field(default=None, description="TNS bulk-report endpoint.")
    tns_api_key: SecretStr | None = None
    tns_bot_id: int | None = None
    tns_bot_name: str | None = None
    tns_reporter: str = "AstrID"
    tns_group_id: int | None = None

    # Curation (docs/curation.md): association radius, default consensus rule, expert queue.
    curation_object_radius_arcsec: float = Field(
        default=1.5, gt=0, le=60, description="Detections this close are one sky object."
    )
    curation_merge_max_arcsec: float = Field(
        default=10.0, gt=0, le=3600, description="An expert may merge objects this close."
    )
    curation_consensus_agreeing: int = Field(
        default=2, ge=1, le=20, description="Agreeing curator votes that decide a detection."
    )
    curation_expert_decides: bool = Field(
        default=True, description="One expert's real/bogus vote decides alone."
    )
    curation_expert_min_score: float = Field(
        default=0.95, ge=0, le=1, description="Objects at or above this P(real) await experts."
    )
    curation_undo_window_s: int = Field(
        default=1800, ge=0, description="A curator may undo their vote for this long."
    )

    # Pipeline workers: outages and leases (docs/pipeline.md, "Outages and dead workers").
    outage_patience_s: float = Field(
        default=300.0, gt=0, description="How long a database/broker outage is waited out."
    )
    stage_heartbeat_s: float = Field(
        default=15.0, gt=0, description="Heartbeat period of a running stage run."
    )
    stage_lease_s: float = Field(
        default=120.0, gt=0, description="A running stage run without heartbeat this long is stale."
    )
    reclaim_every_s: float = Field(
        default=60.0, gt=0, description="How often each worker reclaims stale stage runs."
    )
    worker_heartbeat_s: float = Field(
        default=5.0, gt=0, description="How often a worker records its heartbeat row."
    )
    worker_lost_after_s: float = Field(
        default=30.0, gt=0, description="A worker silent this long is shown as lost."
    )

    release_forced_photometry: bool = Field(
        default=True,
        description="Catalog releases freeze forced photometry and upper limits in each light "
        "curve (live exports carry detection points only).",
    )
    prefect_api_url: str | None = Field(
        default=None,
        description="Prefect server for `astrid schedule serve --prefect` (unset: local mode).",
    )
    scheduler_every_s: float = Field(
        default=60.0, gt=0, description="How often `astrid schedule serve` runs due schedules."
    )

    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log lines as text, or one JSON object per line (with request/run ids).",
    )

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
