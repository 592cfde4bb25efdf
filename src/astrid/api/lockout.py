"""Login throttling: exponential backoff per account name, and a bound on password hashing.

* After ``login_free_failures`` consecutive failed logins of one account name, each further
  failure blocks the name for ``base · 2^(n - free - 1)`` seconds (at most ``max``); during
  the block every login of that name, right password or not, is answered 429 with
  ``Retry-After`` *before* any password is hashed. A success clears the count. The counters
  are rows of ``login_failures`` in the database, so every API process (and replica) shares
  them. Unknown names are counted like known ones: the answers do not reveal which exist.
* Each argon2 verification costs ~0.35 s of CPU and ~50 MB; at most
  ``max_concurrent_logins`` run at once per process, a login that cannot get a slot within
  a second is answered 503 with ``Retry-After``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from astrid.api.config import ApiConfig
from astrid.api.problems import Problem
from astrid.store.db import Database
from astrid.store.tables import LoginFailure, utcnow

__all__ = ["LoginGuard"]


def _aware(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes for timezone=True columns; they are stored as UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class LoginGuard:
    """Per-account backoff (database rows) and a per-process semaphore on hashing."""

    def __init__(self, config: ApiConfig, wait_s: float = 1.0) -> None:
        self.config = config
        self.wait_s = wait_s
        self._slots = threading.BoundedSemaphore(config.max_concurrent_logins)

    def backoff_s(self, failures: int) -> float:
        """Seconds an account is blocked after ``failures`` consecutive failures."""
        extra = failures - self.config.login_free_failures
        if extra <= 0:
            return 0.0
        return float(
            min(
                self.config.login_backoff_max_s, self.config.login_backoff_base_s * 2 ** (extra - 1)
            )
        )

    def check(self, db: Database, username: str) -> None:
        """Raise 429 (with Retry-After) while ``username`` is blocked."""
        with db.session() as session:
            row = session.get(LoginFailure, username)
            until = _aware(row.blocked_until) if row is not None else None
        if until is None:
            return
        left = (until - utcnow()).total_seconds()
        if left > 0:
            retry = max(1, math.ceil(left))
            raise Problem(
                429,
                f"too many failed logins for this account: try again in {retry} s",
                kind="rate-limited",
                headers={"Retry-After": str(retry)},
            )

    @contextmanager
    def hashing_slot(self) -> Iterator[None]:
        """Hold one of the password-hashing slots (503 when none frees up in time)."""
        if not self._slots.acquire(timeout=self.wait_s):
            raise Problem(
                503,
                "too many logins at once: try again shortly",
                kind="unavailable",
                headers={"Retry-After": "1"},
            )
        try:
            yield
        finally:
            self._slots.release()

    def failed(self, db: Database, username: str) -> float:
        """Count one failure of ``username``; return the backoff it now has, in seconds."""
        now = utcnow()
        bump = (
            update(LoginFailure)
            .where(LoginFailure.username == username)
            .values(failures=LoginFailure.failures + 1, updated_at=now)
        )
        with db.session() as session:
            if session.execute(bump).rowcount == 0:  # type: ignore[attr-defined]
                try:
                    with session.begin_nested():
                        session.add(LoginFailure(username=username, failures=1, updated_at=now))
                except IntegrityError:  # another process counted the first failure
                    session.execute(bump)
            row = session.get(LoginFailure, username, populate_existing=True)
            assert row is not None
            delay = self.backoff_s(row.failures)
            row.blocked_until = now + timedelta(seconds=delay) if delay else None
        return delay

    def succeeded(self, db: Database, username: str) -> None:
        """Clear the failures of ``username``."""
        with db.session() as session:
            row = session.get(LoginFailure, username)
            if row is not None:
                session.delete(row)
