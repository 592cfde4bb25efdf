"""Login, token refresh/logout, the caller's own API keys, and user administration."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Request, Response
from sqlalchemy import select

from astrid.api.auth import PUBLIC, Principal
from astrid.api.deps import Admin, AdminWrite, Config, Rt, Viewer, ViewerWrite
from astrid.api.problems import Problem
from astrid.api.schemas import (
    NO_NUL,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    RefreshIn,
    RoleChange,
    TokenOut,
    UserCreate,
    UserOut,
)
from astrid.api.security import (
    AuthError,
    TokenPair,
    TokenReuseError,
    UserError,
    create_api_key,
    create_user,
    verify_password,
)
from astrid.store.tables import ApiKey, User, utcnow

__all__ = ["router"]

router = APIRouter(tags=["auth"])

Public = Annotated[Principal, Depends(PUBLIC)]


def _tokens(pair: TokenPair) -> TokenOut:
    return TokenOut(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        token_type=pair.token_type,
        expires_in=pair.expires_in,
    )


def _auth_problem(exc: AuthError) -> Problem:
    return Problem(401, str(exc), kind="not-authenticated", headers={"WWW-Authenticate": "Bearer"})


@router.post("/auth/token", response_model=TokenOut, summary="Log in with a password")
def login(
    request: Request,
    rt: Rt,
    _: Public,
    username: Annotated[str, Form(min_length=1, max_length=128, pattern=NO_NUL)],
    password: Annotated[str, Form(min_length=1, max_length=256)],
) -> TokenOut:
    """OAuth2 password flow: form fields ``username`` and ``password``.

    After repeated failures the account is blocked with exponential backoff (429 with
    Retry-After, whatever the password); too many logins at once: 503 with Retry-After.
    """
    guard = request.app.state.login_guard
    guard.check(rt.db, username)  # before any hashing: a blocked name costs no CPU
    with guard.hashing_slot(), rt.db.session() as session:
        user = session.scalar(select(User).where(User.username == username))
        valid = verify_password(user.password_hash if user else None, password)
        if user is not None and user.is_active and valid:
            user.last_login_at = utcnow()
            pair = request.app.state.tokens.issue(user)
        else:
            pair = None
    if pair is None:
        guard.failed(rt.db, username)
        raise Problem(
            401,
            "wrong username or password",
            kind="not-authenticated",
            headers={"WWW-Authenticate": "Bearer"},
        )
    guard.succeeded(rt.db, username)
    return _tokens(pair)


@router.post("/auth/refresh", response_model=TokenOut, summary="Rotate a refresh token")
def refresh(request: Request, rt: Rt, _: Public, body: RefreshIn) -> TokenOut:
    """Exchange a refresh token for a new pair; the presented one is revoked.

    Presenting a token again after it was rotated (or logged out) revokes its whole family:
    whoever holds the newer tokens of that login must log in again.
    """
    tokens = request.app.state.tokens
    try:
        with rt.db.session() as session:
            return _tokens(tokens.refresh(session, body.refresh_token))
    except TokenReuseError as exc:
        with rt.db.session() as session:  # the failed transaction was rolled back
            tokens.revoke_family(session, exc.claims)
        raise _auth_problem(exc) from exc
    except AuthError as exc:
        raise _auth_problem(exc) from exc


@router.post("/auth/logout", status_code=204, summary="Revoke a refresh token")
def logout(request: Request, rt: Rt, _: Public, body: RefreshIn) -> Response:
    try:
        with rt.db.session() as session:
            request.app.state.tokens.revoke_refresh(session, body.refresh_token)
    except AuthError as exc:
        raise _auth_problem(exc) from exc
    return Response(status_code=204)


@router.get("/auth/me", response_model=UserOut, summary="The caller's account")
def me(rt: Rt, principal: Viewer) -> Any:
    with rt.db.session() as session:
        return UserOut.model_validate(session.get(User, principal.user_id))


@router.get("/auth/api-keys", response_model=list[ApiKeyOut], summary="The caller's API keys")
def list_keys(rt: Rt, principal: Viewer) -> Any:
    with rt.db.session() as session:
        rows = session.scalars(
            select(ApiKey).where(ApiKey.user_id == principal.user_id).order_by(ApiKey.id)
        )
        return [ApiKeyOut.model_validate(r) for r in rows]


@router.post(
    "/auth/api-keys", response_model=ApiKeyCreated, status_code=201, summary="Create an API key"
)
def create_key(rt: Rt, config: Config, principal: ViewerWrite, body: ApiKeyCreate) -> Any:
    """The key is in the response once; only its prefix and digest are stored."""
    extra = set(body.scopes) - set(principal.scopes)
    if extra:
        raise Problem(
            403,
            f"an API key cannot grant scopes it lacks: {', '.join(sorted(extra))}",
            kind="forbidden",
        )
    with rt.db.session() as session:
        user = session.get(User, principal.user_id)
        assert user is not None
        try:
            row, key = create_api_key(
                session, config, user, body.name, list(body.scopes), body.expires_in_days
            )
        except UserError as exc:
            raise Problem(422, str(exc), kind="validation") from exc
        return ApiKeyCreated(**ApiKeyOut.model_validate(row).model_dump(), key=key)


@router.delete("/auth/api-keys/{key_id}", response_model=ApiKeyOut, summary="Revoke an API key")
def revoke_key(
    request: Request,
    rt: Rt,
    principal: ViewerWrite,
    key_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
) -> Any:
    """Revoke one of the caller's keys (admins: any key)."""
    with rt.db.session() as session:
        row = session.get(ApiKey, key_id)
        if row is None or (row.user_id != principal.user_id and principal.role != "admin"):
            raise Problem(404, f"no API key with id {key_id}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        out = ApiKeyOut.model_validate(row)
    request.app.state.auth_cache.clear()  # the key stops working now, not in auth_cache_s
    return out


# -- administration ----------------------------------------------------------------------


@router.get("/users", response_model=list[UserOut], summary="All users")
def list_users(rt: Rt, _: Admin) -> Any:
    with rt.db.session() as session:
        return [UserOut.model_validate(u) for u in session.scalars(select(User).order_by(User.id))]


@router.post("/users", response_model=UserOut, status_code=201, summary="Create a user")
def add_user(rt: Rt, _: AdminWrite, body: UserCreate) -> Any:
    try:
        with rt.db.session() as session:
            user = create_user(session, body.username, body.password, body.role, body.email)
            return UserOut.model_validate(user)
    except UserError as exc:
        raise Problem(
            409, str(exc), kind="conflict", errors=[{"field": "body.username", "message": str(exc)}]
        ) from exc


@router.put("/users/{user_id}/role", response_model=UserOut, summary="Change a user's role")
def change_role(
    request: Request,
    rt: Rt,
    _: AdminWrite,
    body: RoleChange,
    user_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
) -> Any:
    with rt.db.session() as session:
        user = session.get(User, user_id)
        if user is None:
            raise Problem(404, f"no user with id {user_id}")
        user.role = body.role
        out = UserOut.model_validate(user)
    request.app.state.auth_cache.clear()  # the new role applies to the next request
    return out
