"""The processing-status state machine of an observation.

::

    ingested → preprocessing → preprocessed → differencing → differenced → detecting → completed
        any active state → failed;  failed → ingested (retry);  completed → preprocessing (rerun)
        ingested | preprocessed | completed | failed → archived (final)
"""

from __future__ import annotations

from astrid.errors import AstridError
from astrid.store.tables import ObservationStatus as S

__all__ = ["ALLOWED_TRANSITIONS", "IllegalTransitionError", "check_transition"]

ALLOWED_TRANSITIONS: dict[S, frozenset[S]] = {
    S.INGESTED: frozenset({S.PREPROCESSING, S.FAILED, S.ARCHIVED}),
    S.PREPROCESSING: frozenset({S.PREPROCESSED, S.FAILED}),
    S.PREPROCESSED: frozenset({S.DIFFERENCING, S.FAILED, S.ARCHIVED}),
    S.DIFFERENCING: frozenset({S.DIFFERENCED, S.FAILED}),
    S.DIFFERENCED: frozenset({S.DETECTING, S.FAILED}),
    S.DETECTING: frozenset({S.COMPLETED, S.FAILED}),
    S.COMPLETED: frozenset({S.PREPROCESSING, S.ARCHIVED}),
    S.FAILED: frozenset({S.INGESTED, S.ARCHIVED}),
    S.ARCHIVED: frozenset(),
}


class IllegalTransitionError(AstridError):
    """A status change the state machine does not allow."""


def check_transition(current: S | str, new: S | str) -> S:
    """Return ``new`` as a status if ``current → new`` is allowed, else raise.

    Raises
    ------
    IllegalTransitionError
        For unknown statuses or transitions not in :data:`ALLOWED_TRANSITIONS`.
    """
    try:
        cur, nxt = S(current), S(new)
    except ValueError as exc:
        raise IllegalTransitionError(
            f"unknown status in {current!r} → {new!r}",
            hint=f"statuses are: {', '.join(s.value for s in S)}",
        ) from exc
    if nxt not in ALLOWED_TRANSITIONS[cur]:
        allowed = ", ".join(sorted(s.value for s in ALLOWED_TRANSITIONS[cur])) or "none (final)"
        raise IllegalTransitionError(
            f"cannot change status from {cur.value!r} to {nxt.value!r}",
            hint=f"from {cur.value!r} the allowed next statuses are: {allowed}",
        )
    return nxt
