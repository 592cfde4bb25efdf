"""The pipeline's per-process caches (the difference stage's prepared references, the
products kept for the next stage): the same products as without them, and a new reference
version is a new entry (never the old version's preparation)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from astrid.pipeline.orchestrate import process_observation
from astrid.pipeline.stages.ingest import ingest_paths
from astrid.pipeline.stages.products import clear_recent_products
from astrid.pipeline.stages.refcache import clear_reference_cache
from astrid.runtime import Runtime
from astrid.store.db import upgrade
from astrid.store.tables import Candidate, Detection, Difference, Observation
from tests.pipeline.conftest import one_field_survey

_COLUMNS = ("x", "y", "ra", "dec", "snr", "flux", "flux_err", "mag", "score", "flags")


def _products(runtime: Runtime) -> dict[str, dict[str, Any]]:
    """Per file name: the difference's reference version, cache use, noise and flux ratio,
    its candidates (sorted), the detections' confidences and cutouts, the image keys."""
    out: dict[str, dict[str, Any]] = {}
    with runtime.db.session() as s:
        for diff in s.scalars(select(Difference)):
            name = s.get(Observation, diff.observation_id).filename
            cands = s.scalars(select(Candidate).where(Candidate.difference_id == diff.id)).all()
            rows = sorted(tuple(getattr(c, k) for k in _COLUMNS) for c in cands)
            conf = sorted(
                (d.ra, d.dec, d.confidence, sorted(d.cutout_keys.items()))
                for d in s.scalars(
                    select(Detection).where(Detection.observation_id == diff.observation_id)
                )
            )
            out[name] = {
                "version": diff.reference_version,
                "cache": diff.stats["reference_cache"],
                "noise": diff.stats["noise_from_variance"],
                "flux_ratio": diff.stats["flux_ratio"],
                "candidates": rows,
                "detections": conf,
                "keys": (diff.difference_key, diff.scorr_key),
            }
    return out


def test_cached_references_give_the_same_products_and_new_versions_new_entries(
    migrated_url: str, make_runtime: Callable[..., Runtime], tmp_path: Path
) -> None:
    clear_reference_cache()
    clear_recent_products()
    cached = make_runtime(migrated_url, limits_fakes=50)
    e, survey = one_field_survey(
        cached, tmp_path / "raw", seed=4, n_epochs=5, n_transients=4, flux_range=(3000.0, 6000.0)
    )
    for k in range(5):
        result = process_observation(cached, e[k])
        assert k == 0 or all(st.ok for st in result.stages), result
    # the same files, the cache off, in a database of their own
    url = f"sqlite:///{tmp_path / 'uncached.db'}"
    upgrade(url)
    plain = make_runtime(
        url, limits_fakes=50, pipeline_reference_cache_mb=0, pipeline_recent_products_mb=0
    )
    outcomes = ingest_paths(plain, survey.paths, survey="test")
    ids = {Path(o.path).name: int(o.observation_id) for o in outcomes if o.observation_id}
    for k in range(5):
        result = process_observation(plain, ids[f"field-a-e{k}.fits"])
        assert k == 0 or all(st.ok for st in result.stages), result

    with_cache, without = _products(cached), _products(plain)
    names = [f"field-a-e{k}.fits" for k in range(1, 5)]
    assert sorted(with_cache) == sorted(without) == names
    # epoch 2 re-uses epoch 1's reference (version 1); epochs 3 and 4 have new coadd
    # versions (new image blobs): new entries, prepared afresh
    assert [with_cache[n]["version"] for n in names] == [1, 1, 2, 3]
    assert [with_cache[n]["cache"] for n in names] == ["miss", "hit", "miss", "miss"]
    assert [without[n]["cache"] for n in names] == ["miss"] * 4
    for n in names:
        a, b = with_cache[n], without[n]
        assert a["version"] == b["version"] and a["noise"] == b["noise"], n
        assert a["flux_ratio"] == b["flux_ratio"], n
        assert len(a["candidates"]) > 0 and a["candidates"] == b["candidates"], n
        assert a["detections"] == b["detections"], n
        assert a["keys"] == b["keys"], n  # the difference and score images, byte for byte
    assert np.isfinite([c[4] for c in with_cache[names[1]]["candidates"]]).all()
