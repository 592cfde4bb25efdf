"""The closed loop: curated votes → a versioned dataset → a challenger → promoted if better.

:func:`retrain` does, in one call (``astrid model retrain``, ``POST /models/{name}/retrain``
and the ``retrain`` flow all come here):

1. **Curated set.** Every detection whose votes reached a consensus (or an expert decided)
   as ``real``/``bogus`` and whose stamps are stored; grouped by observation, split into
   train / validation / **held-out curated** parts (no observation straddles two parts).
2. **Versioned dataset.** The curated train+validation part joined with simulated
   candidates (exact labels) and, when alert folders are given, real ZTF alerts (weak
   labels with confidence weights, :mod:`astrid.model.real_alerts`) whose **held-out
   nights** never enter it; stored in the blob store with a manifest whose hash is the
   dataset version (:func:`astrid.model.dataset_store.store_dataset`) and a
   ``training_datasets`` row.
3. **Challenger.** :func:`astrid.model.train.fit` with the champion's network shape and stamp
   convention (warm-started from the champion's weights unless told otherwise), then the
   calibration on the validation part; energy measured (:mod:`astrid.model.energy`).
4. **Evaluation** of the challenger *and* the champion on the same held-out curated set and
   held-out real-alert nights: ROC-AUC on each (a set with one class only is skipped).
5. **Decision.** The criterion is the mean held-out ROC-AUC over the evaluation sets both
   models were scored on: the challenger is promoted (``--promote-if-better``) only if its
   mean exceeds the champion's by more than ``min_gain``. Without a champion the first
   version becomes champion by registration.
6. **Record.** One MLflow run: parameters, the dataset hash and manifest, per-epoch and
   evaluation metrics of both models, energy, the decision (tag ``decision``, metric
   ``promoted``), the model package registered as a new version (alias ``challenger``); a
   ``model_runs`` row (kind ``retrain``) in the database with the same figures.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score
from sqlalchemy import select

from astrid.errors import AstridError
from astrid.model.calibration import fit_calibrator
from astrid.model.dataset_store import record_training_dataset, store_dataset
from astrid.model.drift import reference_sample, stamp_statistics
from astrid.model.energy import EnergyMeter, EnergySettings
from astrid.model.evaluate import store_evaluation
from astrid.model.examples import DatasetError, LabelledStamps, concat_stamps
from astrid.model.real_alerts import build_alert_dataset
from astrid.model.registry import (
    DEFAULT_MODEL_NAME,
    ModelNotRegisteredError,
    experiment_for,
    load_registered,
    promote,
    register_run,
    save_package,
)
from astrid.model.score import served_scores
from astrid.model.simulated import SimulationSpec, build_simulated_dataset
from astrid.model.splits import grouped_split
from astrid.model.stamps import InvalidStampError, make_triplet
from astrid.model.train import TrainConfig, fit, network_logits
from astrid.model.validated import dataset_from_rows, detection_raw_triplet
from astrid.runtime import Runtime
from astrid.store.tables import CurationState, CurationStateName, Detection

__all__ = ["RetrainError", "RetrainOptions", "RetrainReport", "curated_rows", "retrain"]

_DECIDED = (
    CurationStateName.CONSENSUS_REAL.value,
    CurationStateName.CONSENSUS_BOGUS.value,
    CurationStateName.EXPERT_REAL.value,
    CurationStateName.EXPERT_BOGUS.value,
)


class RetrainError(AstridError):
    """The loop cannot run: too few curated detections, bad options, no registry."""


@dataclass
class RetrainOptions:
    """What a retraining does. ``epochs``/``lr``/``batch_size`` drive the fit;
    ``sim_pairs`` simulated fields of ``image_size`` px join the curated set (0: none);
    ``alerts`` folders of ZTF packets join it too, except ``holdout_nights`` (default: every
    night but the one with most alerts); ``curated_holdout`` is the share of curated
    observations kept for evaluation; ``min_gain`` the margin of the promotion criterion."""

    model_name: str = DEFAULT_MODEL_NAME
    epochs: int = 3
    lr: float = 3e-3
    batch_size: int = 32
    seed: int = 0
    sim_pairs: int = 4
    image_size: int = 128
    alerts: list[str] = field(default_factory=list)
    holdout_nights: list[str] | None = None
    curated_holdout: float = 0.3
    min_gain: float = 0.0
    promote_if_better: bool = False
    warm_start: bool = True
    num_threads: int = 2
    experiment: str = "astrid-retrain"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RetrainOptions:
        """Options from a flow's or request's JSON; unknown keys are an error."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(params) - known)
        if unknown:
            raise RetrainError(f"unknown retrain options {unknown}", hint=f"known: {sorted(known)}")
        opts = cls(**params)
        if not 1 <= opts.epochs <= 1000:
            raise RetrainError(f"epochs must be 1 to 1000, not {opts.epochs}")
        if not 0.0 < opts.curated_holdout < 1.0:
            raise RetrainError("curated_holdout must be between 0 and 1")
        return opts


