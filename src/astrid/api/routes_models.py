"""The model registry over HTTP: list versions with their metrics, promote, roll back.

Reads and writes the MLflow registry at the runtime's ``settings.resolved_mlflow_uri``
through :mod:`astrid.model.registry`. Promotion and rollback need the ``expert`` role.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from astrid.api.auth import Principal, require
from astrid.api.deps import Rt
from astrid.api.problems import Problem
from astrid.api.schemas import ModelOut, ModelVersionOut, PromoteRequest
from astrid.model.registry import (
    ModelNotRegisteredError,
    RegistryError,
    list_versions,
    promote,
    rollback,
)
from astrid.runtime import Runtime

__all__ = ["router"]

router = APIRouter(prefix="/models", tags=["models"])

Viewer = Annotated[Principal, Depends(require("viewer"))]
ExpertWrite = Annotated[Principal, Depends(require("expert", write=True))]
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
