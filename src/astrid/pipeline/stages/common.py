"""What every pipeline stage shares: its result type, identity hash and status moves.

A stage function ``run(runtime, observation_id, <its inputs>, params) -> StageResult``
(:mod:`.preprocess`, :mod:`.reference`, :mod:`.difference`, :mod:`.detect`) is
idempotent by :func:`identity_hash` (stage, version, parameters, input content keys) and
moves its observation through the status chain below; this module holds those pieces.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from astrid.domain.observations import NotFoundError, ObservationService
from astrid.domain.status import ALLOWED_TRANSITIONS
from astrid.pipeline.params import StageParams
from astrid.pipeline.runner import Stage, StageOutcome, run_stage, stable_hash
from astrid.runtime import Runtime
from astrid.store.tables import Observation, ObservationStatus

__all__ = [
    "STAGE_NAMES",
    "STAGE_VERSIONS",
    "ObservationSnapshot",
    "StageResult",
    "advance_status",
    "begin",
    "finish",
    "from_outcome",
    "identity_hash",
    "inactive",
    "json_safe",
    "park",
    "ready_for",
    "reuse",
    "snapshot",
]

S = ObservationStatus

#: The stages of one observation, in data-flow order.
STAGE_NAMES: tuple[str, ...] = ("preprocess", "reference", "difference", "detect")

#: Bump a stage's version when its output changes: stored products of older versions are
#: then not reused.
STAGE_VERSIONS: dict[str, str] = {
    "preprocess": "2",  # 2: background re-uses the mask step's; noise_from_variance stored
    "reference": "2",  # 2: inverse-variance coadds of several good earlier images, versioned
    "difference": "2",  # 2: noise from the stored variance maps; per-difference limits
    "detect": "2",  # 2: PNGs rendered by astrid.science.cutouts (zscale + asinh, triplet)
}


@dataclass(frozen=True)
class StageResult:
    """What one stage call did for one observation.

    Attributes
    ----------
    stage : str
        Stage name.
    observation_id : int
        The observation.
    status : str
        ``"done"`` (computed now), ``"reused"`` (already stored), ``"skipped"`` (nothing to
        do, e.g. no earlier image to use as reference, or the observation is failed) or
        ``"failed"`` (parked; ``error`` says why).
    value : dict
        Small JSON result (ids of the products, counts).
    duration_s : float
        Wall time of this call, seconds.
    error : str, optional
        Reason of a failure or of a skip.
    """

    stage: str
    observation_id: int
    status: str
    value: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the stage's product exists (done or reused)."""
        return self.status in ("done", "reused")


def identity_hash(
    stage: str, params: StageParams | Mapping[str, Any], inputs: Mapping[str, Any]
) -> str:
    """sha256 of (stage, stage version, parameters, input content hashes).

    Stored as the product row's ``params_hash``: the same inputs and parameters under the
    same stage version always map to the same row.
    """
    values = params.as_dict() if isinstance(params, StageParams) else dict(params)
    return stable_hash(
        {"stage": stage, "version": STAGE_VERSIONS[stage], "params": values, "inputs": dict(inputs)}
    )


