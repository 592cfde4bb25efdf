"""The FastAPI app factory.

``create_app(runtime, config)`` wires the runtime (database, blobs), the token service, the
rate limiter, metrics, the problem+json handlers and every router; ``/api/v1`` holds the
versioned API, ``/health/*`` and ``/metrics`` sit at the root, OpenAPI docs at ``/docs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
import dramatiq
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from astrid import __version__
from astrid.api import (
    routes_auth,
    routes_calibration,
    routes_candidates,
    routes_catalog,
    routes_crossmatch,
    routes_detections,
    routes_diagnostics,
    routes_health,
    routes_ingest,
    routes_model_ops,
    routes_models,
    routes_notify,
    routes_objects,
    routes_observations,
    routes_pipeline,
    routes_review,
    routes_scanning,
    routes_votes,
    routes_workers,
    stream,
)
from astrid.api.auth import AuthCache, Policy
from astrid.api.bodies import JsonBodyGuard
from astrid.api.bodyguard import BodyGuard
from astrid.api.config import ApiConfig
from astrid.api.dashboard import dashboard_dir, mount_dashboard, mount_hips
from astrid.api.hotpath import AsyncReader, HotReads, asyncpg_available
from astrid.api.lockout import LoginGuard
from astrid.api.metrics import Metrics, MetricsMiddleware
from astrid.api.metrics import router as metrics_router
from astrid.api.openapi import document_problems
from astrid.api.problems import install_problem_handlers, problem_response
from astrid.api.ratelimit import make_limiter
from astrid.api.request_ids import RequestIdMiddleware
from astrid.api.security import TokenService
from astrid.api.store_metrics import StoreCollector
from astrid.pipeline.hips import HIPS_URL_PATH, hips_directory
from astrid.pipeline.queue.broker import make_broker, queue_stats
from astrid.runtime import Runtime

__all__ = ["API_PREFIX", "RouteInfo", "api_routes", "create_app"]

API_PREFIX = "/api/v1"


@dataclass(frozen=True)
class RouteInfo:
    """One API operation as the app serves it: full path, methods and its access policy."""

    path: str
    methods: frozenset[str]
    name: str
    policies: tuple[Policy, ...]


def _policies(dependant: Any) -> list[Policy]:
    found: list[Policy] = []
    for dep in getattr(dependant, "dependencies", []):
        if isinstance(dep.call, Policy):
            found.append(dep.call)
        found.extend(_policies(dep))
    return found


def api_routes(app: FastAPI) -> list[RouteInfo]:
    """Every API operation of ``app`` (docs and OpenAPI routes excluded)."""
    try:  # FastAPI >= 0.16x keeps included routers nested; this flattens them.
        from fastapi.routing import iter_route_contexts

        contexts: list[Any] = list(iter_route_contexts(app.routes))
    except ImportError:  # pragma: no cover - older FastAPI has flat routes
        contexts = list(app.routes)
    out = []
    for ctx in contexts:
        dependant = getattr(ctx, "dependant", None)
        if dependant is None:  # a plain starlette route (docs, openapi.json)
            continue
        unique = tuple(dict.fromkeys(_policies(dependant)))
        out.append(RouteInfo(str(ctx.path), frozenset(ctx.methods or ()), str(ctx.name), unique))
    return out


def _nul_field(scope: Scope) -> str | None:
    """The first query parameter (or the path) holding a NUL character, if any."""
    if "\x00" in scope.get("path", ""):
        return "path"
    query = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if "\x00" in value or "\x00" in name:
                return f"query.{name.replace(chr(0), '')}"
    return None


class BodySizeLimit:
    """Refuse bodies larger than ``max_bytes`` before reading them (413 problem+json), and
    NUL characters in the path or query (422 naming the parameter; databases refuse them)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            bad = _nul_field(scope)
            if bad is not None:
                response = problem_response(
                    None,
                    422,
                    f"{bad} contains a NUL character",
                    kind="validation",
                    errors=[{"field": bad, "message": "NUL characters are not allowed"}],
                )
                await response(scope, receive, send)
                return
            headers = dict(scope.get("headers") or [])
            length = headers.get(b"content-length")
            too_big = False
            if length is not None:
                try:
                    too_big = int(length) > self.max_bytes
                except ValueError:
                    too_big = True
            if too_big:
                response = problem_response(
                    None,
                    413,
                    f"request body is larger than {self.max_bytes} bytes",
                    errors=[{"field": "body", "message": "too large"}],
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _queue_stats(runtime: Runtime) -> Callable[[], dict[str, int | None]] | None:
    """Queue depths of the configured broker for the metrics (None in process)."""
    url = runtime.settings.broker_url
    if not url:
        return None
    brokers: list[dramatiq.Broker] = []

    def stats() -> dict[str, int | None]:
        if not brokers:  # made on the first scrape, then reused
            brokers.append(make_broker(url))
        return queue_stats(brokers[0])

    return stats


def create_app(runtime: Runtime | None = None, config: ApiConfig | None = None) -> FastAPI:
    """Build the API over ``runtime`` (default: from settings).

    Parameters
    ----------
    runtime : Runtime, optional
        Database and blob store; the schema must be migrated.
    config : ApiConfig, optional
        Token, identity-provider, rate-limit and upload settings.
    """
    runtime = runtime or Runtime.from_settings()
    config = config or ApiConfig.from_settings(runtime.settings)
    runtime.require_migrated()
    threads = config.threads
    reader: AsyncReader | None = None
    if config.fast_reads and runtime.db.engine.dialect.name == "postgresql" and asyncpg_available():
        reader = AsyncReader(
            runtime.db.url, runtime.settings.db_pool_size, concurrency=config.hot_concurrency
        )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # the thread pool is per event loop: sized once the loop runs
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        if reader is not None:  # the hot reads' pool lives on the loop that serves requests
            await reader.open()
        try:
            yield
        finally:
            if reader is not None:
                await reader.close()

    app = FastAPI(
        lifespan=lifespan,
        title="AstrID API",
        version=__version__,
        description=(
            "Observations, detections and live events of AstrID. Errors are RFC 9457 "
            "problem+json; lists page with `limit` + `cursor`."
        ),
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.runtime = runtime
    app.state.config = config
    app.state.tokens = TokenService(config)
    app.state.auth_cache = AuthCache(config.auth_cache_s)
    app.state.login_guard = LoginGuard(config)
    app.state.limiter = make_limiter(
        config.rate_limit,
        config.rate_window_s,
        config.rate_limit_redis_url,
        config.rate_limit_prefix,
    )
    app.state.metrics = Metrics()
    app.state.metrics.registry.register(StoreCollector(runtime, _queue_stats(runtime)))
    app.state.batches = routes_pipeline.BatchRegistry()
    install_problem_handlers(app)

    app.include_router(routes_health.router)
    app.include_router(metrics_router)
    # The hottest read routers first: each request is matched against the routers in this
    # order (FastAPI scans every route of every included router before the one that
    # matches: ~0.5 ms of CPU per request at the end of the list). Their prefixes
    # (/detections, /scanning) belong to no other router, so no match changes.
    for router in (
        routes_detections.router,
        routes_scanning.router,
        routes_auth.router,
        routes_ingest.router,
        routes_observations.router,
        routes_calibration.router,
        routes_ingest.alerts_router,
        routes_pipeline.router,
        routes_model_ops.router,  # before routes_models' /{name}/{version}
        routes_models.router,
        routes_candidates.router,
        routes_votes.router,
        routes_objects.router,
        routes_review.router,
        routes_crossmatch.router,
        routes_catalog.router,
        routes_notify.router,
        routes_workers.router,
        routes_diagnostics.router,
        stream.router,
    ):
        app.include_router(router, prefix=API_PREFIX)
    mount_hips(app, hips_directory(runtime.settings), HIPS_URL_PATH)
    # Last, so every API route matches first: the web dashboard at / when it is built.
    app.state.dashboard = mount_dashboard(app, dashboard_dir(runtime.settings.dashboard_dir))

    # Outermost first: metrics see every answer, including 413s.
    app.state.fast_reader = reader
    if reader is not None:  # innermost: every other middleware wraps the hot reads too
        app.add_middleware(HotReads, fast=app, reader=reader, prefix=API_PREFIX)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Retry-After", "X-Request-ID"],
        )
    app.add_middleware(JsonBodyGuard)  # inside the size limit: bodies it reads are bounded
    # Inside BodySizeLimit: authenticate before the body, count chunked bytes per route.
    app.add_middleware(BodyGuard, config=config, prefix=API_PREFIX)
    app.add_middleware(BodySizeLimit, max_bytes=config.max_upload_bytes + 64 * 1024)
    templates = [r.path for r in api_routes(app)] + ["/openapi.json", "/docs"]
    app.add_middleware(MetricsMiddleware, templates=templates, metrics=app.state.metrics)
    app.add_middleware(RequestIdMiddleware)  # outermost: every log line of a request has its id
    document_problems(app, api_routes(app), API_PREFIX)
    return app


def app_from_settings() -> Any:
    """Uvicorn factory (``uvicorn --factory astrid.api.app:app_from_settings``)."""
    return create_app()
