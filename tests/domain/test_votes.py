"""Votes and consensus on SQLite and PostgreSQL: the rule, replacement, undo, the audit and
the outbox, bad input that stores nothing, and two curators voting at the same moment."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from astrid.domain.curation_audit import CurationConflictError, CurationInputError
from astrid.domain.events import EventType
from astrid.domain.observations import NotFoundError
from astrid.domain.review import review_detection
from astrid.domain.votes import (
    ConsensusRule,
    cast_vote,
    save_rule,
    undo_last_vote,
    undo_vote,
)
from astrid.runtime import Runtime
from astrid.store.tables import (
    CurationAudit,
    CurationState,
    Detection,
    DetectionStatus,
    DomainEvent,
    SkyObject,
    Vote,
)
from tests.domain.curation_fixtures import add_detection, make_actors


def _events(runtime: Runtime, kind: EventType, det_id: int) -> int:
    with runtime.db.session() as s:
        return int(
            s.scalar(
                select(func.count()).where(
                    DomainEvent.event_type == kind.value, DomainEvent.aggregate_id == det_id
                )
            )
            or 0
        )


def _det(runtime: Runtime, **fields: float) -> int:
    with runtime.db.session() as s:
        return add_detection(s, confidence=0.7, **fields).id


def test_two_agreeing_curators_reach_consensus_once(runtime: Runtime) -> None:
    a = make_actors(runtime, ann="curator", bob="curator", cat="curator")
    det_id = _det(runtime)
    with runtime.db.session() as s:
        first = cast_vote(s, det_id, a["ann"], "real", classification="Transient/Supernova/ia")
    assert first.state_after == "awaiting" and not first.consensus_reached
    assert first.vote is not None and first.vote.classification == "transient/supernova/Ia"
    with runtime.db.session() as s:
        second = cast_vote(s, det_id, a["bob"], "real")
    assert second.consensus_reached and second.state_after == "consensus_real"
    with runtime.db.session() as s:  # a third agreeing vote changes nothing
        third = cast_vote(s, det_id, a["cat"], "real")
    assert not third.consensus_reached
    with runtime.db.session() as s:
        det = s.get(Detection, det_id)
        state = s.get(CurationState, det_id)
        obj = s.scalars(select(SkyObject)).one()
        assert det is not None and state is not None
        assert det.label == "real" and det.status == DetectionStatus.VALIDATED
        assert state.n_real == 3 and state.classification == "transient/supernova/Ia"
        assert obj.label == "real"
    assert _events(runtime, EventType.CONSENSUS_REACHED, det_id) == 1
    assert _events(runtime, EventType.VOTE_CAST, det_id) == 3


def test_voting_twice_replaces_the_first_vote_and_both_are_audited(runtime: Runtime) -> None:
    a = make_actors(runtime, ann="curator")
    det_id = _det(runtime)
    with runtime.db.session() as s:
        first = cast_vote(s, det_id, a["ann"], "bogus", comment="<b>looks</b> like a ghost")
    with runtime.db.session() as s:
        second = cast_vote(s, det_id, a["ann"], "real")
    assert first.vote is not None and second.replaced_vote_id == first.vote.id
    with runtime.db.session() as s:
        votes = s.scalars(select(Vote).order_by(Vote.id)).all()
        assert [v.state for v in votes] == ["superseded", "active"]
        assert votes[0].comment == "<b>looks</b> like a ghost"  # stored as typed
        trail = s.scalars(select(CurationAudit).where(CurationAudit.action == "vote")).all()
        assert [t.after["label"] for t in trail] == ["bogus", "real"]
        assert trail[1].before["label"] == "bogus"
        state = s.get(CurationState, det_id)
        assert state is not None and (state.n_real, state.n_bogus) == (1, 0)


def test_disagreement_goes_to_experts_and_an_expert_decides(runtime: Runtime) -> None:
    a = make_actors(runtime, ann="curator", bob="curator", eve="expert")
    det_id = _det(runtime)
    with runtime.db.session() as s:
        cast_vote(s, det_id, a["ann"], "real")
    with runtime.db.session() as s:
        out = cast_vote(s, det_id, a["bob"], "bogus")
    assert out.state_after == "expert_queue"
    with runtime.db.session() as s:
        review_detection(s, det_id, a["eve"], "confirm", label="bogus", importance=2)
    with runtime.db.session() as s:
        state = s.get(CurationState, det_id)
        det = s.get(Detection, det_id)
        assert state is not None and det is not None
        assert (state.state, state.label, det.label) == ("expert_bogus", "bogus", "bogus")
    with runtime.db.session() as s:  # an expert decision is final for later votes
        later = cast_vote(s, det_id, a["ann"], "real")
    assert later.state_after == "expert_bogus"


def test_one_expert_vote_decides_and_the_rule_is_configuration(runtime: Runtime) -> None:
    a = make_actors(runtime, eve="expert", ann="curator", adm="admin")
    d1, d2 = _det(runtime), _det(runtime, ra=151.0)
    with runtime.db.session() as s:
        assert cast_vote(s, d1, a["eve"], "bogus").state_after == "consensus_bogus"
    with runtime.db.session() as s:
        save_rule(s, ConsensusRule(agreeing=1, expert_decides=False), a["adm"])
    with runtime.db.session() as s:
        assert cast_vote(s, d2, a["ann"], "real").state_after == "consensus_real"


def test_skip_never_decides(runtime: Runtime) -> None:
    a = make_actors(runtime, ann="curator", bob="curator")
    det_id = _det(runtime)
    for name in ("ann", "bob"):
        with runtime.db.session() as s:
            out = cast_vote(s, det_id, a[name], "skip")
    assert out.state_after == "awaiting" and out.counts == {"skip": 2}


def test_undo_withdraws_a_consensus_and_is_audited(runtime: Runtime) -> None:
    a = make_actors(runtime, ann="curator", bob="curator")
    det_id = _det(runtime)
    for name in ("ann", "bob"):
        with runtime.db.session() as s:
            cast_vote(s, det_id, a[name], "real")
    with runtime.db.session() as s:
        out = undo_vote(s, det_id, a["bob"])
    assert (out.state_before, out.state_after) == ("consensus_real", "awaiting")
    with runtime.db.session() as s:
        det = s.get(Detection, det_id)
        assert det is not None and det.label is None and det.status == DetectionStatus.PENDING
        actions = [r.action for r in s.scalars(select(CurationAudit).order_by(CurationAudit.id))]
        assert actions == ["vote", "vote", "state", "undo", "state"]
    assert _events(runtime, EventType.VOTE_UNDONE, det_id) == 1
    with pytest.raises(CurationConflictError, match="no vote"), runtime.db.session() as s:
        undo_vote(s, det_id, a["bob"])
    with pytest.raises(CurationConflictError, match="undo window"), runtime.db.session() as s:
        undo_vote(s, det_id, a["ann"], window_s=-1)


def test_undo_stays_within_the_login_session(runtime: Runtime) -> None:
    a = make_actors(runtime, ann="curator", bob="curator")
    dets = [_det(runtime) for _ in range(3)]
    with runtime.db.session() as s:
        cast_vote(s, dets[0], a["ann"], "real", session_id="monday")
        cast_vote(s, dets[1], a["ann"], "bogus", session_id="tuesday")
        cast_vote(s, dets[2], a["ann"], "skip", session_id="tuesday")
        cast_vote(s, dets[2], a["bob"], "real", session_id="tuesday")  # another user
    with pytest.raises(CurationConflictError, match="earlier session"), runtime.db.session() as s:
        undo_vote(s, dets[0], a["ann"], session_id="tuesday")
    with runtime.db.session() as s:
        last = undo_last_vote(s, a["ann"], "tuesday")
        assert last.vote is not None and last.vote.detection_id == dets[2]
    with runtime.db.session() as s:
        assert undo_last_vote(s, a["ann"], "tuesday").vote.detection_id == dets[1]  # type: ignore[union-attr]
    with pytest.raises(CurationConflictError, match="no vote left"), runtime.db.session() as s:
        undo_last_vote(s, a["ann"], "tuesday")
    with runtime.db.session() as s:  # bob's vote is untouched; monday's still undoable there
        assert undo_vote(s, dets[0], a["ann"], session_id="monday").state_after == "awaiting"
        states = {
            v.detection_id: v.state
            for v in s.scalars(select(Vote).where(Vote.user_id == a["bob"].user_id))
        }
        assert states == {dets[2]: "active"}
    assert _events(runtime, EventType.VOTE_UNDONE, dets[2]) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"label": "maybe"}, "body.label"),
        ({"label": "real", "classification": "transient/dragon"}, "body.classification"),
        ({"label": "real", "comment": "x" * 1_000_000}, "body.comment"),
        ({"label": "real", "probability": 1.5}, "body.probability"),
    ],
)
def test_bad_votes_name_the_field_and_store_nothing(
    runtime: Runtime, kwargs: dict[str, object], field: str
) -> None:
    a = make_actors(runtime, ann="curator")
    det_id = _det(runtime)
    kwargs = dict(kwargs)  # the parameter is shared by both backends
    label = str(kwargs.pop("label"))
    with pytest.raises(CurationInputError) as err, runtime.db.session() as s:
        cast_vote(s, det_id, a["ann"], label, **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field
    with runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Vote)) == 0
        assert s.scalar(select(func.count()).select_from(CurationAudit)) == 0
    with pytest.raises(NotFoundError), runtime.db.session() as s:
        cast_vote(s, 987654, a["ann"], "real")


def test_concurrent_votes_on_postgres_reach_consensus_exactly_once(
    postgres_url: str, make_runtime: Callable[..., Runtime]
) -> None:
    """Two curators' transactions run at the same moment (a barrier releases both threads,
    each with its own session and connection), on several detections."""
    from astrid.store.db import upgrade

    upgrade(postgres_url)
    runtime = make_runtime(postgres_url)
    a = make_actors(runtime, ann="curator", bob="curator")
    det_ids = [_det(runtime, ra=150.0 + i * 0.01) for i in range(8)]
    for det_id in det_ids:
        barrier = threading.Barrier(2)
        outcomes: list[bool] = []
        errors: list[BaseException] = []

        def vote(
            name: str,
            det_id: int = det_id,
            barrier: threading.Barrier = barrier,
            outcomes: list[bool] = outcomes,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                with runtime.db.session() as s:
                    s.connection()  # each transaction holds its own connection first
                    barrier.wait(timeout=10)
                    outcomes.append(cast_vote(s, det_id, a[name], "real").consensus_reached)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=vote, args=(n,)) for n in ("ann", "bob")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not errors, errors
        assert sorted(outcomes) == [False, True]
        with runtime.db.session() as s:
            assert s.scalar(select(func.count()).where(Vote.detection_id == det_id)) == 2
            state = s.get(CurationState, det_id)
            assert state is not None and (state.state, state.n_real) == ("consensus_real", 2)
        assert _events(runtime, EventType.CONSENSUS_REACHED, det_id) == 1
