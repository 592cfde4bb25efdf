"""Helpers shared by the curation routes: the acting user and domain errors as problems."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from astrid.api.auth import Principal
from astrid.api.problems import Problem
from astrid.domain.curation_audit import Actor, CurationConflictError, CurationInputError

__all__ = ["actor_of", "curation_problems", "scan_session"]


def actor_of(principal: Principal) -> Actor:
    """The domain's :class:`Actor` for an authenticated caller."""
    if principal.user_id is None or principal.role is None:
        raise Problem(401, "this route needs credentials", kind="not-authenticated")
    return Actor(principal.user_id, principal.username or str(principal.user_id), principal.role)


def scan_session(principal: Principal, claimed: str | None = None) -> str | None:
    """The scanning session a vote belongs to: the caller's login session (token family).

    A JWT names it (``fid``), so what a client claims is ignored; an API key is a session of
    its own unless the script names one (``session_id`` in the body).
    """
    if principal.via == "api_key":
        return claimed or principal.session_id
    return principal.session_id or claimed


@contextmanager
def curation_problems() -> Iterator[None]:
    """Turn curation input errors into 422 (naming the field) and conflicts into 409."""
    try:
        yield
    except CurationInputError as exc:
        raise Problem(
            422,
            str(exc),
            kind="validation",
            errors=[{"field": exc.field, "message": exc.reason}],
        ) from exc
    except CurationConflictError as exc:
        raise Problem(409, str(exc), kind="conflict") from exc
