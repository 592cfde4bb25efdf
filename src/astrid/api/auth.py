"""Who is calling and what they may do: roles, principals and per-route policies.

Every route declares exactly one :class:`Policy` as a dependency (``Depends(require("viewer"))``
or ``Depends(PUBLIC)``); ``tests/api/test_route_matrix.py`` enumerates the app's routes and
fails for a route without one. A policy authenticates the request (``Authorization: Bearer``
with an AstrID, Supabase or OIDC JWT, or an API key as ``X-API-Key`` or bearer), checks the
role (viewer < curator < expert < admin) and, for API keys, the scope (``read`` for safe
methods, ``write`` otherwise), then applies the rate limit.

Verified credentials are remembered per process for ``ApiConfig.auth_cache_s`` seconds
(:class:`AuthCache`, default 10 s): a request whose bearer token or API key was verified a
moment ago costs no signature check and no database round trip. A token is never kept past
its own expiry; a role change or key revocation made through this process's API clears the
cache at once, one made elsewhere (the CLI, another worker) applies within ``auth_cache_s``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from astrid.api.problems import Problem
from astrid.api.ratelimit import MemoryLimiter
from astrid.api.security import KEY_PREFIX, ROLES, AuthError, authenticate_api_key
from astrid.runtime import Runtime

__all__ = [
    "PUBLIC",
    "UNLIMITED_PUBLIC",
    "AuthCache",
    "Policy",
    "Principal",
    "authenticate_request",
    "client_address",
    "identify",
    "rate_limit",
    "remembered_caller",
    "require",
    "role_rank",
]

_bearer = HTTPBearer(auto_error=False, description="AstrID, Supabase or OIDC JWT, or an API key")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An AstrID API key")


def role_rank(role: str) -> int:
    """0 for viewer ... 3 for admin (-1 for anything else)."""
    return ROLES.index(role) if role in ROLES else -1


@dataclass(frozen=True)
class Principal:
    """The authenticated caller (``user_id`` None for anonymous on public routes)."""

    user_id: int | None
    username: str | None
    role: str | None
    via: str  # "jwt" | "api_key" | "anonymous"
    scopes: tuple[str, ...] = field(default=("read", "write"))
    key_prefix: str | None = None
    session_id: str | None = None  # the login session (token family); "key:<prefix>" for keys


ANONYMOUS = Principal(None, None, None, "anonymous", ())


class AuthCache:
    """Principals of credentials verified in the last ``ttl_s`` seconds (thread-safe).

    Keyed by the credential itself (the bearer token or API key as presented); an entry
    never outlives the credential's own expiry. At most ``max_entries`` are kept (the cache
    is emptied when full). ``ttl_s`` 0 disables it. ``clock``: seconds, monotonic (tests
    pass their own to step time).
    """

    def __init__(
        self, ttl_s: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, credential: str) -> Principal | None:
        if self.ttl_s <= 0:
            return None
        hit = self._entries.get(credential)
        if hit is None:
            return None
        if self._clock() >= hit[0]:
            with self._lock:
                self._entries.pop(credential, None)
            return None
        return hit[1]

    def put(self, credential: str, principal: Principal, expires_at: float | None) -> None:
        """Remember ``principal``; ``expires_at``: the credential's expiry (Unix seconds)."""
        if self.ttl_s <= 0:
            return
        ttl = self.ttl_s
        if expires_at is not None:
            ttl = min(ttl, expires_at - time.time())
        if ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[credential] = (self._clock() + ttl, principal)

    def clear(self) -> None:
        """Forget everything (after a role change or a key revocation)."""
        with self._lock:
            self._entries.clear()


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, kind="not-authenticated", headers={"WWW-Authenticate": "Bearer"})


class Policy:
    """A route's access rule; call it as a FastAPI dependency to get the :class:`Principal`.

    Parameters
    ----------
    role : str or None
        Least role allowed; None = public (no credentials needed).
    scope : str
        API-key scope needed: ``read`` or ``write``.
    rate_limited : bool
        Count requests against the caller's rate limit.
    """

    def __init__(self, role: str | None, scope: str = "read", rate_limited: bool = True) -> None:
        if role is not None and role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        self.role = role
        self.scope = scope
        self.rate_limited = rate_limited

    def __repr__(self) -> str:
        return f"Policy(role={self.role!r}, scope={self.scope!r})"

    async def __call__(
        self,
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key)],
    ) -> Principal:
        # async: a remembered credential costs nothing, so no trip through the thread pool;
        # database lookups and a Redis-backed rate limit still run there.
        if self.role is None:
            if self.rate_limited:
                await _rate_limit(request, f"ip:{client_address(request)}")
            return ANONYMOUS
        try:
            principal = remembered(request, bearer, api_key)
            if principal is None:
                principal = await run_in_threadpool(authenticate_request, request, bearer, api_key)
        except AuthError as exc:
            await _rate_limit(request, f"ip:{client_address(request)}")
            raise _unauthorized(str(exc)) from exc
        if principal is None:
            await _rate_limit(request, f"ip:{client_address(request)}")
            raise _unauthorized("this route needs credentials (bearer token or X-API-Key)")
        return await self.admit(request, principal)

    async def admit(self, request: Request, principal: Principal) -> Principal:
        """The steps after authentication: rate limit, role and scope (raises a 403 or 429
        :class:`Problem`); the hot read path (:mod:`astrid.api.hotpath`) calls it too."""
        if self.rate_limited:
            key = (
                f"key:{principal.key_prefix}"
                if principal.key_prefix
                else f"user:{principal.user_id}"
            )
            await _rate_limit(request, key)
        if role_rank(principal.role or "") < role_rank(self.role or ""):
            raise Problem(
                403, f"this route needs the {self.role!r} role or higher", kind="forbidden"
            )
        if self.scope not in principal.scopes:
            raise Problem(403, f"this API key lacks the {self.scope!r} scope", kind="forbidden")
        request.state.principal = principal
        return principal


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def rate_limit(request: Request, key: str) -> None:
    limiter = request.app.state.limiter
    if limiter is None:
        return
    decision = limiter.hit(key)
    if not decision.allowed:
        raise Problem(
            429,
            f"rate limit of {limiter.limit} requests per {limiter.window_s} s exceeded",
            kind="rate-limited",
            headers={"Retry-After": str(decision.retry_after)},
        )


