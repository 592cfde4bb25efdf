"""The model registry over HTTP: list versions with their metrics, promote, roll back; predict.

Reads and writes the MLflow registry at the runtime's ``settings.resolved_mlflow_uri``
through :mod:`astrid.model.registry`. Promotion and rollback need the ``expert`` role.
``POST /models/{name}/predict`` scores raw triplets (JSON, ``.npy`` or FITS; size-limited by
``ASTRID_API_PREDICT_MAX_MB`` and ``ASTRID_API_PREDICT_MAX_TRIPLETS``) for any viewer.
"""

from __future__ import annotations

import io
import json
from typing import Annotated, Any

import numpy as np
from astropy.io import fits
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from astrid.api.deps import ExpertWrite, Rt, Viewer
from astrid.api.problems import Problem
from astrid.api.schemas import ModelOut, ModelVersionOut, PromoteRequest
from astrid.model.registry import (
    CorruptModelError,
    IncompatibleModelError,
    ModelNotRegisteredError,
    RegistryError,
    list_versions,
    promote,
    rollback,
)
from astrid.model.score import Scorer, load_scorer
from astrid.model.stamps import InvalidStampError, fit_stamp, make_triplet
from astrid.runtime import Runtime

__all__ = ["router"]

router = APIRouter(prefix="/models", tags=["models"])

Name = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$", description="Model.")
]
Version = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Registry number, semantic version or alias.",
    ),
]


# mlflow is an optional dependency (the ``ml`` extra) and slow to import: it is imported
# inside the functions that need it.


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _uri(rt: Runtime) -> str:
    return rt.settings.resolved_mlflow_uri


def _with_metrics(uri: str, name: str, rows: list[dict[str, Any]]) -> list[ModelVersionOut]:
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    out = []
    for row in rows:
        metrics: dict[str, float] = {}
        if row.get("run_id"):
            try:
                metrics = {
                    k: float(v) for k, v in client.get_run(row["run_id"]).data.metrics.items()
                }
            except MlflowException:
                metrics = {}
        out.append(ModelVersionOut(name=name, metrics=metrics, **row))
    return out


def _model(uri: str, name: str) -> ModelOut:
    rows = list_versions(uri, name)
    if not rows:
        raise Problem(404, f"no registered model named {name!r}", kind="not-found")
    aliases = {a: r["version"] for r in rows for a in r["aliases"]}
    return ModelOut(name=name, aliases=aliases, versions=_with_metrics(uri, name, rows))


def _registry_problem(exc: RegistryError) -> Problem:
    if isinstance(exc, ModelNotRegisteredError):
        return Problem(404, str(exc), kind="not-found")
    return Problem(409, str(exc), kind="conflict")


@router.get("", response_model=list[ModelOut], summary="Registered models and their versions")
def list_models(rt: Rt, _: Viewer) -> list[ModelOut]:
    """Every registered model with its versions, aliases and training-run metrics."""
    from mlflow.exceptions import MlflowException

    uri = _uri(rt)
    try:
        names = sorted(rm.name for rm in _client(uri).search_registered_models())
    except MlflowException as exc:
        raise Problem(503, f"the model registry cannot be read: {exc}", kind="unavailable") from exc
    return [_model(uri, name) for name in names]


@router.get(
    "/{name}/{version}", response_model=ModelVersionOut, summary="One version and its metrics"
)
def get_model_version(rt: Rt, _: Viewer, name: Name, version: Version) -> ModelVersionOut:
    """``version`` is a registry number (``3``), a semantic version (``1.1.0``) or an alias."""
    model = _model(_uri(rt), name)
    for row in model.versions:
        if (
            str(row.version) == version
            or row.semver == version.lstrip("v")
            or version in row.aliases
        ):
            return row
    raise Problem(404, f"model {name!r} has no version or alias {version!r}", kind="not-found")


@router.post(
    "/{name}/promote", response_model=ModelVersionOut, summary="Point an alias at a version"
)
def promote_model(rt: Rt, _: ExpertWrite, name: Name, body: PromoteRequest) -> ModelVersionOut:
    """Point ``alias`` (default ``champion``) at ``version``; the old champion is remembered."""
    uri = _uri(rt)
    try:
        row = promote(uri, body.version, name, body.alias)
    except RegistryError as exc:
        raise _registry_problem(exc) from exc
    return _with_metrics(uri, name, [row])[0]


@router.post("/{name}/rollback", response_model=ModelVersionOut, summary="Previous champion back")
def rollback_model(rt: Rt, _: ExpertWrite, name: Name) -> ModelVersionOut:
    """Point ``champion`` back at the version it had before the last promotion (409 if none)."""
    uri = _uri(rt)
    try:
        row = rollback(uri, name)
    except RegistryError as exc:
        raise _registry_problem(exc) from exc
    return _with_metrics(uri, name, [row])[0]


# --------------------------------------------------------------------------- predict


