"""Model operations over HTTP: the closed loop, drift and shadow A/B of a registered model.

* ``POST /models/{name}/retrain`` (admin) queues the ``retrain`` flow
  (:mod:`astrid.domain.retrain`) as a ``run_flow`` task and answers ``202`` with its run id
  at once (status ``queued``): with a broker (``ASTRID_BROKER_URL``) an ``astrid worker``
  host runs it, in process (no broker) the API process runs it after answering;
  ``GET /models/{name}/retrain/{run_id}`` reports ``queued``, ``running``, ``succeeded`` or
  ``failed`` (with the reason), its log and decision.
* ``GET /models/{name}/drift``: the latest per-night drift checks (PSI per quantity).
* ``GET /models/{name}/shadow``: champion/challenger agreement and each one's
  precision/recall against curated labels, on the detections both scored.

This router is mounted before :mod:`astrid.api.routes_models`, whose
``/models/{name}/{version}`` would otherwise take ``drift`` and ``shadow`` for versions.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import dramatiq
from fastapi import APIRouter, BackgroundTasks, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from astrid.api.deps import AdminWrite, Rt, Viewer
from astrid.api.problems import Problem
from astrid.domain.model_drift import drift_history
from astrid.domain.model_scores import shadow_summary
from astrid.flows.schedules import start_flow_run
from astrid.model.registry import list_versions
from astrid.pipeline.queue.actors import FLOW_TASK, FUNCTIONS, enqueue
from astrid.pipeline.queue.broker import is_in_process, make_broker
from astrid.runtime import Runtime
from astrid.store.tables import FlowRun, FlowRunStatus

log = logging.getLogger(__name__)

__all__ = ["router"]

router = APIRouter(prefix="/models", tags=["models"])

Name = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$", description="Model.")
]


class RetrainRequest(BaseModel):
    """Options of one retraining (see ``astrid model retrain``)."""

    model_config = ConfigDict(extra="forbid")

    promote_if_better: bool = False
    epochs: int = Field(default=3, ge=1, le=1000)
    lr: float = Field(default=3e-3, gt=0, le=1)
    sim_pairs: int = Field(default=4, ge=0, le=1000)
    alerts: list[str] = Field(default_factory=list, max_length=16)
    holdout_nights: list[str] | None = Field(default=None, max_length=1000)
    min_gain: float = Field(default=0.0, ge=0, le=1)
    warm_start: bool = True


class FlowRunOut(BaseModel):
    """A background run: ``queued``, ``running``, ``succeeded`` or ``failed`` (``error``:
    the reason), with its log and result."""

    run_id: int
    flow: str
    status: str
    error: str | None = None
    result: dict[str, Any] = {}
    log: str = ""
    started_at: str | None = None
    finished_at: str | None = None


def _registered(rt: Runtime, name: str) -> list[dict[str, Any]]:
    rows = list_versions(rt.settings.resolved_mlflow_uri, name)
    if not rows:
        raise Problem(404, f"no registered model named {name!r}", kind="not-found")
    return rows


def _broker(request: Request, rt: Runtime) -> dramatiq.Broker:
    """The app's broker (made once from ``rt``'s settings; shared with the workers routes)."""
    broker = getattr(request.app.state, "ops_broker", None)
    if broker is None:
        broker = request.app.state.ops_broker = make_broker(rt.settings.broker_url)
    return broker


def _fail_run(rt: Runtime, run_id: int, reason: str) -> None:
    with rt.db.session() as s:
        row = s.get_one(FlowRun, run_id)
        row.status, row.error = FlowRunStatus.FAILED.value, reason


def _out(row: FlowRun) -> FlowRunOut:
    return FlowRunOut(
        run_id=row.id,
        flow=row.flow,
        status=row.status,
        error=row.error,
        result=dict(row.result or {}),
        log=row.log or "",
        started_at=row.started_at.isoformat() if row.started_at else None,
        finished_at=row.finished_at.isoformat() if row.finished_at else None,
    )


@router.post(
    "/{name}/retrain",
    response_model=FlowRunOut,
    status_code=202,
    summary="Retrain from curated votes (background)",
)
def start_retrain(
    request: Request,
    rt: Rt,
    _: AdminWrite,
    name: Name,
    body: RetrainRequest,
    tasks: BackgroundTasks,
) -> FlowRunOut:
    """Queue the closed loop for ``name``: curated votes → dataset → challenger, promoted
    only if better (``promote_if_better``). Answers at once with the run to poll; a worker
    runs it (in process, without a broker: this process, after answering)."""
    _registered(rt, name)
    params = {**body.model_dump(), "model_name": name}
    broker = _broker(request, rt)
    run_id = start_flow_run(rt, "retrain", params, queued=True)
    if is_in_process(broker):
        tasks.add_task(FUNCTIONS[FLOW_TASK], run_id=run_id, runtime=rt)
    else:
        try:
            enqueue(broker, FLOW_TASK, run_id=run_id)
        except Exception as exc:  # redis/pika connection errors of many types
            log.warning("cannot queue retraining %d: %s: %s", run_id, type(exc).__name__, exc)
            _fail_run(rt, run_id, f"the broker is unreachable: {type(exc).__name__}")
            raise Problem(
                503,
                "the task broker is unreachable; the retraining was not queued, retry later",
                kind="broker-unavailable",
                headers={"Retry-After": "30"},
            ) from exc
    return FlowRunOut(run_id=run_id, flow="retrain", status=FlowRunStatus.QUEUED.value)


@router.get("/{name}/retrain/{run_id}", response_model=FlowRunOut, summary="Status of a retraining")
def retrain_status(rt: Rt, _: Viewer, name: Name, run_id: int) -> FlowRunOut:
    """Status, log and (when finished) the decision of a retraining started for ``name``."""
    with rt.db.session() as s:
        row = s.get(FlowRun, run_id)
        if row is None or row.flow != "retrain" or (row.params or {}).get("model_name") != name:
            raise Problem(404, f"no retraining {run_id} of model {name!r}", kind="not-found")
        return _out(row)


@router.get("/{name}/drift", summary="Per-night drift of scores and inputs")
def get_model_drift(
    rt: Rt,
    _: Viewer,
    name: Name,
    limit: Annotated[int, Query(ge=1, le=365)] = 30,
) -> dict[str, Any]:
    """The latest drift checks (newest first): PSI per quantity, the threshold, whether the
    night drifted; ``drifting`` is true when the latest check did."""
    _registered(rt, name)
    rows = drift_history(rt, name, limit)
    return {
        "model": name,
        "threshold": rt.settings.model_drift_threshold,
        "drifting": bool(rows and rows[0]["drifted"]),
        "checks": rows,
    }


@router.get("/{name}/shadow", summary="Champion vs challenger on the same detections")
def get_model_shadow(
    rt: Rt,
    _: Viewer,
    name: Name,
    champion: Annotated[str | None, Query(max_length=64, pattern=r"^[0-9.]+$")] = None,
    challenger: Annotated[str | None, Query(max_length=64, pattern=r"^[0-9.]+$")] = None,
    threshold: Annotated[float, Query(ge=0, le=1)] = 0.5,
) -> dict[str, Any]:
    """Agreement and precision/recall against curated labels of two versions (semantic
    versions; default: the current champion and challenger)."""
    rows = _registered(rt, name)
    by_alias = {a: r["semver"] for r in rows for a in r["aliases"]}
    a = champion or by_alias.get("champion")
    b = challenger or by_alias.get("challenger")
    if not a or not b:
        raise Problem(
            409,
            f"model {name!r} needs a champion and a challenger to compare",
            kind="conflict",
        )
    return shadow_summary(rt, name, a, b, threshold)
