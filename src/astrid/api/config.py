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
        Largest accepted upload, in bytes (the routes of ``upload_paths``).
    max_body_bytes : int
        Largest request body on every other route, in bytes (counted as it streams in).
    max_predict_bytes : int
        Largest body of ``POST /models/{name}/predict`` (triplets), in bytes.
    upload_paths : tuple of str
        Routes (below ``/api/v1``) that take file uploads: their callers are authenticated,
        with at least the curator role, before the body is read.
    public_body_paths : tuple of str
        Public routes with a body (login, refresh, logout, one-click unsubscribe): not
        authenticated before it.
    forwarded_allow_ips : tuple of str
        Proxies whose ``X-Forwarded-For``/``-Proto`` are trusted (uvicorn
        ``forwarded_allow_ips``); empty = none, rate limits use the TCP peer.
    login_backoff_base_s, login_backoff_max_s : float
        After ``login_free_failures`` failed logins of one account, the next is refused for
        ``base · 2^(n - free - 1)`` seconds (at most ``max``), even with the right password.
    login_free_failures : int
        Failed logins allowed before the backoff starts.
    max_concurrent_logins : int
        Password hashes computed at once per process; more logins are answered 503.
    cors_origins : tuple of str
        Origins allowed by CORS (the dashboard).
    stream_poll_s, stream_heartbeat_s : float
        Outbox polling period and SSE heartbeat period, in seconds.
    auth_cache_s : float
        Seconds a verified bearer token or API key is remembered by the process (its user,
        role and scopes), saving the signature check and the database lookup; 0 = off.
    threads : int
        Worker threads of the process's thread pool (sync routes, database calls); AnyIO's
        default is 40. Fewer threads contend less for the GIL under load (see
        docs/operations.md); keep it at least the database pool size.
    fast_reads : bool
        Serve ``GET /detections`` and ``GET /detections/{id}`` through asyncpg on the event
        loop when the database is PostgreSQL (:mod:`astrid.api.hotpath`); same answers.
    hot_concurrency : int
        Hot reads served at once per process (0 = no limit); the rest queue first come,
        first served, so a saturated process answers in arrival order instead of
        interleaving every request (see :class:`astrid.api.hotpath.AsyncReader`).
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
    max_body_bytes: int = 1024 * 1024
    max_predict_bytes: int = 16 * 1024 * 1024
    upload_paths: tuple[str, ...] = ("/observations/ingest/upload", "/alerts")
    public_body_paths: tuple[str, ...] = (
        "/auth/token",
        "/auth/refresh",
        "/auth/logout",
        "/notify/unsubscribe",  # the signed token is the credential (RFC 8058 one-click)
    )
    forwarded_allow_ips: tuple[str, ...] = ()
    login_free_failures: int = 3
    login_backoff_base_s: float = 1.0
    login_backoff_max_s: float = 900.0
    max_concurrent_logins: int = 4
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    stream_poll_s: float = 0.5
    stream_heartbeat_s: float = 15.0
    archive_base_url: str | None = None
    auth_cache_s: float = 10.0
    threads: int = 40
    fast_reads: bool = True
    hot_concurrency: int = 4

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
            max_body_bytes=int(settings.api_max_body_kb * 1024),
            max_predict_bytes=int(settings.api_predict_max_mb * 1024 * 1024),
            forwarded_allow_ips=tuple(
                ip.strip() for ip in settings.forwarded_allow_ips.split(",") if ip.strip()
            ),
            login_free_failures=settings.api_login_free_failures,
            login_backoff_base_s=settings.api_login_backoff_base_s,
            login_backoff_max_s=settings.api_login_backoff_max_s,
            max_concurrent_logins=settings.api_max_concurrent_logins,
            cors_origins=tuple(settings.api_cors_origins),
            auth_cache_s=settings.api_auth_cache_s,
            threads=settings.api_threads,
            fast_reads=settings.api_fast_reads,
            hot_concurrency=settings.api_hot_concurrency,
        )
        return replace(base, **overrides)

    def uvicorn_proxy_options(self) -> dict[str, Any]:
        """uvicorn options that trust ``X-Forwarded-*`` only from ``forwarded_allow_ips``.

        uvicorn's own default trusts 127.0.0.1, so any local caller (or a proxy that passes
        the header through) could pick the address the rate limits count; with no proxy
        configured the headers are ignored and the TCP peer is the client.
        """
        if not self.forwarded_allow_ips:
            return {"proxy_headers": False, "forwarded_allow_ips": ""}
        return {"proxy_headers": True, "forwarded_allow_ips": list(self.forwarded_allow_ips)}

    @property
    def jwks_url(self) -> str | None:
        if self.oidc_jwks_url:
            return self.oidc_jwks_url
        if self.oidc_issuer:
            return self.oidc_issuer.rstrip("/") + "/.well-known/jwks.json"
        return None
