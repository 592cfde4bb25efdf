"""Failed-login counters per account name, shared by every API process.

One row per username that has failed to log in recently (known or not, so the answer does
not reveal which names exist); ``blocked_until`` is when the next attempt may be checked.
A successful login deletes the row. Created by migration ``0008``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from astrid.store.tables.base import Base, UTCDateTime, utcnow

__all__ = ["LoginFailure"]


class LoginFailure(Base):
    """Consecutive failed logins of one account name and the backoff they earned."""

    __tablename__ = "login_failures"

    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