@dataclass
class RetrainReport:
    """What one retraining did and decided."""

    mlflow_run_id: str
    dataset_version: str
    manifest_key: str
    counts: dict[str, Any]
    challenger: dict[str, Any]
    champion: dict[str, Any] | None
    champion_metrics: dict[str, float]
    challenger_metrics: dict[str, float]
    criterion: str
    decision: str
    promoted: bool
    energy: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (for a flow run's result and the API)."""
        return asdict(self)


def _night(mjd: float | None) -> str:
    return "" if mjd is None else str(int(math.floor(float(mjd) - 0.5)))


def curated_rows(runtime: Runtime) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Rows of curated detections (consensus or expert decision, stamps stored), with the
    raw stamps, the label and the group (observation), and counts of what was skipped."""
    rows: list[dict[str, Any]] = []
    skipped = {"no_stamps": 0}
    with runtime.db.session() as s:
        query = (
            select(Detection, CurationState.label)
            .join(CurationState, CurationState.detection_id == Detection.id)
            .where(CurationState.state.in_(_DECIDED), CurationState.label.in_(["real", "bogus"]))
            .order_by(Detection.id)
        )
        for det, label in s.execute(query):
            try:
                new, ref, diff = detection_raw_triplet(det.cutout_keys or {}, runtime.blobs)
            except DatasetError:
                skipped["no_stamps"] += 1
                continue
            group = (
                f"observation-{det.observation_id}"
                if det.observation_id is not None
                else f"detection-{det.id}"
            )
            rows.append(
                {
                    "detection_id": det.id,
                    "new": new,
                    "ref": ref,
                    "diff": diff,
                    "label": label,
                    "group": group,
                    "night": _night(det.mjd),
                    "negative": bool((det.extra or {}).get("negative", False)),
                }
            )
    return rows, skipped


def _curated_sets(
    rows: list[dict[str, Any]], size: int, opts: RetrainOptions
) -> tuple[LabelledStamps, LabelledStamps, LabelledStamps, list[dict[str, Any]]]:
    usable, dropped = [], 0
    for row in rows:
        try:
            make_triplet(row["new"], row["ref"], row["diff"], size=size)
            usable.append(row)
        except InvalidStampError:
            dropped += 1
    if len({r["group"] for r in usable}) < 3:
        raise RetrainError(
            f"{len(usable)} curated detections in {len({r['group'] for r in usable})} "
            "observations: the loop needs curated detections from at least 3 observations",
            hint="curate more detections (votes reaching consensus) first",
        )
    data = dataset_from_rows(usable, stamp_size=size)
    data.nights = [r["night"] or "curated" for r in usable]
    hold = opts.curated_holdout
    parts = grouped_split(data.groups, ((1 - hold) * 0.75, (1 - hold) * 0.25, hold), opts.seed)
    train, val, test = (data.subset(p) for p in parts)
    fit_rows = [usable[i] for p in parts[:2] for i in p]
    return train, val, test, fit_rows


def _alerts(
    opts: RetrainOptions, size: int
) -> tuple[LabelledStamps | None, LabelledStamps | None, list[str]]:
    """(alerts to fit on, held-out alerts, held-out nights)."""
    if not opts.alerts:
        return None, None, []
    real = build_alert_dataset(opts.alerts, stamp_size=size)
    nights = np.asarray(real.nights)
    if opts.holdout_nights is None:
        values, counts = np.unique(nights, return_counts=True)
        held = sorted(set(values) - {values[int(np.argmax(counts))]})
    else:
        held = sorted(str(n) for n in opts.holdout_nights)
    is_test = np.isin(nights, held)
    test_objects = {g for g, t in zip(real.groups, is_test, strict=True) if t}
    fit_idx = np.flatnonzero(~is_test & ~np.isin(real.groups, list(test_objects)))
    test = real.subset(np.flatnonzero(is_test)) if is_test.any() else None
    return (real.subset(fit_idx) if len(fit_idx) else None), test, held


def _simulated(opts: RetrainOptions, size: int) -> LabelledStamps | None:
    if opts.sim_pairs <= 0:
        return None
    spec = SimulationSpec(
        n_pairs=opts.sim_pairs, shape=(opts.image_size, opts.image_size), stamp_size=size
    )
    return build_simulated_dataset(spec, seed=opts.seed, field_offset=300000)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    if len(labels) == 0 or np.unique(labels).size < 2:
        return None
    return float(roc_auc_score(labels, scores))


def _evaluate(
    score: Any, sets: dict[str, LabelledStamps | None]
) -> tuple[dict[str, float], float | None]:
    """ROC-AUC and n on each evaluation set; the criterion (mean AUC) over those with one."""
    out: dict[str, float] = {}
    aucs = []
    for name, data in sets.items():
        if data is None or len(data) == 0:
            continue
        s = score(data.stamps)
        out[f"{name}_n"] = float(len(data))
        auc = _auc(data.labels, s)
        if auc is not None:
            out[f"{name}_roc_auc"] = auc
            aucs.append(auc)
        out[f"{name}_accuracy"] = float(np.mean((s >= 0.5) == (data.labels == 1)))
    return out, (float(np.mean(aucs)) if aucs else None)


def _reference(scores: np.ndarray, rows: list[dict[str, Any]], seed: int) -> dict[str, list[float]]:
    """The challenger's drift reference: its scores on its validation part and the input
    statistics of the raw curated stamps it was fitted on."""
    stats: dict[str, list[float]] = {}
    for row in rows:
        one = stamp_statistics(np.stack([row["new"], row["ref"], row["diff"]])[None])
        for k, v in one.items():
            stats.setdefault(k, []).append(float(v[0]))
    return reference_sample(scores, {k: np.asarray(v) for k, v in stats.items()}, seed)


def retrain(
    runtime: Runtime,
    opts: RetrainOptions,
    *,
    tracking_uri: str,
    energy: EnergySettings | None = None,
    log: Any = None,
) -> RetrainReport:
    """Run the closed loop once (see the module docstring); return what it decided.

    Raises
    ------
    RetrainError
        Too few curated detections, or a training set with one class.
    """
    import mlflow

    say = log or (lambda line: None)
    try:
        champ = load_registered(tracking_uri, "champion", opts.model_name)
    except ModelNotRegisteredError:
        champ = None
    if champ is not None:
        size = int(champ.net.config.stamp_size)
        ucfg = champ.config["unet"]
        net_shape = {"base_channels": int(ucfg["base_channels"]), "depth": int(ucfg["depth"])}
    else:
        size, net_shape = 64, {"base_channels": 6, "depth": 2}
    base_channels, depth = net_shape["base_channels"], net_shape["depth"]
    rows, skipped = curated_rows(runtime)
    say(f"{len(rows)} curated detections with stamps ({skipped['no_stamps']} without)")
    cur_train, cur_val, cur_test, fit_rows = _curated_sets(rows, size, opts)
    sim = _simulated(opts, size)
    real_fit, real_test, held = _alerts(opts, size)
    train_parts, val_parts = [cur_train], [cur_val]
    for part in (sim, real_fit):
        if part is None:
            continue
        if len(set(part.groups)) < 2:  # one field or object: all of it to fitting
            train_parts.append(part)
            continue
        a, b = grouped_split(part.groups, (0.8, 0.2), seed=opts.seed)
        train_parts.append(part.subset(a))
        val_parts.append(part.subset(b))
    train = concat_stamps(train_parts, {"source": "retrain"})
    val = concat_stamps(val_parts, {"source": "retrain"})
    if np.unique(train.labels).size < 2:
        raise RetrainError("the training set holds one class only; curate both reals and bogus")
    dataset = concat_stamps([train, val], {"source": "retrain"})
    dataset_name = f"retrain-{opts.model_name}"
    manifest_key, manifest = store_dataset(dataset, runtime.blobs, dataset_name)
    counts = {
        "curated_train": len(cur_train),
        "curated_val": len(cur_val),
        "curated_holdout": len(cur_test),
        "simulated": 0 if sim is None else len(sim),
        "alerts_fit": 0 if real_fit is None else len(real_fit),
        "alerts_holdout": 0 if real_test is None else len(real_test),
        "holdout_nights": held,
        "by_source": dataset.source_counts(),
        "skipped": skipped,
    }
    say(f"dataset {manifest.version[:12]}: {len(dataset)} examples {counts['by_source']}")

    cfg = TrainConfig(
        seed=opts.seed,
        stamp_size=size,
        epochs=opts.epochs,
        lr=opts.lr,
        batch_size=opts.batch_size,
        num_threads=opts.num_threads,
        model_name=opts.model_name,
        experiment=opts.experiment,
        track_emissions=False,
        base_channels=base_channels,
        depth=depth,
    )
    init = champ.net.state_dict() if (champ is not None and opts.warm_start) else None
    eval_sets = {"curated_holdout": cur_test, "alerts_holdout": real_test}

    exp_id = experiment_for(tracking_uri, opts.experiment, runtime.settings.data_dir / "mlruns")
    work = Path(tempfile.mkdtemp(prefix="astrid-retrain-"))
    with mlflow.start_run(experiment_id=exp_id, run_name="retrain") as run:
        run_id = run.info.run_id
        mlflow.log_params(
            {
                **{k: str(v) for k, v in asdict(opts).items()},
                "dataset_version": manifest.version,
                "dataset_manifest_key": manifest_key,
                "stamp_size": size,
                "champion": champ.version if champ else "none",
                **{f"n_{k}": v for k, v in counts.items() if isinstance(v, int)},
            }
        )
        mlflow.set_tag("dataset_hash", manifest.version)
        mlflow.log_dict(json.loads(manifest.to_bytes()), "datasets/manifest.json")

        def on_epoch(epoch: int, row: dict[str, float]) -> None:
            mlflow.log_metrics(row, step=epoch)
            say(f"epoch {epoch}: {row}")

        with EnergyMeter(energy) as meter:
            fitted = fit(train, val, cfg, on_epoch=on_epoch, init_state=init)
        calibrator = fit_calibrator(
            "temperature" if np.unique(val.labels).size == 2 else "identity",
            network_logits(fitted.net, val.stamps),
            val.labels,
        )
        val_scores = served_scores(fitted.net, calibrator, val.stamps)  # as the drift job sees

        def challenger_score(x: np.ndarray) -> np.ndarray:
            return np.asarray(calibrator(network_logits(fitted.net, x)))

        n_scored = sum(len(d) for d in eval_sets.values() if d is not None)
        with EnergyMeter(energy) as score_meter:
            ch_metrics, ch_crit = _evaluate(challenger_score, eval_sets)
        if champ is not None:
            champ_net, champ_cal = champ.net, champ.calibrator
            cm_metrics, cm_crit = _evaluate(
                lambda x: np.asarray(champ_cal(network_logits(champ_net, x))), eval_sets
            )
        else:
            cm_metrics, cm_crit = {}, None
        energy_figures = {
            "train": meter.result,
            "evaluate_per_1000": {
                k: float(v) * 1000.0 / max(1, n_scored)
                for k, v in score_meter.result.items()
                if k in ("energy_kwh", "emissions_kg_co2eq")
            },
        }
        criterion = (
            f"mean held-out ROC-AUC over {sorted(k for k in eval_sets if eval_sets[k])}: "
            f"challenger {ch_crit} vs champion {cm_crit}; promote if greater by > {opts.min_gain}"
        )
        if champ is None:
            better, decision = True, "first version: champion by registration"
        elif ch_crit is None or cm_crit is None:
            better, decision = False, "no held-out set with both classes: not comparable"
        else:
            better = ch_crit > cm_crit + opts.min_gain
            decision = (
                f"challenger better ({ch_crit:.4f} > {cm_crit:.4f} + {opts.min_gain})"
                if better
                else f"challenger not better ({ch_crit:.4f} <= {cm_crit:.4f} + {opts.min_gain})"
            )
        promoted = bool(better and champ is not None and opts.promote_if_better)
        if better and champ is not None and not opts.promote_if_better:
            decision += "; not promoted (promote_if_better not set)"
        say(decision)
        metrics = {
            **{f"challenger_{k}": v for k, v in ch_metrics.items()},
            **{f"champion_{k}": v for k, v in cm_metrics.items()},
            **({"challenger_criterion": ch_crit} if ch_crit is not None else {}),
            **({"champion_criterion": cm_crit} if cm_crit is not None else {}),
            "best_val_roc_auc": fitted.best_val_auc,
            "train_seconds": fitted.train_seconds,
            "promoted": float(promoted),
            **meter.metrics("train_"),
            **{f"score_{k}": v for k, v in energy_figures["evaluate_per_1000"].items()},
        }
        metrics["train_energy_kwh"] = float(meter.result.get("energy_kwh", 0.0))
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.set_tags(
            {
                "decision": decision,
                "criterion": criterion,
                "energy_method": str(meter.result.get("energy_method", "off")),
            }
        )
        package = work / "model"
        save_package(
            fitted.net,
            calibrator,
            package,
            {
                "semver": None,
                "train_config": cfg.to_dict(),
                "dataset_version": manifest.version,
                "dataset_manifest_key": manifest_key,
                "retrain": {"counts": counts, "decision": decision, "metrics": metrics},
                "drift_reference": _reference(val_scores, fit_rows, opts.seed),
                "mlflow_run_id": run_id,
            },
        )
        mlflow.log_artifacts(str(package), "model")
    registered = register_run(tracking_uri, run_id, opts.model_name, "minor", "challenger")
    if promoted:
        promote(tracking_uri, str(registered["version"]), opts.model_name)
        say(f"promoted {opts.model_name} {registered['semver']} to champion")
    with runtime.db.session() as s:
        row = record_training_dataset(
            s, dataset_name, manifest, manifest_key, description="closed-loop retraining set"
        )
        store_evaluation(
            s,
            model_name=opts.model_name,
            model_version=registered["semver"],
            metrics={**metrics, "decision": decision},
            kind="retrain",
            params={**asdict(opts), "dataset_version": manifest.version, "criterion": criterion},
            mlflow_run_id=run_id,
            config=cfg.to_dict(),
            training_dataset_id=row.id,
        )
    return RetrainReport(
        mlflow_run_id=run_id,
        dataset_version=manifest.version,
        manifest_key=manifest_key,
        counts=counts,
        challenger=registered,
        champion=None if champ is None else {"version": champ.version},
        champion_metrics=cm_metrics,
        challenger_metrics=ch_metrics,
        criterion=criterion,
        decision=decision,
        promoted=promoted,
        energy=energy_figures,
    )
