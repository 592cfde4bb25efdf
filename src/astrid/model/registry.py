"""Model packages on disk and the MLflow model registry (semantic versions, aliases).

A *model package* is a folder with two files, readable without MLflow:

- ``model.pt``: the U-Net's ``state_dict`` (``torch.save``; loaded with ``weights_only``);
- ``config.json``: ``format`` (:data:`PACKAGE_FORMAT`), the U-Net configuration, the stamp
  convention (size, channels, normalisation), the calibration, the semantic version and how
  the model was trained (config, seed, dataset versions, metrics).

In MLflow, a training run logs the package as the artifact folder ``model``; registering
creates a model version whose tag ``semver`` holds the semantic version, and the aliases
``champion`` (used for scoring) and ``challenger`` point at versions. Promoting records the
previous champion in the registered model's tag ``champion_history`` so that
:func:`rollback` can restore it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astrid.errors import AstridError
from astrid.model.calibration import Calibrator, calibrator_from_dict
from astrid.model.unet import UNet, UNetConfig

__all__ = [
    "DEFAULT_MODEL_NAME",
    "PACKAGE_FORMAT",
    "CorruptModelError",
    "IncompatibleModelError",
    "LoadedModel",
    "ModelNotRegisteredError",
    "RegistryError",
    "RegistryUnavailableError",
    "experiment_for",
    "list_versions",
    "load_package",
    "load_registered",
    "promote",
    "register_run",
    "rollback",
    "save_package",
]

PACKAGE_FORMAT = "astrid-unet-realbogus/1"
DEFAULT_MODEL_NAME = "astrid-realbogus"
NORMALISATION = "per-stamp median/1.4826*MAD, 3*asinh(z/3), NaN->0; diff signed positive"


class RegistryError(AstridError):
    """Base of model-package and registry errors."""


class CorruptModelError(RegistryError):
    """A model file that cannot be read (truncated, not a torch file, bad JSON)."""


class IncompatibleModelError(RegistryError):
    """A readable model made for another format or architecture than this AstrID's."""


class RegistryUnavailableError(RegistryError):
    """The MLflow tracking server cannot be reached (a dependency down, not a missing model:
    ``transient``, so a flow retries it)."""

    transient = True


def _raise_if_unreachable(exc: BaseException, tracking_uri: str) -> None:
    """Raise :class:`RegistryUnavailableError` when ``exc`` (an ``MlflowException``) is a
    failed connection to the tracking server rather than an answer such as "not found"."""
    import requests

    network = (ConnectionError, TimeoutError, requests.ConnectionError, requests.Timeout)
    seen: BaseException | None = exc
    while seen is not None:
        # MLflow wraps the connection error in its own exception, sometimes only by message
        # ("API request to ... failed with exception ...: Max retries exceeded")
        if isinstance(seen, network) or "Max retries exceeded" in str(seen):
            raise RegistryUnavailableError(
                f"the MLflow registry at {tracking_uri} is unreachable: "
                f"{type(seen).__name__}: {str(seen).splitlines()[0][:200]}",
                hint="check ASTRID_MLFLOW_TRACKING_URI and that the tracking server is up",
            ) from exc
        seen = seen.__cause__ or seen.__context__


class ModelNotRegisteredError(RegistryError):
    """No registered model (or no version under the requested alias) to load."""


@dataclass
class LoadedModel:
    """A ready-to-score model with its calibration and provenance."""

    net: UNet
    calibrator: Calibrator
    config: dict[str, Any]

    @property
    def version(self) -> str:
        """Semantic version, prefixed by the registered name when known."""
        return str(self.config.get("model_version") or self.config.get("semver", "unknown"))


def save_package(
    net: UNet, calibrator: Calibrator, folder: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``model.pt`` and ``config.json`` into ``folder`` (created) and return it."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "model.pt")
    config = {
        "format": PACKAGE_FORMAT,
        "unet": net.config.to_dict(),
        "stamp": {
            "size": net.config.stamp_size,
            "channels": ["new", "reference", "difference"],
            "centre": "pixel (size//2, size//2)",
            "normalisation": NORMALISATION,
        },
        "calibration": calibrator.to_dict(),
        **(extra or {}),
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2, default=str))
    return folder


