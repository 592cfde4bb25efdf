"""API configuration: token lifetimes, external identity providers, limits.

Values come from :class:`astrid.settings.Settings` (the signing secret, the broker URL used as
the default Redis for rate limits) and from ``astrid serve`` options; the API itself reads no
environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from astrid.pipeline.queue.broker import parse_broker_url
from astrid.settings import Settings

__all__ = ["ApiConfig"]


@dataclass(frozen=True)
class ApiConfig:
    """Everything the API needs beyond the runtime.

    Attributes
    ----------
    secret_key : str
        Signs AstrID's own JWTs (HS256) and keys the API-key digests.
    access_ttl_s, refresh_ttl_s : int
        Lifetimes of access and refresh tokens, in seconds.
    supabase_jwt_secret : str or None
        Supabase project JWT secret: enables Supabase access tokens (HS256, aud
        ``authenticated``).
    oidc_issuer, oidc_audience, oidc_jwks_url : str or None
        Any OIDC provider: tokens with ``iss == oidc_issuer`` are verified against the JWKS
        (default ``<issuer>/.well-known/jwks.json``) and ``aud == oidc_audience``.
    auto_provision_role : str or None
        Role given to an external identity seen for the first time (None = refuse unknown).
    rate_limit, rate_window_s : int
        At most ``rate_limit`` requests per ``rate_window_s`` seconds per API key, user or
        client address (0 disables).
    rate_limit_redis_url : str or None
        Redis for shared rate-limit counters (production); None = in-process memory.
    rate_limit_prefix : str
        Key prefix of the Redis counters.
    max_upload_bytes : int
        Largest accepted upload, in bytes.
    cors_origins : tuple of str
        Origins allowed by CORS (the dashboard).
    stream_poll_s, stream_heartbeat_s : float
        Outbox polling period and SSE heartbeat period, in seconds.
    archive_base_url : str or None
        Server root of a SkyView/MAST mirror for ingest by position (None = the public
        archives).
    """

    secret_key: str = "change-me-in-production"
    access_ttl_s: int = 15 * 60
    refresh_ttl_s: int = 7 * 24 * 3600
    supabase_jwt_secret: str | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    auto_provision_role: str | None = "viewer"
    rate_limit: int = 600
    rate_window_s: int = 60
    rate_limit_redis_url: str | None = None
    rate_limit_prefix: str = "astrid:rl:"
    max_upload_bytes: int = 512 * 1024 * 1024
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    stream_poll_s: float = 0.5
    stream_heartbeat_s: float = 15.0
    archive_base_url: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ApiConfig:
        """Defaults from settings (secret; Redis broker as rate-limit store), then overrides."""
        redis_url = None
        if (settings.broker_url or "").startswith("redis"):
            # the client URL, without AstrID's broker options (namespace, heartbeat_timeout)
            redis_url = parse_broker_url(settings.broker_url).url
        supabase = settings.supabase_jwt_secret
        base = cls(
            secret_key=settings.secret_key.get_secret_value(),
            rate_limit_redis_url=redis_url,
            supabase_jwt_secret=supabase.get_secret_value() if supabase else None,
            oidc_issuer=settings.oidc_issuer,
            oidc_audience=settings.oidc_audience,
            oidc_jwks_url=settings.oidc_jwks_url,
            auto_provision_role=settings.api_auto_provision_role,
            rate_limit=settings.api_rate_limit,
            rate_window_s=settings.api_rate_window_s,
            max_upload_bytes=int(settings.api_max_upload_mb * 1024 * 1024),
            cors_origins=tuple(settings.api_cors_origins),
        )
        return replace(base, **overrides)

    @property
    def jwks_url(self) -> str | None:
        if self.oidc_jwks_url:
            return self.oidc_jwks_url
        if self.oidc_issuer:
            return self.oidc_issuer.rstrip("/") + "/.well-known/jwks.json"
        return None
