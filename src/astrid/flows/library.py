"""The flows AstrID runs on a schedule: thin wrappers over the pipeline and the store.

A flow is ``flow(runtime, params, log) -> result``: ``params`` is the schedule's JSON,
``log`` appends a line to the run's log, and the small JSON ``result`` is stored with the run.
Flows reuse the stages and tasks (which are idempotent), so a retried flow redoes nothing
that already succeeded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from astrid.errors import AstridError
from astrid.flows.backup import backup
from astrid.runtime import Runtime

if TYPE_CHECKING:
    from astrid.pipeline.archives import PositionRequest

__all__ = ["FLOWS", "FlowParamsError", "FlowSpec", "FlowStepError", "Log"]

Log = Callable[[str], None]
FlowFn = Callable[[Runtime, dict[str, Any], Log], dict[str, Any]]


class FlowParamsError(AstridError):
    """A flow's parameters are missing or wrong (a permanent failure: not retried)."""


class FlowStepError(AstridError):
    """A step of a flow failed; ``transient`` failures are retried with backoff."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class FlowSpec:
    """A flow: its function and what it does, for ``astrid schedule flows``."""

    name: str
    run: FlowFn
    description: str


# The pipeline is imported inside the flows that run it: `astrid schedule list` and the
# other schedule commands start without loading every stage and its science (seconds).


def _process(runtime: Runtime, params: dict[str, Any], log: Log) -> dict[str, Any]:
    from astrid.pipeline.orchestrate import process_pending

    limit = params.get("limit")
    summary = process_pending(runtime, limit=int(limit) if limit else None)
    counts = summary.by_status()
    log(f"processed {len(summary.reports)} observations: {counts}")
    return {"observations": len(summary.reports), "by_status": counts}


def _field(item: Any) -> PositionRequest:
    from astrid.pipeline.archives import PositionRequest

    if not isinstance(item, dict):
        raise FlowParamsError(f"each field must be an object, got {item!r}")
    try:
        return PositionRequest(
            archive=str(item.get("archive", "skyview")),
            survey=str(item["survey"]),
            ra=float(item["ra"]),
            dec=float(item["dec"]),
            fov=float(item.get("fov", 0.1)),
            pixels=int(item.get("pixels", 512)),
        )
    except KeyError as exc:
        raise FlowParamsError(f"a field needs {exc.args[0]!r} (survey, ra, dec)") from exc
    except (TypeError, ValueError) as exc:
        raise FlowParamsError(f"bad field {item!r}: {exc}") from exc


def _watch_fields(runtime: Runtime, params: dict[str, Any], log: Log) -> dict[str, Any]:
    fields = params.get("fields")
    if not isinstance(fields, list) or not fields:
        raise FlowParamsError("watch-fields needs params.fields: a list of {survey, ra, dec}")
    from astrid.pipeline.archives import ingest_position

    requests = [_field(item) for item in fields]  # all validated before any work
    images = 0
    for request in requests:
        outcome = ingest_position(runtime, request, base_url=params.get("base_url"))
        if not outcome.fetch.ok:
            # The whole flow is retried when the archive was unreachable (ingest is idempotent).
            raise FlowStepError(
                f"{request.archive} fetch of {request.survey} at ({request.ra}, {request.dec}) "
                f"failed: {outcome.fetch.error}",
                transient=outcome.fetch.error_kind == "transient",
            )
        new = len(outcome.manifest)
        images += new
        log(f"{request.survey} at ({request.ra:.4f}, {request.dec:.4f}): {new} images")
    result = {"fields": len(requests), "images": images}
    if params.get("process", True):
        result.update(_process(runtime, {}, log))
    return result


def _backup(runtime: Runtime, params: dict[str, Any], log: Log) -> dict[str, Any]:
    folder = params.get("folder")
    if not folder:
        raise FlowParamsError("backup needs params.folder (where dated backups are written)")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = Path(folder) / f"astrid-backup-{stamp}"
    report = backup(runtime, target, blobs_to=params.get("blobs_to"))
    log(f"backup {target}: {sum(report.rows.values())} rows, {report.blobs} blobs")
    return {"path": str(target), "rows": sum(report.rows.values()), "blobs": report.blobs}


def _params(params: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise FlowParamsError(f"unknown parameters {unknown}; allowed: {sorted(allowed)}")
    return params


def _retrain(runtime: Runtime, params: dict[str, Any], log: Log) -> dict[str, Any]:
    from astrid.domain.model_scores import energy_settings, rescore_recent
    from astrid.domain.retrain import RetrainError, RetrainOptions, retrain

    opts_params = {k: v for k, v in params.items() if k != "rescore_days"}
    try:
        opts = RetrainOptions.from_params(opts_params)
    except (RetrainError, TypeError) as exc:
        raise FlowParamsError(f"retrain parameters: {exc}") from exc
    energy = energy_settings(runtime)
    try:
        report = retrain(
            runtime,
            opts,
            tracking_uri=runtime.settings.resolved_mlflow_uri,
            energy=energy,
            log=log,
        )
    except RetrainError as exc:
        raise FlowParamsError(str(exc)) from exc
    result = report.as_dict()
    if report.promoted:
        days = float(params.get("rescore_days", 7.0))
        rescored = rescore_recent(runtime, name=opts.model_name, days=days, energy=energy)
        log(f"re-scored {len(rescored.scored)} recent detections with the new champion")
        result["rescored"] = rescored.as_dict()
    return result


def _rescore(runtime: Runtime, params: dict[str, Any], log: Log) -> dict[str, Any]:
    from astrid.domain.model_scores import energy_settings, rescore_recent
    from astrid.model.registry import DEFAULT_MODEL_NAME

    p = _params(params, {"model_name", "days", "limit"})
    report = rescore_recent(
        runtime,
        name=str(p.get("model_name", DEFAULT_MODEL_NAME)),
        days=float(p.get("days", 7.0)),
        limit=int(p["limit"]) if p.get("limit") else None,
        energy=energy_settings(runtime),
    )
    log(
        f"{report.model_version}: re-scored {len(report.scored)} detections, "
        f"{len(report.skipped)} skipped"
    )
    return report.as_dict()


def _shadow(runtime: Runtime, params: dict[str, Any], log: Log) -> dict[str, Any]:
    from astrid.domain.model_scores import energy_settings, shadow_recent
    from astrid.model.registry import DEFAULT_MODEL_NAME

    p = _params(params, {"model_name", "fraction", "days", "limit"})
    try:
        result = shadow_recent(
            runtime,
            name=str(p.get("model_name", DEFAULT_MODEL_NAME)),
            fraction=None if p.get("fraction") is None else float(p["fraction"]),
            days=float(p.get("days", 7.0)),
            limit=int(p["limit"]) if p.get("limit") else None,
            energy=energy_settings(runtime),
        )
    except ValueError as exc:
        raise FlowParamsError(str(exc)) from exc
    log(f"shadowed {result['chosen']} detections (fraction {result['fraction']})")
    return result


def _drift(runtime: Runtime, params: dict[str, Any], log: Log) -> dict[str, Any]:
    from astrid.domain.model_drift import check_drift
    from astrid.model.registry import DEFAULT_MODEL_NAME

    p = _params(params, {"model_name", "nights", "last_nights", "threshold"})
    rows = check_drift(
        runtime,
        name=str(p.get("model_name", DEFAULT_MODEL_NAME)),
        nights=[str(n) for n in p["nights"]] if p.get("nights") else None,
        last_nights=int(p.get("last_nights", 1)),
        threshold=None if p.get("threshold") is None else float(p["threshold"]),
        log=log,
    )
    return {"nights": len(rows), "drifted": [r["night"] for r in rows if r["drifted"]]}


def _catalog_release(runtime: Runtime, params: dict[str, Any], log: Log) -> dict[str, Any]:
    from astrid.catalog.releases import EmptyCatalogError, ReleaseError, create_release

    p = _params(params, {"note", "version"})
    try:
        release = create_release(runtime, version=p.get("version"), note=p.get("note"))
    except EmptyCatalogError as exc:
        # Nothing confirmed yet: not a failure of the flow, and nothing is stored.
        log(f"no release: {exc}")
        return {"released": False, "reason": str(exc)}
    except ReleaseError as exc:  # a malformed or taken version: the schedule's parameters
        raise FlowParamsError(str(exc)) from exc
    log(f"release {release.version}: {release.n_entries} entries, sha256:{release.checksum}")
    return {
        "released": True,
        "version": release.version,
        "n_entries": release.n_entries,
        "checksum": f"sha256:{release.checksum}",
    }


def _sky_hips(runtime: Runtime, params: dict[str, Any], log: Log) -> dict[str, Any]:
    from astrid.pipeline.hips import NoReferencesError, build_reference_hips

    p = _params(params, {"force"})
    try:
        built = build_reference_hips(runtime, force=bool(p.get("force", False)))
    except NoReferencesError as exc:  # nothing to draw yet: not a failure of the flow
        log(f"no HiPS: {exc}")
        return {"rebuilt": False, "reason": str(exc)}
    what = "rebuilt" if built.rebuilt else "up to date"
    log(f"sky HiPS {what}: {built.n_references} references, order {built.order}")
    return {"rebuilt": built.rebuilt, "n_references": built.n_references, "n_tiles": built.n_tiles}


FLOWS: dict[str, FlowSpec] = {
    spec.name: spec
    for spec in (
        FlowSpec(
            "watch-fields",
            _watch_fields,
            "ingest new archive images of a list of fields, then process them",
        ),
        FlowSpec("process-pending", _process, "run the pipeline on everything with work left"),
        FlowSpec("backup", _backup, "write a dated backup (database, blobs, MLflow) to a folder"),
        FlowSpec(
            "retrain",
            _retrain,
            "closed loop: curated votes -> dataset -> challenger; promoted only if better",
        ),
        FlowSpec("rescore", _rescore, "re-score recent detections the champion has not scored"),
        FlowSpec("shadow", _shadow, "champion and challenger score a share of recent detections"),
        FlowSpec("drift", _drift, "per-night PSI of scores and inputs; model.drift event if above"),
        FlowSpec(
            "catalog-release",
            _catalog_release,
            "an immutable, checksummed catalog release (skipped while nothing is confirmed)",
        ),
        FlowSpec(
            "sky-hips",
            _sky_hips,
            "rebuild the sky map's HiPS when the active references changed (else nothing)",
        ),
    )
}