def load_package(folder: str | Path) -> LoadedModel:
    """Load a package written by :func:`save_package`.

    Raises
    ------
    CorruptModelError
        If a file is missing or unreadable.
    IncompatibleModelError
        If the package format or the weights do not match this AstrID's U-Net.
    """
    import torch

    folder = Path(folder)
    cfg_path, pt_path = folder / "config.json", folder / "model.pt"
    if not cfg_path.is_file() or not pt_path.is_file():
        raise CorruptModelError(
            f"{folder}: model package needs config.json and model.pt",
            hint="point at a folder written by `astrid train`",
        )
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptModelError(f"{cfg_path}: not valid JSON ({exc})") from exc
    if config.get("format") != PACKAGE_FORMAT:
        raise IncompatibleModelError(
            f"{folder}: model format {config.get('format')!r}, this AstrID reads "
            f"{PACKAGE_FORMAT!r}",
            hint="retrain with `astrid train` or use a matching AstrID version",
        )
    try:
        unet_cfg = UNetConfig.from_dict(config["unet"])
        calibrator = calibrator_from_dict(config.get("calibration", {"kind": "identity"}))
    except (KeyError, ValueError, TypeError, AstridError) as exc:
        raise IncompatibleModelError(f"{folder}: unusable model configuration ({exc})") from exc
    try:
        state = torch.load(pt_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise CorruptModelError(
            f"{pt_path}: cannot read the weights ({type(exc).__name__}: {exc})",
            hint="the file is damaged; re-download or retrain",
        ) from exc
    net = UNet(unet_cfg)
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise IncompatibleModelError(
            f"{pt_path}: weights do not fit the configured U-Net ({str(exc).splitlines()[0]})"
        ) from exc
    net.eval()
    return LoadedModel(net, calibrator, config)


# --------------------------------------------------------------------------- MLflow registry


def _client(tracking_uri: str) -> Any:
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def experiment_for(tracking_uri: str, name: str, artifact_dir: str | Path) -> str:
    """The id of MLflow experiment ``name`` at ``tracking_uri`` (created with its artifacts
    under ``artifact_dir`` if missing). Points MLflow's tracking and registry at the URI
    but sets no active experiment (no global state beyond the URI)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    return str(
        mlflow.create_experiment(name, artifact_location=Path(artifact_dir).resolve().as_uri())
    )


def _semver_key(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split("."))
    except ValueError:
        return (0, 0, 0)


def _bump(latest: str | None, part: str) -> str:
    if latest is None:
        return "1.0.0"
    major, minor, patch = _semver_key(latest)[:3]
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    if part == "patch":
        return f"{major}.{minor}.{patch + 1}"
    raise RegistryError(f"unknown version part {part!r}", hint="use major, minor or patch")


def list_versions(tracking_uri: str, name: str = DEFAULT_MODEL_NAME) -> list[dict[str, Any]]:
    """Return every registered version: ``version``, ``semver``, ``aliases``, ``run_id``,
    ``source``, ``created`` (ms), sorted by registry version."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        versions = client.search_model_versions(f"name='{name}'")
        rm = client.get_registered_model(name)
    except MlflowException as exc:
        _raise_if_unreachable(exc, tracking_uri)
        return []
    aliases: dict[str, list[str]] = {}
    for alias, ver in (rm.aliases or {}).items():
        aliases.setdefault(str(ver), []).append(alias)
    rows = [
        {
            "version": int(mv.version),
            "semver": (mv.tags or {}).get("semver", ""),
            "aliases": sorted(aliases.get(str(mv.version), [])),
            "run_id": mv.run_id,
            "source": mv.source,
            "created": mv.creation_timestamp,
        }
        for mv in versions
    ]
    return sorted(rows, key=lambda r: r["version"])


def register_run(
    tracking_uri: str,
    run_id: str,
    name: str = DEFAULT_MODEL_NAME,
    bump: str = "minor",
    alias: str | None = "challenger",
) -> dict[str, Any]:
    """Register the ``model`` artifact folder of ``run_id`` as a new version of ``name``.

    The semantic version is the highest existing one bumped by ``bump`` (``1.0.0`` first).
    ``alias`` (default ``challenger``) is pointed at the new version; the first version of
    a model also becomes ``champion``.

    Returns
    -------
    dict
        The new version's row as in :func:`list_versions`.
    """
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="AstrID real/bogus U-Net")
    existing = list_versions(tracking_uri, name)
    latest = max((r["semver"] for r in existing if r["semver"]), key=_semver_key, default=None)
    semver = _bump(latest, bump)
    run = client.get_run(run_id)
    source = f"{run.info.artifact_uri.rstrip('/')}/model"
    mv = client.create_model_version(name, source, run_id=run_id, tags={"semver": semver})
    if alias:
        client.set_registered_model_alias(name, alias, mv.version)
    if not existing:
        client.set_registered_model_alias(name, "champion", mv.version)
    return next(r for r in list_versions(tracking_uri, name) if r["version"] == int(mv.version))


