"""Liveness and readiness probes (public, never rate limited).

``/health/live`` answers while the process runs. ``/health/ready`` checks each dependency for
real: the database (a query and the schema), the blob store (an existence check), the broker
(Redis ``PING``) and MLflow (its tracking store); a dependency that is not configured is
reported as such and does not make the service unready. 503 when any configured check fails.
Anonymous callers get the overall status only; the per-dependency details (which may name
hosts and ports) are for admins.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import create_engine, text

from astrid.api.auth import UNLIMITED_PUBLIC, Principal, identify
from astrid.api.deps import Rt
from astrid.pipeline.queue.broker import parse_broker_url
from astrid.runtime import Runtime

__all__ = ["CHECKS", "router"]

router = APIRouter(prefix="/health", tags=["health"])
Public = Annotated[Principal, Depends(UNLIMITED_PUBLIC)]


def _check_database(rt: Runtime) -> str:
    with rt.db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    if not rt.db.is_migrated():
        raise RuntimeError("schema not migrated (run `astrid db upgrade`)")
    return "ok"


def _check_storage(rt: Runtime) -> str:
    rt.blobs.exists("0" * 64)
    return "ok"


def _check_broker(rt: Runtime) -> str:
    url = rt.settings.broker_url
    if not url:
        return "not configured"
    if url.startswith("redis"):
        import redis  # optional dependency (the ``redis`` extra)

        # AstrID's options (namespace, heartbeat_timeout, ...) are not the client's.
        client_url = parse_broker_url(url).url or url
        client = redis.Redis.from_url(client_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
        return "ok"
    return "configured (not checked: only redis:// brokers are probed)"


def _check_mlflow(rt: Runtime) -> str:
    uri = rt.settings.mlflow_tracking_uri
    if not uri:
        return "not configured"
    if uri.startswith(("http://", "https://")):
        response = httpx.get(uri.rstrip("/") + "/health", timeout=3)
        response.raise_for_status()
        return "ok"
    if uri.startswith(("sqlite", "postgresql", "mysql")):
        engine = create_engine(uri.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
        return "ok"
    return "configured (not checked)"


CHECKS: dict[str, Callable[[Runtime], str]] = {
    "database": _check_database,
    "storage": _check_storage,
    "broker": _check_broker,
    "mlflow": _check_mlflow,
}


@router.get("/live", summary="Liveness")
def live(_: Public) -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: database, storage, broker, MLflow",
    description="The overall status for everyone; per-dependency checks for admins.",
    responses={
        503: {
            "description": "A configured dependency failed",
            "content": {"application/json": {}},
        }
    },
)
def ready(request: Request, rt: Rt, _: Public) -> JSONResponse:
    checks: dict[str, Any] = {}
    ok = True
    for name, check in CHECKS.items():
        start = time.perf_counter()
        try:
            status = check(rt)
        except Exception as exc:  # a probe reports any failure, it never raises
            status, ok = f"error: {type(exc).__name__}: {exc}"[:300], False
        checks[name] = {"status": status, "ms": round(1000 * (time.perf_counter() - start), 1)}
    body: dict[str, Any] = {"status": "ok" if ok else "unavailable"}
    if _is_admin(request):
        body["checks"] = checks
    return JSONResponse(body, status_code=200 if ok else 503)


def _is_admin(request: Request) -> bool:
    # Identifying a caller reads the database; when that fails nobody is shown the details
    # (the probe itself must still answer).
    try:
        return identify(request).role == "admin"
    except Exception:
        return False
