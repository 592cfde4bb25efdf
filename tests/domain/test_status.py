"""The processing-status machine: every pair of statuses, allowed or refused."""

from __future__ import annotations

import itertools

import pytest

from astrid.domain.status import ALLOWED_TRANSITIONS, IllegalTransitionError, check_transition
from astrid.store.tables import ObservationStatus as S

HAPPY_PATH = [
    S.INGESTED,
    S.PREPROCESSING,
    S.PREPROCESSED,
    S.DIFFERENCING,
    S.DIFFERENCED,
    S.DETECTING,
    S.COMPLETED,
    S.ARCHIVED,
]


def test_happy_path_is_allowed() -> None:
    for a, b in itertools.pairwise(HAPPY_PATH):
        assert check_transition(a, b) is b


@pytest.mark.parametrize(("a", "b"), list(itertools.product(S, S)))
def test_every_pair(a: S, b: S) -> None:
    if b in ALLOWED_TRANSITIONS[a]:
        assert check_transition(a.value, b.value) is b
    else:
        with pytest.raises(IllegalTransitionError, match=f"from '{a.value}' to '{b.value}'"):
            check_transition(a, b)


def test_archived_is_final_and_failed_can_retry() -> None:
    assert ALLOWED_TRANSITIONS[S.ARCHIVED] == frozenset()
    assert S.INGESTED in ALLOWED_TRANSITIONS[S.FAILED]
    for status in S:
        if status not in (S.ARCHIVED, S.FAILED, S.COMPLETED):
            assert S.FAILED in ALLOWED_TRANSITIONS[status]


def test_unknown_status_is_named() -> None:
    with pytest.raises(IllegalTransitionError, match="unknown status"):
        check_transition("ingested", "exploded")