class PredictOut(BaseModel):
    """Scores of one predict request, in the order of the triplets sent."""

    model_version: str
    scores: list[float]
    uncertainty: list[float] | None = None


_DEFAULT_SCORER: dict[str, Scorer] = {}


def _scorer(rt: Runtime, name: str, alias: str) -> Scorer:
    """The shipped default (``name`` = ``default``) or a registered version by alias."""
    try:
        if name == "default":
            if "default" not in _DEFAULT_SCORER:
                _DEFAULT_SCORER["default"] = load_scorer("default")
            return _DEFAULT_SCORER["default"]
        return load_scorer(alias=alias, tracking_uri=_uri(rt), name=name)
    except ModelNotRegisteredError as exc:
        raise Problem(404, str(exc), kind="not-found") from exc
    except (CorruptModelError, IncompatibleModelError) as exc:
        raise Problem(
            409, f"model {name!r} ({alias}) cannot be used: {exc}", kind="bad-model"
        ) from exc
    except RegistryError as exc:
        raise Problem(404, str(exc), kind="not-found") from exc


def _triplets(body: bytes, content_type: str) -> np.ndarray:
    """Decode the request body into raw triplets ``(N, 3, H, W)`` (float64)."""
    try:
        if content_type.startswith("application/json"):
            payload = json.loads(body)
            data = payload.get("triplets") if isinstance(payload, dict) else None
            if data is None:
                raise ValueError('the JSON body needs a "triplets" array')
            arr = np.asarray(data, dtype=np.float64)
        elif body[:6] == b"\x93NUMPY":
            arr = np.asarray(np.load(io.BytesIO(body), allow_pickle=False), dtype=np.float64)
        elif body[:6] == b"SIMPLE":
            with fits.open(io.BytesIO(body)) as hdul:
                arr = np.asarray(hdul[0].data, dtype=np.float64)
        else:
            raise ValueError("send JSON, a .npy array or a FITS cube")
    except (ValueError, TypeError, OSError) as exc:
        raise Problem(
            422,
            f"unreadable triplets: {exc}",
            kind="invalid-input",
            errors=[{"field": "body", "message": str(exc)}],
        ) from exc
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1] != 3 or not (8 <= arr.shape[2] == arr.shape[3] <= 128):
        raise Problem(
            422,
            f"triplets have shape {arr.shape}; expected (N, 3, S, S) or (3, S, S), 8 <= S <= 128 "
            "(new, reference, difference; candidate at the centre)",
            kind="invalid-shape",
            errors=[{"field": "body", "message": f"shape {arr.shape}"}],
        )
    return arr


@router.post("/{name}/predict", response_model=PredictOut, summary="Score triplets with a model")
async def predict(
    request: Request,
    rt: Rt,
    _: Viewer,
    name: Name,
    alias: Annotated[str, Query(max_length=64, pattern=r"^[A-Za-z0-9._-]+$")] = "champion",
    negative: Annotated[
        bool, Query(description="Candidates are negative in the difference.")
    ] = False,
    uncertainty: Annotated[bool, Query(description="Also the score's spread (8 passes).")] = False,
) -> PredictOut:
    """Score raw triplets: JSON ``{"triplets": [...]}``, a ``.npy`` array or a FITS cube.

    ``name`` is ``default`` (the model shipped with AstrID) or a registered model, of which
    ``alias`` (``champion`` by default) is used. Each triplet is three raw stamps (new,
    reference, difference) centred on the candidate; they are normalised here exactly as
    for training (:func:`astrid.model.stamps.make_triplet`). Nothing is stored.
    """
    limit = int(rt.settings.api_predict_max_mb * 1024 * 1024)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"body of {declared} bytes is over the {limit}-byte limit")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem(413, f"body is over the {limit}-byte limit")
    raw = _triplets(body, request.headers.get("content-type", ""))
    most = rt.settings.api_predict_max_triplets
    if len(raw) > most:
        raise Problem(413, f"{len(raw)} triplets; at most {most} per request")
    stamps = []
    for i, trip in enumerate(raw):
        try:
            stamps.append(make_triplet(trip[0], trip[1], trip[2], size=64, negative=negative))
        except InvalidStampError as exc:
            raise Problem(
                422,
                f"triplet {i}: {exc}",
                kind="invalid-stamp",
                errors=[{"field": f"body.triplets[{i}]", "message": str(exc)}],
            ) from exc
    scorer = await run_in_threadpool(_scorer, rt, name, alias)
    if scorer.size != 64:
        stamps = [fit_stamp(s, scorer.size) for s in stamps]
    batch = np.stack(stamps)
    if uncertainty:
        scores, spread = await run_in_threadpool(scorer.score_with_uncertainty, batch)
    else:
        scores, spread = await run_in_threadpool(scorer.score, batch), None
    return PredictOut(
        model_version=scorer.model_version,
        scores=[float(s) for s in scores],
        uncertainty=None if spread is None else [float(u) for u in spread],
    )
