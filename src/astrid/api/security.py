"""Credentials: argon2 passwords, API keys, AstrID JWTs and external (Supabase/OIDC) tokens.

Pure functions over the config and the database session; routes and the CLI call them.

* Passwords: argon2id (``argon2-cffi`` defaults), rehashed when parameters change.
* API keys: ``astrid_<prefix>_<secret>``; the prefix is stored in clear for lookup, the whole
  key only as HMAC-SHA256 under the server secret; shown once at creation.
* AstrID tokens: HS256 JWTs with ``iss=astrid``, ``typ`` access|refresh, ``jti``, ``sub`` the
  numeric user id; refresh tokens carry ``fid``, their family (one login and its rotations).
  They rotate (the used one is revoked) and can be revoked at logout; presenting a rotated
  one again revokes the whole family.
* External tokens: Supabase (HS256 with the project secret, ``aud=authenticated``) or any OIDC
  issuer (RS256/ES256 against its JWKS), mapped to a local user by ``<iss>|<sub>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.api.config import ApiConfig
from astrid.errors import AstridError
from astrid.store.tables import ApiKey, RevokedToken, RevokedTokenFamily, User, utcnow

__all__ = [
    "ISSUER",
    "KEY_PREFIX",
    "MAX_USER_ID",
    "ROLES",
    "SCOPES",
    "AuthError",
    "TokenPair",
    "TokenReuseError",
    "TokenService",
    "UserError",
    "VerifiedToken",
    "authenticate_api_key",
    "check_role",
    "create_api_key",
    "create_user",
    "get_user",
    "hash_password",
    "revoke_api_key",
    "set_role",
    "verify_password",
]

ISSUER = "astrid"
ROLES = ("viewer", "curator", "expert", "admin")
SCOPES = ("read", "write")
KEY_PREFIX = "astrid_"
MAX_USER_ID = 2**31 - 1  # users.id is a 32-bit INTEGER on every backend
_hasher = PasswordHasher()


class AuthError(AstridError):
    """Credentials are missing, malformed, expired, forged or revoked."""


class TokenReuseError(AuthError):
    """A refresh token was presented again after rotation or logout (possible theft)."""

    def __init__(self, claims: dict[str, Any]) -> None:
        super().__init__("refresh token has been revoked; its whole family is now revoked")
        self.claims = claims


def _family(claims: dict[str, Any]) -> str:
    # Tokens issued before families existed form a family of their own.
    return str(claims.get("fid") or claims["jti"])


class UserError(AstridError):
    """A user or API-key operation was given bad input (unknown role, duplicate name...)."""


# -- passwords ---------------------------------------------------------------------------


def hash_password(password: str) -> str:
    """argon2id hash of ``password``."""
    if len(password) < 8:
        raise UserError("password is shorter than 8 characters", hint="choose a longer one")
    return _hasher.hash(password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_hex(16))


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches ``password_hash`` (False for SSO-only users).

    Unknown users and SSO-only users still cost one argon2 verification, so response times
    do not reveal which usernames exist.
    """
    if not password_hash:
        with contextlib.suppress(VerifyMismatchError, VerificationError, InvalidHashError):
            _hasher.verify(_dummy_hash(), password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# -- users -------------------------------------------------------------------------------


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}", hint=f"roles are: {', '.join(ROLES)}")
    return role