async def _rate_limit(request: Request, key: str) -> None:
    limiter = request.app.state.limiter
    if limiter is None:
        return
    if isinstance(limiter, MemoryLimiter):
        rate_limit(request, key)
    else:  # a network round trip (Redis): off the event loop
        await run_in_threadpool(rate_limit, request, key)


def _credentials(
    bearer: HTTPAuthorizationCredentials | None, api_key: str | None
) -> tuple[str | None, str | None]:
    """(API key, bearer token): one of them or neither; raises on two different ones."""
    token = bearer.credentials if bearer is not None else None
    if api_key is not None and token is not None and token != api_key:
        # Two different credentials: which one the caller meant is unknowable, so neither.
        raise AuthError("conflicting credentials: send X-API-Key or Authorization, not both")
    if api_key is None and token is not None and token.startswith(KEY_PREFIX):
        api_key, token = token, None
    return api_key, token


def remembered(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None,
    api_key: str | None,
) -> Principal | None:
    """The principal of these credentials if verified within the cache's lifetime, else None."""
    cache: AuthCache | None = getattr(request.app.state, "auth_cache", None)
    key, token = _credentials(bearer, api_key)
    credential = key or token
    if cache is None or credential is None:
        return None
    return cache.get(credential)


async def remembered_caller(request: Request) -> Principal | None:
    """The principal of the request's credentials, extracted as the policies extract them,
    when the authentication cache holds it; else None. Raises :class:`AuthError` for two
    different credentials (the policies' 401)."""
    return remembered(request, await _bearer(request), await _api_key(request))


def _token_expiry(token: str) -> float | None:
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return 0.0
    return float(exp) if isinstance(exp, int | float) else None


def authenticate_request(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None,
    api_key: str | None,
) -> Principal | None:
    runtime: Runtime = request.app.state.runtime
    cache: AuthCache | None = getattr(request.app.state, "auth_cache", None)
    api_key, token = _credentials(bearer, api_key)
    credential = api_key or token
    if cache is not None and credential is not None:
        hit = cache.get(credential)
        if hit is not None:
            return hit
    principal: Principal | None = None
    expires: float | None = None
    if api_key is not None:
        with runtime.db.session() as session:
            user, row = authenticate_api_key(session, request.app.state.config, api_key)
            principal = Principal(
                user.id,
                user.username,
                user.role,
                "api_key",
                tuple(row.scopes),
                row.prefix,
                session_id=f"key:{row.prefix}",
            )
            if row.expires_at is not None:  # SQLite gives naive UTC datetimes
                expires = row.expires_at.replace(tzinfo=row.expires_at.tzinfo or UTC).timestamp()
    elif token is not None:
        with runtime.db.session() as session:
            user, sid = request.app.state.tokens.verify_access_session(session, token)
            principal = Principal(user.id, user.username, user.role, "jwt", session_id=sid)
        expires = _token_expiry(token)
    if cache is not None and credential is not None and principal is not None:
        cache.put(credential, principal, expires)
    return principal


def identify(request: Request) -> Principal:
    """Who the caller is, on a public route: anonymous when the credentials are absent or bad.

    For routes that answer everyone but tell some roles more (``/health/ready``); never
    raises for bad credentials.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    bearer = (
        HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip())
        if scheme.lower() == "bearer" and token.strip()
        else None
    )
    try:
        principal = authenticate_request(request, bearer, request.headers.get("x-api-key"))
    except AuthError:
        return ANONYMOUS
    return principal or ANONYMOUS


_POLICIES: dict[tuple[str | None, str], Policy] = {}


def require(role: str, scope: str | None = None, *, write: bool = False) -> Policy:
    """The policy object for ``role`` (and scope ``write`` when ``write``)."""
    key = (role, scope or ("write" if write else "read"))
    if key not in _POLICIES:
        _POLICIES[key] = Policy(*key)
    return _POLICIES[key]


PUBLIC = Policy(None)
"""Public routes that still count against the per-address rate limit (login, token refresh)."""

UNLIMITED_PUBLIC = Policy(None, rate_limited=False)
"""Health probes and metrics: public and never limited."""

CurrentUser = Annotated[Principal, Depends(require("viewer"))]
