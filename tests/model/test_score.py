"""The inference service: the shipped default model, bad input, validation, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from astrid.model.evaluate import classification_metrics
from astrid.model.score import (
    DEFAULT_MODEL_DIR,
    ScoredCandidate,
    ValidationRules,
    load_scorer,
    persist_detections,
    score_alerts,
    validate_detections,
)
from astrid.model.simulated import SimulationSpec, build_simulated_dataset
from astrid.model.stamps import InvalidStampError
from astrid.model.ztf import iter_ztf_alerts


@pytest.fixture(scope="module")
def scorer():
    return load_scorer("default")


def test_default_model_is_small_and_trained(scorer) -> None:
    size = sum(f.stat().st_size for f in DEFAULT_MODEL_DIR.iterdir() if f.is_file())
    assert size < 10 * 1024**2
    cfg = scorer.loaded.config
    assert cfg["train_config"]["seed"] is not None and cfg["dataset_version"]
    assert scorer.model_version.startswith("astrid-realbogus@")


def test_default_model_separates_unseen_simulated_fields(scorer) -> None:
    # fields numbered from 500000: used neither in training nor in the recorded test set
    unseen = build_simulated_dataset(SimulationSpec(n_pairs=5), seed=11, field_offset=500000)
    m = classification_metrics(unseen.labels, scorer.score(unseen.stamps))
    assert m.roc_auc > 0.97
    assert m.recall > 0.8 and m.precision > 0.8
    # the probability map peaks on the transient, inside the injected-PSF mask
    real = np.flatnonzero(unseen.labels == 1)[:8]
    pmap = scorer.probability_map(unseen.stamps[real])
    inside = np.array([p[m > 0].mean() for p, m in zip(pmap, unseen.masks[real], strict=True)])
    outside = np.array([p[m == 0].mean() for p, m in zip(pmap, unseen.masks[real], strict=True)])
    assert np.mean(inside > outside) >= 0.75
    assert inside.mean() > outside.mean() + 0.05


def test_bad_stamps_are_named_errors(scorer) -> None:
    with pytest.raises(InvalidStampError, match="shape"):
        scorer.score(np.zeros((2, 3, 63, 63), np.float32))
    with pytest.raises(InvalidStampError, match="shape"):
        scorer.score(np.zeros((2, 2, 64, 64), np.float32))
    nan = np.zeros((1, 3, 64, 64), np.float32)
    nan[0, 1, 5, 5] = np.nan
    with pytest.raises(InvalidStampError, match="NaN"):
        scorer.score(nan)


@pytest.mark.realdata
def test_scores_real_ztf_alerts(scorer, shared_data) -> None:
    alerts = list(iter_ztf_alerts([shared_data / "ztf_alerts"]))
    rows = score_alerts(scorer, alerts)
    assert len(rows) == 50
    scores = np.array([r["score"] for r in rows])
    assert np.all((scores >= 0) & (scores <= 1))
    again = np.array([r["score"] for r in score_alerts(scorer, alerts[::-1])])[::-1]
    np.testing.assert_allclose(scores, again, rtol=1e-5, atol=1e-6)  # batch-order independent


def test_validation_rules() -> None:
    stars = np.array([[50.0, 50.0]])
    cands = [
        ScoredCandidate(100, 100, 0.95),
        ScoredCandidate(101, 100.5, 0.90),  # duplicate of the first
        ScoredCandidate(3, 100, 0.99),  # edge
        ScoredCandidate(50.5, 50.0, 0.97),  # on a known star
        ScoredCandidate(150, 150, 0.20),  # bogus score
        ScoredCandidate(150, 60, 0.93, extra={"fwhm": 0.6}),  # sharper than a PSF
        ScoredCandidate(60, 150, 0.80),
    ]
    out = validate_detections(cands, (200, 200), stars, ValidationRules())
    flags = {(c.x, c.y): c.flags for c in out}
    assert flags[(100, 100)] == [] and flags[(60, 150)] == []
    assert flags[(101, 100.5)] == ["duplicate"]
    assert flags[(3, 100)] == ["edge"]
    assert flags[(50.5, 50.0)] == ["known_star"]
    assert flags[(150, 150)] == ["artefact"]
    assert flags[(150, 60)] == ["artefact"]
    assert [c.score for c in out] == sorted((c.score for c in out), reverse=True)


def test_detections_persist_with_model_version(tmp_path) -> None:
    from sqlalchemy import select

    from astrid.store.db import Database
    from astrid.store.tables import Base, Detection

    db = Database(f"sqlite:///{tmp_path / 'd.db'}")
    Base.metadata.create_all(db.engine)
    rows = [
        {"objectId": "ZTF1", "candid": 11, "ra": 10.0, "dec": 5.0, "score": 0.9},
        {"objectId": "ZTF2", "candid": 12, "ra": 11.0, "dec": -5.0, "score": 0.1},
    ]
    with db.session() as session:
        persist_detections(session, rows, "astrid-realbogus@1.0.0")
    with db.session() as session:
        dets = session.scalars(select(Detection).order_by(Detection.id)).all()
        assert [d.model_version for d in dets] == ["astrid-realbogus@1.0.0"] * 2
        assert [d.external_id for d in dets] == ["11", "12"]
        assert dets[0].confidence == pytest.approx(0.9) and dets[0].source == "alert"


def test_the_symmetry_band_rescores_only_the_undecided_and_with_the_mean_of_8_views() -> None:
    """Candidates whose single-view score is in the band are scored from the mean logit over
    the 8 rotations/flips; the others keep their single-view score exactly; band None is
    the single view for all; score_with_uncertainty gives the same score."""
    from astrid.errors import AstridError
    from astrid.model.score import symmetric_views

    data = build_simulated_dataset(SimulationSpec(n_pairs=3), seed=7, field_offset=500100)
    stamps = data.stamps[:48]
    plain = load_scorer("default", symmetry_band=None)
    single = plain.loaded.calibrator(plain.logits(stamps))
    np.testing.assert_allclose(plain.score(stamps), single, rtol=1e-6)
    views = symmetric_views(stamps)
    assert len(views) == 8 and views[0] is not None and np.shares_memory(views[0], stamps)
    assert len({v.tobytes() for v in views}) == 8  # eight different stamps
    mean_logit = np.mean([plain.logits(np.ascontiguousarray(v)) for v in views], axis=0)
    everyone = load_scorer("default", symmetry_band=(0.0, 1.0))
    np.testing.assert_allclose(
        everyone.score(stamps), plain.loaded.calibrator(mean_logit), rtol=1e-5, atol=1e-7
    )
    banded = load_scorer("default", symmetry_band=(0.05, 0.95))
    got = banded.score(stamps)
    inside = (single >= 0.05) & (single <= 0.95)
    assert inside.any() and (~inside).any()  # the test covers both branches
    np.testing.assert_allclose(got[~inside], single[~inside], rtol=1e-6)
    np.testing.assert_allclose(
        got[inside], plain.loaded.calibrator(mean_logit[inside]), rtol=1e-5, atol=1e-7
    )
    with_u, spread = banded.score_with_uncertainty(stamps)
    np.testing.assert_allclose(with_u, got, rtol=1e-5, atol=1e-7)
    assert spread.shape == got.shape
    for bad in ((0.5, 0.2), (-0.1, 0.9), (0.1, 1.5)):
        with pytest.raises(AstridError, match="symmetry band"):
            load_scorer("default", symmetry_band=bad)


def test_drift_references_hold_the_scores_as_served() -> None:
    """A new model's drift reference is made of the scores the pipeline will store (the
    band's 8-view rescoring included), not the single view's, so a night scored by the
    same model shows no drift from the band alone."""
    from astrid.model.drift import reference_sample
    from astrid.model.score import served_scores
    from astrid.model.transfer import drift_references

    data = build_simulated_dataset(SimulationSpec(n_pairs=3), seed=7, field_offset=500100)
    val = data.subset(list(range(48)))
    model = load_scorer("default").loaded
    served = served_scores(model.net, model.calibrator, val.stamps)
    np.testing.assert_allclose(served, load_scorer("default").score(val.stamps), rtol=1e-6)
    single = load_scorer("default", symmetry_band=None).score(val.stamps)
    assert np.max(np.abs(served - single)) > 1e-3  # the band moves some of them
    refs = drift_references(model.net, model.calibrator, val, seed=0)
    expected = reference_sample(served, val.input_stats, 0)["score"]
    np.testing.assert_allclose(refs["drift_reference"]["score"], expected, rtol=1e-6)
