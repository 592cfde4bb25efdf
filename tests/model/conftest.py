"""Fixtures of the model tests: a separable toy set and a tiny trained model; model packages
logged as MLflow runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from astrid.model.examples import LabelledStamps
from astrid.model.stamps import make_triplet

#: The quantities of ``astrid.model.drift.stamp_statistics`` (per stamp triplet)
STAMP_QUANTITIES = {
    "new_median",
    "new_sigma",
    "ref_median",
    "ref_sigma",
    "diff_median",
    "diff_sigma",
    "nan_fraction",
}


def _blob(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] - size // 2
    return np.exp(-0.5 * (xx**2 + yy**2) / 1.5**2)


def toy_triplet(
    real: bool, rng: np.random.Generator, size: int = 32, shift: float = 0.0
) -> list[np.ndarray]:
    """Raw (new, ref, diff) stamps, ``size`` px: a real has a PSF-shaped blob at the centre of
    the new image and the difference, a bogus a hot pixel there; ``shift`` adds to the sky of
    new and ref."""
    blob = _blob(size)
    new = rng.normal(100.0 + shift, 5.0, (size, size))
    ref = rng.normal(100.0 + shift, 5.0, (size, size))
    diff = rng.normal(0.0, 5.0, (size, size))
    amp = rng.uniform(40.0, 80.0)
    if real:
        new += amp * blob
        diff += amp * blob
    else:
        diff[size // 2, size // 2] += 4 * amp
        new[size // 2, size // 2] += 4 * amp
    return [new, ref, diff]


def log_package_run(
    uri: str, folder: Path, experiment: str, artifact_root: Path, **metrics: float
) -> str:
    """Log the model package ``folder`` (and ``metrics``) as a run of MLflow ``experiment``
    (created with ``artifact_root`` if new) at tracking ``uri``; return the run id."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        exp_id = mlflow.create_experiment(experiment, artifact_root.as_uri())
    else:
        exp_id = exp.experiment_id
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_artifacts(str(folder), "model")
        for key, value in metrics.items():
            mlflow.log_metric(key, value)
    return str(run.info.run_id)


def toy_dataset(n: int = 160, seed: int = 0, size: int = 32) -> LabelledStamps:
    """Reals: a PSF-shaped blob at the centre of the difference (and the new image).
    Bogus: a single hot pixel (cosmic-ray-like) at the centre of the difference.
    Every 8 samples form one group ("field")."""
    rng = np.random.default_rng(seed)
    blob = _blob(size)
    stamps, masks, labels, kinds, groups = [], [], [], [], []
    for i in range(n):
        real = i % 2 == 0
        stamps.append(make_triplet(*toy_triplet(real, rng, size), size=size))
        masks.append((blob > 0.1).astype(np.uint8) if real else np.zeros((size, size), np.uint8))
        labels.append(int(real))
        kinds.append("transient" if real else "cosmic_ray")
        groups.append(f"toy-{i // 8}")
    return LabelledStamps(
        np.stack(stamps), np.stack(masks), np.asarray(labels), kinds, groups, {"source": "toy"}
    )


@pytest.fixture(scope="session")
def toy() -> LabelledStamps:
    return toy_dataset()


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """A migrated SQLite database, data dir and blob store in ``tmp_path``, set through the
    ``ASTRID_*`` environment as a user's shell would (the CLI reads settings from there)."""
    from astrid.settings import get_settings
    from astrid.store.db import upgrade

    url = f"sqlite:///{tmp_path / 'astrid.db'}"
    upgrade(url)
    monkeypatch.setenv("ASTRID_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ASTRID_DATABASE_URL", url)
    monkeypatch.setenv("ASTRID_STORAGE_URL", (tmp_path / "blobs").as_uri())
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()
