"""Prometheus metrics: request counts and latencies per route template, at ``/metrics``.

Each app has its own registry (several apps in one process, as in tests, do not collide).
The middleware is plain ASGI so streamed responses (SSE) pass through untouched.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from astrid.api.auth import UNLIMITED_PUBLIC, Principal

__all__ = ["Metrics", "MetricsMiddleware", "router"]


class Metrics:
    """The API's collectors in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "astrid_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "astrid_http_request_duration_seconds",
            "Time to the response headers, by method and route template.",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )


class MetricsMiddleware:
    """Counts requests and times them (to the start of the response), by route template."""

    def __init__(self, app: ASGIApp, templates: list[str], metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.patterns = [(compile_path(t)[0], t) for t in templates]
        self.by_route: dict[int, str] = {}
        # labelled children, looked up once (``labels()`` validates and locks on every call)
        self.children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _template(self, scope: Scope) -> str:
        # The router leaves the matched route object in the scope; its template is found by
        # one scan of the ~150 route regexes the first time and remembered, so later requests
        # cost a dict lookup. (A route's own ``path`` lacks the prefix of its router.)
        route = scope.get("route")
        key = id(route)
        known = self.by_route.get(key) if route is not None else None
        if known is not None:
            return known
        path = scope["path"]
        found = "unmatched"
        for regex, template in self.patterns:
            if regex.match(path):
                found = template
                break
        own = getattr(route, "path", None)
        if isinstance(own, str) and own and found.endswith(own):
            self.by_route[key] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method = scope["method"]
        recorded = False

        async def send_wrapper(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                elapsed = time.perf_counter() - start
                status = int(message["status"])
                route = self._template(scope)
                pair = self.children.get((method, route, status))
                if pair is None:
                    pair = (
                        self.metrics.requests.labels(method, route, str(status)),
                        self.metrics.latency.labels(method, route),
                    )
                    self.children[(method, route, status)] = pair
                pair[0].inc()
                pair[1].observe(elapsed)
            await send(message)

        await self.app(scope, receive, send_wrapper)


router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def prometheus_metrics(
    request: Request, _: Annotated[Principal, Depends(UNLIMITED_PUBLIC)]
) -> Response:
    metrics: Metrics = request.app.state.metrics
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
