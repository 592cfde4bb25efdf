"""Tables of the API's identity layer: users, API keys, revoked refresh tokens and families.

They live on :class:`astrid.store.tables.base.Base` (one metadata, one migration history) and
are created by migrations ``0002`` and ``0006`` (token families). Secrets are never stored:
passwords as argon2 hashes, API keys as an HMAC-SHA256 digest beside their public prefix,
refresh tokens only by their ``jti`` (and family) once revoked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from astrid.store.tables.base import Base, TimestampMixin, UTCDateTime

__all__ = ["ApiKey", "RevokedToken", "RevokedTokenFamily", "User"]


class User(TimestampMixin, Base):
    """A local account (password) or one mapped from an external identity provider."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    email: Mapped[str | None] = mapped_column(String(256))
    password_hash: Mapped[str | None] = mapped_column(String(256), doc="argon2id; None = SSO only")
    role: Mapped[str] = mapped_column(
        String(16), default="viewer", doc="viewer|curator|expert|admin"
    )
    is_active: Mapped[bool] = mapped_column(default=True)
    external_subject: Mapped[str | None] = mapped_column(
        String(512), unique=True, doc="'<issuer>|<sub>' of a Supabase/OIDC identity."
    )
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="user")


class ApiKey(TimestampMixin, Base):
    """A long-lived credential of a user: shown once, stored as a digest with its prefix."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16), unique=True, doc="Public part, for lookup.")
    key_hash: Mapped[str] = mapped_column(String(64), doc="HMAC-SHA256 of the whole key, hex.")
    scopes: Mapped[list[Any]] = mapped_column(default=list, doc="['read'] or ['read', 'write'].")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship(back_populates="api_keys")


class RevokedToken(Base):
    """A refresh token (by ``jti``) that may no longer be used (logout or rotation)."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RevokedTokenFamily(Base):
    """A refresh-token family (one login and its rotations) revoked after a token was reused.

    Reuse of a rotated refresh token means two parties hold the family; every token of it is
    refused from then on.
    """

    __tablename__ = "revoked_token_families"

    family: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), doc="When the last token of the family expires at the latest."
    )
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime())