def json_safe(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    return value


# --------------------------------------------------------------------------- observation


@dataclass(frozen=True)
class ObservationSnapshot:
    """A detached copy of the observation fields the stages use."""

    id: int
    survey_id: int
    content_hash: str
    blob_key: str
    hdu_index: int
    ra: float
    dec: float
    mjd: float | None
    filter: str | None
    width: int
    height: int
    pixel_scale: float | None
    footprint: list[Any]
    status: ObservationStatus
    status_reason: str | None


def snapshot(runtime: Runtime, observation_id: int) -> ObservationSnapshot:
    """The observation's fields now (:class:`NotFoundError` for an unknown id)."""
    with runtime.require_migrated().session() as session:
        obs = session.get(Observation, observation_id)
        if obs is None:
            raise NotFoundError(f"no observation with id {observation_id}")
        return ObservationSnapshot(
            obs.id,
            obs.survey_id,
            obs.content_hash,
            obs.blob_key,
            obs.hdu_index,
            obs.ra,
            obs.dec,
            obs.mjd,
            obs.filter,
            obs.width,
            obs.height,
            obs.pixel_scale,
            list(obs.footprint or []),
            S(obs.status),
            obs.status_reason,
        )


# --------------------------------------------------------------------------- status moves

_CHAIN = (
    S.INGESTED,
    S.PREPROCESSING,
    S.PREPROCESSED,
    S.DIFFERENCING,
    S.DIFFERENCED,
    S.DETECTING,
    S.COMPLETED,
)


def advance_status(
    session: Session, obs: Observation, target: ObservationStatus, reason: str
) -> None:
    """Walk ``obs`` forward along the status chain until it is ``target``.

    Used when a stage's product already exists (a retried or re-run observation): every
    step is a checked transition with its event. ``completed`` continues at
    ``preprocessing`` (a re-run). Failed and archived observations are not moved.
    """
    for _ in range(2 * len(_CHAIN)):
        current = S(obs.status)
        if current == target or current in (S.FAILED, S.ARCHIVED):
            return
        nxt = S.PREPROCESSING if current == S.COMPLETED else _CHAIN[_CHAIN.index(current) + 1]
        ObservationService.apply_transition(session, obs, nxt, reason)


def _behind(status: ObservationStatus, target: ObservationStatus) -> bool:
    return status in _CHAIN and _CHAIN.index(status) < _CHAIN.index(target)


def inactive(obs: ObservationSnapshot, stage: str, started: float) -> StageResult | None:
    """``skipped`` for a failed or archived observation (with its reason), else None."""
    if obs.status in (S.FAILED, S.ARCHIVED):
        why = f"observation is {obs.status.value}" + (
            f": {obs.status_reason}" if obs.status_reason else ""
        )
        return StageResult(stage, obs.id, "skipped", {}, time.perf_counter() - started, why)
    return None


def reuse(
    runtime: Runtime,
    obs_id: int,
    done: ObservationStatus,
    stage: str,
    value: dict[str, Any],
    started: float,
) -> StageResult:
    """A stored product: bring the observation's status up to ``done`` if it lags."""
    with runtime.db.session() as session:
        obs = session.get(Observation, obs_id, with_for_update=True)
        if obs is not None and _behind(S(obs.status), done):
            advance_status(session, obs, done, f"{stage}: stored result reused")
    return StageResult(stage, obs_id, "reused", value, time.perf_counter() - started)


def ready_for(
    runtime: Runtime, obs_id: int, before: ObservationStatus, running: ObservationStatus
) -> None:
    """Make the stage runner's first move (to ``running``) legal, walking to ``before``."""
    with runtime.db.session() as session:
        obs = session.get(Observation, obs_id, with_for_update=True)
        if obs is None:
            return
        current = S(obs.status)
        if current != running and running not in ALLOWED_TRANSITIONS[current]:
            advance_status(session, obs, before, "resumed")


def from_outcome(stage: str, obs_id: int, outcome: StageOutcome, started: float) -> StageResult:
    """The :class:`StageResult` of a stage-runner outcome."""
    status = ("reused" if outcome.reused else "done") if outcome.ok else "failed"
    return StageResult(
        stage, obs_id, status, dict(outcome.result), time.perf_counter() - started, outcome.error
    )


def begin(
    runtime: Runtime, observation_id: int, stage: str
) -> tuple[float, ObservationSnapshot, StageResult | None]:
    """The opening of a stage call: its start time (``time.perf_counter``), the
    observation's snapshot, and the ``skipped`` result to return at once for a failed or
    archived observation (else None)."""
    started = time.perf_counter()
    obs = snapshot(runtime, observation_id)
    return started, obs, inactive(obs, stage, started)


def finish(
    runtime: Runtime,
    stage: Stage[Any],
    obs_id: int,
    stored: dict[str, Any] | None,
    started: float,
    *,
    resume_from: ObservationStatus,
    params: StageParams,
    inputs: dict[str, Any],
    input_hash: str,
    payload: Any = None,
    rerun_failed: bool = False,
) -> StageResult:
    """The close of a stage call: its stored product's value ``stored`` reused (the status
    brought up to ``stage.done_status``), or else ``stage`` run by the stage runner, its
    first move made legal by walking the observation to ``resume_from``."""
    if stage.done_status is None or stage.running_status is None:
        raise ValueError(f"stage {stage.name} moves no observation status")
    if stored is not None:
        return reuse(runtime, obs_id, stage.done_status, stage.name, stored, started)
    ready_for(runtime, obs_id, resume_from, stage.running_status)
    outcome = run_stage(
        runtime,
        stage,
        params=params.as_dict(),
        inputs=inputs,
        input_hash=input_hash,
        payload=payload,
        observation_id=obs_id,
        rerun_failed=rerun_failed,
    )
    return from_outcome(stage.name, obs_id, outcome, started)


def park(runtime: Runtime, obs_id: int, reason: str) -> None:
    """Move an observation to ``failed`` with ``reason`` (stages without their own status)."""
    with runtime.db.session() as session:
        obs = session.get(Observation, obs_id, with_for_update=True)
        if obs is not None and S(obs.status) not in (S.FAILED, S.ARCHIVED):
            ObservationService.apply_transition(session, obs, S.FAILED, reason)
