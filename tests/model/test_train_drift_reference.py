"""``astrid train`` stores the drift reference: the drift job works on its champion at once.

The reference holds the champion's calibrated scores on its validation part and the input
statistics of its raw simulated training stamps (:func:`astrid.model.drift.stamp_statistics`,
kept per example by the simulation builder).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from astrid.cli import app
from astrid.model.drift import REFERENCE_SAMPLE, reference_sample
from astrid.model.examples import concat_stamps
from astrid.model.simulated import SimulationSpec, build_simulated_dataset
from tests.model.conftest import STAMP_QUANTITIES

TINY = Path(__file__).resolve().parents[2] / "notebooks" / "tiny_config.toml"
QUANTITIES = {"score", *STAMP_QUANTITIES}


def test_simulated_sets_keep_raw_input_statistics_through_subset_and_concat() -> None:
    spec = SimulationSpec(n_pairs=2, shape=(128, 128), stamp_size=32)
    data = build_simulated_dataset(spec, seed=3)
    assert set(data.input_stats) == QUANTITIES - {"score"}
    assert all(len(v) == len(data) for v in data.input_stats.values())
    # the simulator's sky is hundreds of counts with a noise of a few: raw units, not the
    # normalised stamps (median about 0, sigma about 1)
    assert np.median(data.input_stats["new_median"]) > 50.0
    assert np.median(data.input_stats["new_sigma"]) > 2.0
    assert np.all(data.input_stats["nan_fraction"] <= 0.5)
    part = data.subset([2, 0])
    assert part.input_stats["new_median"].tolist() == [
        data.input_stats["new_median"][2],
        data.input_stats["new_median"][0],
    ]
    both = concat_stamps([data, part])
    assert len(both.input_stats["ref_sigma"]) == len(data) + 2
    # a part without statistics (a set loaded from files): the join keeps none
    bare = part.subset([0])
    bare.input_stats = {}
    assert concat_stamps([data, bare]).input_stats == {}
    # and the content hash does not depend on them
    assert bare.version == part.subset([0]).version


def test_reference_sample_keeps_finite_values_and_caps_the_size() -> None:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(0, 1, 3000), [np.nan]])
    ref = reference_sample(scores, {"x": np.array([1.0, np.inf, 2.0]), "empty": np.array([])})
    assert len(ref["score"]) == REFERENCE_SAMPLE and all(0 <= v <= 1 for v in ref["score"])
    assert ref["x"] == [1.0, 2.0] and "empty" not in ref
    assert ref == reference_sample(scores, {"x": np.array([1.0, np.inf, 2.0])})  # seeded


def test_a_champion_from_astrid_train_has_a_drift_reference(env: Path) -> None:
    from astrid.domain.model_drift import check_drift
    from astrid.model.registry import load_registered
    from astrid.runtime import Runtime
    from tests.domain.loop_fixtures import add_stamped_detections

    runner = CliRunner()
    out = runner.invoke(app, ["train", "--config", str(TINY), "--export", str(env / "pkg")])
    assert out.exit_code == 0, out.output
    exported = json.loads((env / "pkg" / "config.json").read_text())["drift_reference"]
    assert set(exported) == QUANTITIES
    assert all(0.0 <= v <= 1.0 for v in exported["score"])
    assert 0 < len(exported["new_median"]) <= REFERENCE_SAMPLE

    runtime = Runtime.from_settings()
    try:
        champion = load_registered(runtime.settings.resolved_mlflow_uri, "champion")
        assert champion.config["drift_reference"] == exported
        # detections with the simulator's sky (night 60000) and with 20x its sky (60001)
        sky = float(np.median(exported["new_median"]))
        add_stamped_detections(runtime, 40, seed=1, mjd=60000.8, shift=sky - 100.0)
        add_stamped_detections(runtime, 40, seed=2, mjd=60001.8, shift=20 * sky)
        rows = {r["night"]: r for r in check_drift(runtime, nights=["60000", "60001"])}
    finally:
        runtime.close()
    assert set(rows) == {"60000", "60001"}
    for row in rows.values():
        assert QUANTITIES - {"score"} <= set(row["psi"])  # detections carry no score here
        assert all(np.isfinite(v) for v in row["psi"].values())
    assert rows["60001"]["drifted"] and rows["60001"]["psi"]["new_median"] > 1.0
    assert rows["60000"]["psi"]["new_median"] < rows["60001"]["psi"]["new_median"]
