"""Helpers of the closed-loop tests: curated detections with stored stamps, tiny champions.

Reals are a PSF-shaped blob at the centre of the difference (and of the new image); bogus
detections a single hot pixel there (cosmic-ray-like), as in tests/model/conftest.py.
Detections are curated by real votes (two curators agreeing).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from astrid.domain.votes import cast_vote
from astrid.model.calibration import TemperatureCalibrator
from astrid.model.registry import register_run, save_package
from astrid.model.train import TrainConfig, fit
from astrid.model.unet import UNet, UNetConfig
from astrid.runtime import Runtime
from tests.domain.curation_fixtures import add_detection, make_actors
from tests.model.conftest import log_package_run, toy_dataset, toy_triplet

SIZE = 32
NAME = "astrid-realbogus"
UNET = UNetConfig(base_channels=4, depth=2, stamp_size=SIZE)


def raw_triplet(real: bool, rng: np.random.Generator, shift: float = 0.0) -> list[np.ndarray]:
    """Raw (new, ref, diff) stamps of this module's size; ``shift`` adds to the sky of new and
    ref (:func:`tests.model.conftest.toy_triplet`)."""
    return toy_triplet(real, rng, SIZE, shift)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr.astype(np.float32))
    return buf.getvalue()


def add_stamped_detections(
    runtime: Runtime,
    n: int,
    *,
    seed: int = 0,
    mjd: float = 60000.7,
    shift: float = 0.0,
    confidence: float | None = None,
    source: str = "alert",
) -> list[tuple[int, bool]]:
    """``n`` detections (alternately real and bogus) with new/ref/diff blobs; (id, is_real)."""
    rng = np.random.default_rng(seed)
    out = []
    with runtime.db.session() as s:
        for i in range(n):
            real = i % 2 == 0
            keys = {
                name: runtime.blobs.put(_npy(arr))
                for name, arr in zip(
                    ("new", "ref", "diff"), raw_triplet(real, rng, shift), strict=True
                )
            }
            det = add_detection(
                s,
                150.0 + 0.01 * i,
                2.0,
                cutout_keys=keys,
                mjd=mjd,
                confidence=confidence,
                source=source,
                external_id=str(10_000 + i) if source == "alert" else None,
            )
            out.append((det.id, real))
    return out


def curate(runtime: Runtime, detections: list[tuple[int, bool]]) -> None:
    """Two curators vote the true label on each detection (consensus)."""
    actors = make_actors(runtime, ann="curator", bob="curator")
    with runtime.db.session() as s:
        for det_id, real in detections:
            for actor in actors.values():
                cast_vote(s, det_id, actor, "real" if real else "bogus")


def register_champion(
    uri: str,
    tmp_path: Path,
    *,
    trained: bool,
    seed: int = 0,
    extra: dict | None = None,
    alias: str | None = "challenger",
) -> dict:
    """Register a tiny model (the first one becomes champion): trained on the toy set, or an
    untrained network; ``extra`` goes into its package configuration."""
    import torch

    torch.manual_seed(seed)
    if trained:
        data = toy_dataset(n=160, seed=seed, size=SIZE)
        cfg = TrainConfig(
            stamp_size=SIZE,
            base_channels=4,
            depth=2,
            epochs=6,
            batch_size=16,
            lr=1e-2,
            num_threads=1,
        )
        net = fit(data.subset(range(120)), data.subset(range(120, 160)), cfg).net
    else:
        net = UNet(UNET).eval()
    folder = save_package(
        net, TemperatureCalibrator(), tmp_path / f"model-{trained}-{seed}", extra or {}
    )
    run_id = log_package_run(uri, folder, "loop-test", tmp_path / "mlruns")
    return register_run(uri, run_id, NAME, alias=alias)
