"""Diagnostics over HTTP, for the ``/diagnostics`` page.

* ``GET /diagnostics/checks`` (viewer): the checks that can be run, what each does;
* ``POST /diagnostics/run`` (admin; body ``{"check": NAME}`` or ``{"check": "all"}``): run
  one check or all of them and answer their results with timestamped log lines. The checks
  are the readiness probes of ``/health/ready`` (database, storage, broker, MLflow) plus
  ``model`` (load the shipped model and score a triplet) and ``smoke`` (a simulated pair
  through subtraction and detection, injected vs found; :mod:`astrid.pipeline.diagnostics`).
  Results name hosts and ports, hence admin only, like the probes' details.

A failing check is a result (``ok: false`` with the reason), never an error answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from astrid.api.deps import AdminWrite, Rt, Viewer
from astrid.api.routes_health import CHECKS
from astrid.pipeline.diagnostics import check_model_load, smoke_test
from astrid.runtime import Runtime

__all__ = ["DIAGNOSTICS", "router"]

router = APIRouter(prefix="/diagnostics", tags=["diagnostics"])


Check = Callable[[Runtime, Callable[[str], None]], tuple[str, dict[str, Any] | None]]


def _probe(name: str) -> Check:
    def run(rt: Runtime, log: Callable[[str], None]) -> tuple[str, dict[str, Any] | None]:
        log(f"checking {name} (the /health/ready probe)")
        return CHECKS[name](rt), None

    return run


def _model(rt: Runtime, log: Callable[[str], None]) -> tuple[str, dict[str, Any] | None]:
    return check_model_load(log), None


def _smoke(rt: Runtime, log: Callable[[str], None]) -> tuple[str, dict[str, Any] | None]:
    result = smoke_test(log)
    return f"ok: {result.detected} of {result.injected} found", result.as_dict()


DIAGNOSTICS: dict[str, tuple[str, Check]] = {
    "database": ("A query and the schema's migration state.", _probe("database")),
    "storage": ("An existence check on the blob store.", _probe("storage")),
    "broker": ("PING the Redis broker (not configured: tasks run in process).", _probe("broker")),
    "mlflow": ("The MLflow tracking store answers.", _probe("mlflow")),
    "model": ("Load the shipped real-bogus model and score one triplet.", _model),
    "smoke": (
        "A simulated pair with injected transients through subtraction and detection.",
        _smoke,
    ),
}
"""Every check: name -> (what it does, function)."""


class CheckInfo(BaseModel):
    name: str
    description: str


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    check: Literal["all", "database", "storage", "broker", "mlflow", "model", "smoke"] = Field(
        description="One check's name, or all."
    )


class LogLine(BaseModel):
    time: datetime
    check: str
    level: str = Field(description="info | error")
    message: str


class CheckResult(BaseModel):
    name: str
    ok: bool
    status: str
    ms: float
    details: dict[str, Any] | None = None


class RunOut(BaseModel):
    ok: bool
    started_at: datetime
    results: list[CheckResult]
    log: list[LogLine]


@router.get("/checks", response_model=list[CheckInfo], summary="The diagnostic checks")
def list_checks(_: Viewer) -> list[CheckInfo]:
    """What can be run with ``POST /diagnostics/run``."""
    return [CheckInfo(name=k, description=v[0]) for k, v in DIAGNOSTICS.items()]


def _run(rt: Runtime, names: list[str]) -> RunOut:
    started = datetime.now(UTC)
    lines: list[LogLine] = []
    results = []
    for name in names:

        def log(message: str, level: str = "info", check: str = name) -> None:
            lines.append(LogLine(time=datetime.now(UTC), check=check, level=level, message=message))

        t0 = time.perf_counter()
        try:
            status, details = DIAGNOSTICS[name][1](rt, log)
            ok = not status.startswith("error")
        except Exception as exc:  # a check reports its failure, it never raises
            status, details, ok = f"error: {type(exc).__name__}: {exc}"[:500], None, False
        ms = round(1000 * (time.perf_counter() - t0), 1)
        log(f"{name}: {status} ({ms:.0f} ms)", "info" if ok else "error")
        results.append(CheckResult(name=name, ok=ok, status=status, ms=ms, details=details))
    return RunOut(ok=all(r.ok for r in results), started_at=started, results=results, log=lines)


@router.post("/run", response_model=RunOut, summary="Run one diagnostic check or all")
async def run_checks(rt: Rt, _: AdminWrite, body: RunIn) -> RunOut:
    """Run the check(s) now (the smoke test takes about a second) and answer the results."""
    names: list[str] = list(DIAGNOSTICS) if body.check == "all" else [str(body.check)]
    return await run_in_threadpool(_run, rt, names)
