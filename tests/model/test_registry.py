"""Model packages and the MLflow registry: round trip, promote/rollback, named errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from astrid.model.calibration import TemperatureCalibrator
from astrid.model.registry import (
    CorruptModelError,
    IncompatibleModelError,
    ModelNotRegisteredError,
    RegistryError,
    list_versions,
    load_package,
    load_registered,
    promote,
    register_run,
    rollback,
    save_package,
)
from astrid.model.score import Scorer, load_scorer
from astrid.model.unet import UNet, UNetConfig
from tests.model.conftest import log_package_run

CFG = UNetConfig(base_channels=4, depth=2, stamp_size=32)


def _net(seed: int) -> UNet:
    import torch

    torch.manual_seed(seed)
    return UNet(CFG).eval()


def _stamps() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(5, 3, 32, 32)).astype(np.float32)


def test_package_round_trip_gives_identical_scores(tmp_path) -> None:
    net = _net(1)
    folder = save_package(
        net, TemperatureCalibrator(2.0, 0.5), tmp_path / "pkg", {"semver": "1.2.3"}
    )
    loaded = load_package(folder)
    assert loaded.config["semver"] == "1.2.3"
    a = Scorer(loaded, symmetry_band=None).score(_stamps())  # one view: the net itself
    import torch

    with torch.inference_mode():
        from astrid.model.unet import centre_logit

        z = centre_logit(net(torch.from_numpy(_stamps())), CFG.centre_radius).numpy()
    np.testing.assert_allclose(a, 1 / (1 + np.exp(-(z - 0.5) / 2.0)), rtol=1e-4, atol=1e-5)


def test_corrupt_and_incompatible_packages(tmp_path) -> None:
    folder = save_package(_net(1), TemperatureCalibrator(), tmp_path / "pkg")
    (folder / "model.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CorruptModelError, match="cannot read the weights"):
        load_package(folder)
    with pytest.raises(CorruptModelError, match=r"needs config\.json"):
        load_package(tmp_path / "nowhere")

    folder = save_package(_net(1), TemperatureCalibrator(), tmp_path / "pkg2")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["format"] = "someone-else/9"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(IncompatibleModelError, match="model format"):
        load_package(folder)

    folder = save_package(_net(1), TemperatureCalibrator(), tmp_path / "pkg3")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["unet"]["base_channels"] = 8  # weights were made for 4
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(IncompatibleModelError, match="do not fit"):
        load_package(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CorruptModelError, match="JSON"):
        load_package(folder)


def _log_run(uri: str, tmp_path, seed: int) -> str:
    folder = save_package(_net(seed), TemperatureCalibrator(), tmp_path / f"pkg{seed}")
    return log_package_run(uri, folder, "registry-test", tmp_path / "mlruns")


def test_registry_round_trip_promote_rollback(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(ModelNotRegisteredError, match="no registered model"):
        load_registered(uri, "champion")
    with pytest.raises(ModelNotRegisteredError):
        load_scorer(alias="champion", tracking_uri=uri)
    assert list_versions(uri) == []

    v1 = register_run(uri, _log_run(uri, tmp_path, 1))
    assert v1["semver"] == "1.0.0" and v1["aliases"] == ["challenger", "champion"]
    v2 = register_run(uri, _log_run(uri, tmp_path, 2))
    assert v2["semver"] == "1.1.0" and v2["aliases"] == ["challenger"]
    v3 = register_run(uri, _log_run(uri, tmp_path, 3), bump="major")
    assert v3["semver"] == "2.0.0"

    champ = load_registered(uri, "champion")
    assert champ.version == "astrid-realbogus@1.0.0"
    s1 = Scorer(champ).score(_stamps())

    promote(uri, "1.1.0")  # by semver
    assert load_registered(uri, "champion").version == "astrid-realbogus@1.1.0"
    promote(uri, "3")  # by registry number
    rows = {r["version"]: r for r in list_versions(uri)}
    assert "champion" in rows[3]["aliases"]
    rollback(uri)
    assert load_registered(uri, "champion").version == "astrid-realbogus@1.1.0"
    rollback(uri)
    back = load_registered(uri, "champion")
    assert back.version == "astrid-realbogus@1.0.0"
    np.testing.assert_allclose(Scorer(back).score(_stamps()), s1)
    with pytest.raises(RegistryError, match="no earlier champion"):
        rollback(uri)
    with pytest.raises(ModelNotRegisteredError, match="no version or alias"):
        promote(uri, "9.9.9")
