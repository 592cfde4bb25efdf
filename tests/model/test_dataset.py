"""Training data: simulated candidates, grouped splits, versions, storage and DB loader."""

from __future__ import annotations

import numpy as np
import pytest

from astrid.model.dataset_files import load_dataset, save_dataset
from astrid.model.dataset_store import load_stored_dataset, record_training_dataset, store_dataset
from astrid.model.differencers import psf_matched_difference
from astrid.model.examples import REAL_KINDS, DatasetError
from astrid.model.simulated import SimulationSpec, build_simulated_dataset
from astrid.model.splits import grouped_split
from astrid.model.validated import dataset_from_rows, dataset_from_validated_detections


@pytest.fixture(scope="module")
def simulated():
    return build_simulated_dataset(SimulationSpec(n_pairs=4, shape=(160, 160)), seed=3)


def test_simulated_candidates_are_labelled_by_the_truth(simulated) -> None:
    ds = simulated
    assert set(np.unique(ds.labels)) == {0, 1}
    assert ds.stamps.shape[1:] == (3, 64, 64) and np.all(np.isfinite(ds.stamps))
    kinds = np.array(ds.kinds)
    assert np.all(ds.labels == np.isin(kinds, REAL_KINDS))
    assert "transient" in kinds and "cosmic_ray" in kinds
    real = ds.labels == 1
    # masks of reals are the injected PSF footprint at the centre; bogus masks are empty
    assert ds.masks[~real].sum() == 0
    centre = ds.masks[real][:, 30:35, 30:35].sum(axis=(1, 2))
    assert np.all(centre > 0)
    # reals are bright in the (sign-corrected) difference at the centre
    peak = ds.stamps[real, 2, 29:36, 29:36].max(axis=(1, 2))
    assert np.median(peak) > 3.0
    assert ds.meta["difference"].startswith("astrid.science")


def test_grouped_split_never_shares_a_field() -> None:
    groups = [f"f{i % 13}" for i in range(400)]
    parts = grouped_split(groups, (0.7, 0.15, 0.15), seed=4)
    seen = [set(np.asarray(groups)[p]) for p in parts]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert sum(len(p) for p in parts) == 400
    assert len(seen[0]) == 9  # round(0.7 * 13)
    with pytest.raises(DatasetError, match="cannot fill"):
        grouped_split(["a", "a"], (0.5, 0.5))


def test_version_is_the_hash_of_the_members(toy) -> None:
    v = toy.version
    shuffled = toy.subset(np.random.default_rng(0).permutation(len(toy)))
    assert shuffled.version == v  # order does not matter
    changed = toy.subset(range(len(toy)))
    changed.labels[0] = 1 - changed.labels[0]
    assert changed.version != v
    assert toy.subset(range(len(toy) - 1)).version != v


def test_save_load_round_trip_and_tampering(tmp_path, toy) -> None:
    manifest = save_dataset(toy, tmp_path)
    assert manifest["version"] == toy.version and manifest["n"] == len(toy)
    again = load_dataset(manifest["path"])
    np.testing.assert_array_equal(again.stamps, toy.stamps)
    assert again.version == toy.version
    (tmp_path / "datasets" / toy.version / "members.json").write_text("{}")
    with pytest.raises(DatasetError, match="changed since"):
        load_dataset(manifest["path"])


def test_object_store_and_database_records(tmp_path, toy) -> None:
    from astrid.store.blobs import LocalBlobStore
    from astrid.store.db import Database
    from astrid.store.tables import Base

    store = LocalBlobStore(tmp_path / "blobs")
    key, manifest = store_dataset(toy.subset(range(20)), store, "toy")
    back = load_stored_dataset(store, key)
    assert len(back) == 20 and back.labels.sum() == toy.labels[:20].sum()
    # same members -> same manifest version
    assert store_dataset(toy.subset(range(20)), store, "toy")[1].version == manifest.version
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    Base.metadata.create_all(db.engine)
    with db.session() as session:
        row = record_training_dataset(session, "toy", manifest, key)
        assert row.n_members == 20 and row.label_counts == {"real": 10, "bogus": 10}
        assert record_training_dataset(session, "toy", manifest, key).id == row.id


def test_loader_from_human_validated_detections(tmp_path, toy) -> None:
    import io

    from astrid.store.blobs import LocalBlobStore
    from astrid.store.db import Database
    from astrid.store.tables import Base, Detection

    store = LocalBlobStore(tmp_path / "blobs")
    rng = np.random.default_rng(5)

    def put(arr: np.ndarray) -> str:
        buf = io.BytesIO()
        np.save(buf, arr)
        return store.put(buf.getvalue())

    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    Base.metadata.create_all(db.engine)
    labels = ["real", "bogus", "real", None, "bogus", "real"]
    with db.session() as session:
        for i, label in enumerate(labels):
            stamp = rng.normal(size=(63, 63))
            session.add(
                Detection(
                    ra=10.0 + i,
                    dec=0.0,
                    healpix=i,
                    label=label,
                    observation_id=None,
                    cutout_keys={"new": put(stamp), "ref": put(stamp * 0.5), "diff": put(stamp)},
                )
            )
    with db.session() as session:
        ds = dataset_from_validated_detections(session, store)
    assert len(ds) == 5  # the unlabelled one is left out
    assert ds.labels.tolist() == [1, 0, 1, 0, 1]
    assert ds.stamps.shape == (5, 3, 64, 64)
    with pytest.raises(DatasetError, match="label"):
        dataset_from_rows(
            [
                {
                    "new": np.ones((5, 5)),
                    "ref": np.ones((5, 5)),
                    "diff": np.ones((5, 5)),
                    "label": "maybe",
                    "group": "g",
                }
            ]
        )


def test_fallback_difference_recovers_an_injected_source() -> None:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:128, 0:128]
    sigma = 3.0 / 2.3548
    psf = np.exp(-0.5 * ((xx - 64) ** 2 + (yy - 64) ** 2) / sigma**2)
    psf /= psf.sum()
    new = rng.normal(100, 10, (128, 128)) + 2000 * psf
    ref = rng.normal(100, 10, (128, 128))
    _diff, score = psf_matched_difference(new, ref, {"new_fwhm": 3.0, "ref_fwhm": 3.0})
    # ideal S/N of a PSF-fit on a difference of two equal-noise images:
    # f * sqrt(sum P^2) / (sigma * sqrt 2) = 2000 * 0.0884 / 14.1 = 12.5
    ideal = 2000 * np.sqrt((psf**2).sum()) / (10 * np.sqrt(2))
    assert score[64, 64] == pytest.approx(ideal, rel=0.25)
    assert np.unravel_index(np.argmax(score), score.shape) == (64, 64)