def _resolve(client: Any, name: str, ref: str) -> Any:
    """Find a model version by registry number, semantic version or alias."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        _raise_if_unreachable(exc, str(client.tracking_uri))
        raise ModelNotRegisteredError(
            f"no registered model named {name!r}",
            hint="train one with `astrid train` (it registers the model)",
        ) from exc
    try:
        if ref.isdigit():
            return client.get_model_version(name, ref)
        for mv in client.search_model_versions(f"name='{name}'"):
            if (mv.tags or {}).get("semver") == ref.lstrip("v"):
                return mv
        return client.get_model_version_by_alias(name, ref)
    except MlflowException as exc:
        _raise_if_unreachable(exc, str(client.tracking_uri))
        raise ModelNotRegisteredError(
            f"model {name!r} has no version or alias {ref!r}",
            hint="see `astrid models list`",
        ) from exc


def promote(
    tracking_uri: str, ref: str, name: str = DEFAULT_MODEL_NAME, alias: str = "champion"
) -> dict[str, Any]:
    """Point ``alias`` at version ``ref`` (number, semver or alias); remember the old one."""
    client = _client(tracking_uri)
    mv = _resolve(client, name, ref)
    rm = client.get_registered_model(name)
    previous = (rm.aliases or {}).get(alias)
    if alias == "champion" and previous is not None and str(previous) != str(mv.version):
        history = json.loads((rm.tags or {}).get("champion_history", "[]"))
        history.append(int(previous))
        client.set_registered_model_tag(name, "champion_history", json.dumps(history))
    client.set_registered_model_alias(name, alias, mv.version)
    return next(r for r in list_versions(tracking_uri, name) if r["version"] == int(mv.version))


def rollback(tracking_uri: str, name: str = DEFAULT_MODEL_NAME) -> dict[str, Any]:
    """Point ``champion`` back at the version it had before the last promotion."""
    client = _client(tracking_uri)
    _resolve(client, name, "champion")
    rm = client.get_registered_model(name)
    history = json.loads((rm.tags or {}).get("champion_history", "[]"))
    if not history:
        raise RegistryError(
            f"model {name!r} has no earlier champion to roll back to",
            hint="promote a specific version with `astrid models promote VERSION`",
        )
    previous = history.pop()
    client.set_registered_model_tag(name, "champion_history", json.dumps(history))
    client.set_registered_model_alias(name, "champion", str(previous))
    return next(r for r in list_versions(tracking_uri, name) if r["version"] == int(previous))


def load_registered(
    tracking_uri: str, alias: str = "champion", name: str = DEFAULT_MODEL_NAME
) -> LoadedModel:
    """Download and load the version behind ``alias`` (or a version number / semver).

    Raises
    ------
    ModelNotRegisteredError
        If there is no such model or alias; never falls back to an untrained network.
    """
    import mlflow

    client = _client(tracking_uri)
    mv = _resolve(client, name, alias)
    tmp = Path(tempfile.mkdtemp(prefix="astrid-model-"))
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=mv.source, dst_path=str(tmp), tracking_uri=tracking_uri
        )
        loaded = load_package(local)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    semver = (mv.tags or {}).get("semver", str(mv.version))
    loaded.config["model_version"] = f"{name}@{semver}"
    loaded.config["registry_version"] = int(mv.version)
    return loaded