def create_user(
    session: Session,
    username: str,
    password: str | None,
    role: str = "viewer",
    email: str | None = None,
    external_subject: str | None = None,
) -> User:
    """Create a user (argon2-hashed password, or SSO-only when ``password`` is None)."""
    check_role(role)
    if not username or len(username) > 128:
        raise UserError("username must be 1 to 128 characters")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise UserError(f"user {username!r} already exists")
    user = User(
        username=username,
        email=email,
        password_hash=hash_password(password) if password is not None else None,
        role=role,
        is_active=True,
        external_subject=external_subject,
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise UserError(f"no user called {username!r}")
    return user


def set_role(session: Session, username: str, role: str) -> User:
    """Change ``username``'s role."""
    user = get_user(session, username)
    user.role = check_role(role)
    return user


# -- API keys ----------------------------------------------------------------------------


def _key_digest(secret_key: str, key: str) -> str:
    return hmac.new(secret_key.encode(), key.encode(), hashlib.sha256).hexdigest()


def create_api_key(
    session: Session,
    config: ApiConfig,
    user: User,
    name: str,
    scopes: list[str] | None = None,
    expires_in_days: float | None = None,
) -> tuple[ApiKey, str]:
    """Create a key for ``user``; return the row and the key in clear (shown once)."""
    scopes = list(scopes) if scopes else ["read"]
    for scope in scopes:
        if scope not in SCOPES:
            raise UserError(f"unknown scope {scope!r}", hint=f"scopes are: {', '.join(SCOPES)}")
    if expires_in_days is not None and expires_in_days <= 0:
        raise UserError("expires_in_days must be positive")
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        user_id=user.id,
        name=name,
        prefix=prefix,
        key_hash=_key_digest(config.secret_key, key),
        scopes=sorted(set(scopes)),
        expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    session.add(row)
    session.flush()
    return row, key


def revoke_api_key(session: Session, prefix: str) -> ApiKey:
    """Revoke the key with ``prefix`` (idempotent)."""
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None:
        raise UserError(f"no API key with prefix {prefix!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def _aware(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes for timezone=True columns; they are stored as UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def authenticate_api_key(
    session: Session, config: ApiConfig, key: str, touch_after_s: float = 60.0
) -> tuple[User, ApiKey]:
    """The user and key row of a presented key; raises :class:`AuthError` if unusable."""
    parts = key.split("_")
    if len(parts) < 3 or not key.startswith(KEY_PREFIX):
        raise AuthError("malformed API key")
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
    if row is None or not hmac.compare_digest(row.key_hash, _key_digest(config.secret_key, key)):
        raise AuthError("unknown API key")
    now = utcnow()
    if row.revoked_at is not None:
        raise AuthError("API key has been revoked")
    expires = _aware(row.expires_at)
    if expires is not None and expires <= now:
        raise AuthError("API key has expired")
    user = row.user
    if not user.is_active:
        raise AuthError("user is deactivated")
    last = _aware(row.last_used_at)
    if last is None or (now - last).total_seconds() >= touch_after_s:
        row.last_used_at = now
    return user, row


# -- tokens ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


@dataclass(frozen=True)
class VerifiedToken:
    """A verified bearer token: the user it maps to and how it was issued."""

    user_id: int
    issuer: str


class TokenService:
    """Issues and verifies AstrID JWTs, and verifies Supabase/OIDC tokens."""

    def __init__(self, config: ApiConfig) -> None:
        self.config = config

    @cached_property
    def _jwks(self) -> jwt.PyJWKClient | None:
        url = self.config.jwks_url
        return jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5) if url else None

    def _encode(
        self, user: User, typ: str, ttl_s: int, family: str | None = None
    ) -> tuple[str, str, datetime]:
        now = utcnow()
        exp = now + timedelta(seconds=ttl_s)
        jti = uuid.uuid4().hex
        claims = {
            "iss": ISSUER,
            "sub": str(user.id),
            "typ": typ,
            "role": user.role,
            "iat": int(now.timestamp()),
            "exp": int(exp.timestamp()),
            "jti": jti,
        }
        if family is not None:
            claims["fid"] = family
        return jwt.encode(claims, self.config.secret_key, algorithm="HS256"), jti, exp

    def issue(self, user: User, family: str | None = None) -> TokenPair:
        """A new access + refresh token pair for ``user`` (a new family unless given).

        Both carry the family as ``fid``: it names the login session (one login and its
        refreshes), to which votes are tied for undo.
        """
        family = family or uuid.uuid4().hex
        access, _, _ = self._encode(user, "access", self.config.access_ttl_s, family)
        refresh, _, _ = self._encode(user, "refresh", self.config.refresh_ttl_s, family)
        return TokenPair(access, refresh, self.config.access_ttl_s)

    def _decode_local(self, token: str, typ: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.config.secret_key,
                algorithms=["HS256"],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss", "jti"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token has expired") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        if claims.get("typ") != typ:
            raise AuthError(f"not an {typ} token")
        sub, jti = claims["sub"], claims["jti"]
        # Signed by us, yet checked: a user id fits the ``users.id`` column, ids fit theirs.
        if not (isinstance(sub, str) and sub.isascii() and sub.isdigit() and len(sub) <= 10):
            raise AuthError("invalid token: sub is not a user id")
        if int(sub) > MAX_USER_ID:
            raise AuthError("invalid token: sub is not a user id")
        if not (isinstance(jti, str) and 0 < len(jti) <= 64):
            raise AuthError("invalid token: bad jti")
        fid = claims.get("fid")
        if fid is not None and not (isinstance(fid, str) and 0 < len(fid) <= 64):
            raise AuthError("invalid token: bad fid")
        return claims

    def refresh(self, session: Session, refresh_token: str) -> TokenPair:
        """Rotate: revoke the presented refresh token and issue a new pair of its family.

        Raises :class:`TokenReuseError` when the token was already rotated or revoked: the
        caller must then :meth:`revoke_family` (in a transaction of its own, since this
        one is rolled back by the error).
        """
        claims = self._decode_local(refresh_token, "refresh")
        family = _family(claims)
        if session.get(RevokedTokenFamily, family) is not None:
            raise AuthError("refresh token family has been revoked (a token was reused)")
        if session.get(RevokedToken, claims["jti"]) is not None:
            raise TokenReuseError(claims)
        user = session.get(User, int(claims["sub"]))
        if user is None or not user.is_active:
            raise AuthError("user is unknown or deactivated")
        self._revoke(session, claims)
        return self.issue(user, family)

    def revoke_family(self, session: Session, claims: dict[str, Any]) -> None:
        """Refuse every refresh token of the family of ``claims`` from now on."""
        family = _family(claims)
        if session.get(RevokedTokenFamily, family) is None:
            session.add(
                RevokedTokenFamily(
                    family=family,
                    user_id=int(claims["sub"]),
                    # Rotation re-issues with the full lifetime: bound by now + one lifetime.
                    expires_at=utcnow() + timedelta(seconds=self.config.refresh_ttl_s),
                    revoked_at=utcnow(),
                )
            )
            session.flush()

    def revoke_refresh(self, session: Session, refresh_token: str) -> None:
        """Revoke a refresh token (logout)."""
        claims = self._decode_local(refresh_token, "refresh")
        if session.get(RevokedToken, claims["jti"]) is None:
            self._revoke(session, claims)

    @staticmethod
    def _revoke(session: Session, claims: dict[str, Any]) -> None:
        session.add(
            RevokedToken(
                jti=claims["jti"],
                user_id=int(claims["sub"]),
                expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
                revoked_at=utcnow(),
            )
        )
        session.flush()

    def verify_access(self, session: Session, token: str) -> User:
        """The active user an access token (AstrID, Supabase or OIDC) stands for."""
        return self.verify_access_session(session, token)[0]

    def verify_access_session(self, session: Session, token: str) -> tuple[User, str | None]:
        """The user and the login session of an access token.

        The session is AstrID's token family (``fid``), a Supabase ``session_id`` or an OIDC
        ``sid``; None when the token names none.
        """
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token: {exc}") from exc
        if str(header.get("alg", "")).lower() == "none":
            raise AuthError("unsigned tokens (alg=none) are refused")
        iss = unverified.get("iss")
        if iss == ISSUER:
            claims = self._decode_local(token, "access")
            user = session.get(User, int(claims["sub"]))
        elif self.config.oidc_issuer and iss == self.config.oidc_issuer:
            claims = self._decode_oidc(token)
            user = self._external_user(session, f"{iss}|{claims['sub']}", claims)
        elif self.config.supabase_jwt_secret and unverified.get("aud") == "authenticated":
            claims = self._decode_supabase(token)
            user = self._external_user(session, f"supabase|{claims['sub']}", claims)
        else:
            raise AuthError(f"token issuer {iss!r} is not trusted")
        if user is None or not user.is_active:
            raise AuthError("user is unknown or deactivated")
        sid = claims.get("fid") or claims.get("session_id") or claims.get("sid")
        return user, str(sid)[:64] if isinstance(sid, str) and sid else None

    def _decode_supabase(self, token: str) -> dict[str, Any]:
        assert self.config.supabase_jwt_secret is not None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.config.supabase_jwt_secret,
                algorithms=["HS256"],
                audience="authenticated",
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token has expired") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid Supabase token: {exc}") from exc
        return claims

    def _decode_oidc(self, token: str) -> dict[str, Any]:
        assert self._jwks is not None
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"],
                audience=self.config.oidc_audience,
                issuer=self.config.oidc_issuer,
                options={
                    "require": ["exp", "sub", "iss"],
                    "verify_aud": self.config.oidc_audience is not None,
                },
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token has expired") from exc
        except jwt.PyJWKClientError as exc:
            raise AuthError(f"cannot get the issuer's signing key: {exc}") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid OIDC token: {exc}") from exc
        return claims

    def _external_user(self, session: Session, subject: str, claims: dict[str, Any]) -> User:
        user = session.scalar(select(User).where(User.external_subject == subject))
        if user is not None:
            return user
        if self.config.auto_provision_role is None:
            raise AuthError(f"external identity {subject!r} has no AstrID account")
        email = claims.get("email")
        base = str(email or claims.get("preferred_username") or subject)[:100]
        username = base
        while session.scalar(select(User.id).where(User.username == username)) is not None:
            username = f"{base}-{secrets.token_hex(3)}"
        return create_user(
            session,
            username,
            None,
            role=self.config.auto_provision_role,
            email=str(email) if email else None,
            external_subject=subject,
        )
