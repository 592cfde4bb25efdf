"""The per-process cache of verified credentials (``ApiConfig.auth_cache_s``): what it
remembers, for how long, and what clears it at once; plus the read-only sessions and the
idle-only pre-ping the request path uses (real PostgreSQL where it matters)."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest
from sqlalchemy import text

from astrid.api.auth import AuthCache, Principal
from astrid.store.db import Database, PoolSettings
from astrid.store.tables import User
from tests.api.conftest import Api

ME = "/api/v1/auth/me"
P = Principal(7, "u", "viewer", "jwt")


def test_cache_remembers_until_ttl_or_credential_expiry() -> None:
    now = [1000.0]
    cache = AuthCache(ttl_s=10, clock=lambda: now[0])
    cache.put("tok", P, expires_at=None)
    assert cache.get("tok") == P and cache.get("other") is None
    now[0] += 9.9
    assert cache.get("tok") == P
    now[0] += 0.2
    assert cache.get("tok") is None  # past the TTL
    cache.put("expired", P, expires_at=time.time() - 1)  # already expired: never stored
    assert cache.get("expired") is None
    cache.put("short", P, expires_at=time.time() + 2)  # lives as long as the token, not 10 s
    now[0] += 2.5
    assert cache.get("short") is None
    cache.put("a", P, None)
    cache.clear()
    assert cache.get("a") is None
    off = AuthCache(ttl_s=0)
    off.put("tok", P, None)
    assert off.get("tok") is None


def test_cache_is_bounded() -> None:
    cache = AuthCache(ttl_s=60, max_entries=3)
    for i in range(3):
        cache.put(f"t{i}", P, None)
    cache.put("t3", P, None)  # full: emptied, then the new one kept
    assert [cache.get(f"t{i}") for i in range(4)] == [None, None, None, P]


def _deactivate(api: Api, role: str, active: bool = False) -> None:
    with api.runtime.db.session() as s:
        user = s.get(User, api.user_ids[role])
        assert user is not None
        user.is_active = active


def test_a_remembered_token_skips_the_user_lookup_within_the_ttl(
    make_api: Callable[..., Api],
) -> None:
    """Deactivated behind the API's back (another process): refused after the TTL only;
    with the cache off, at once."""
    api = make_api(auth_cache_s=300)
    viewer = api.as_role("viewer")
    assert api.client.get(ME, headers=viewer).status_code == 200
    _deactivate(api, "viewer")
    assert api.client.get(ME, headers=viewer).status_code == 200  # remembered
    api.app.state.auth_cache.clear()
    assert api.client.get(ME, headers=viewer).status_code == 401
    _deactivate(api, "viewer", active=True)
    off = make_api(auth_cache_s=0)
    assert off.client.get(ME, headers=viewer).status_code == 200
    _deactivate(off, "viewer")
    assert off.client.get(ME, headers=viewer).status_code == 401


def test_role_change_through_the_api_applies_to_the_next_request(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(auth_cache_s=300)
    viewer, admin = api.as_role("viewer"), api.as_role("admin")
    vote = "/api/v1/detections/1/votes"
    assert api.client.post(vote, json={"label": "real"}, headers=viewer).status_code == 403
    uid = api.user_ids["viewer"]
    changed = api.client.put(f"/api/v1/users/{uid}/role", json={"role": "curator"}, headers=admin)
    assert changed.status_code == 200
    assert api.client.get(ME, headers=viewer).json()["role"] == "curator"
    # a curator now: past the role check (404: no detection 1 in this database)
    assert api.client.post(vote, json={"label": "real"}, headers=viewer).status_code == 404


@pytest.mark.postgres
def test_read_session_is_autocommit_and_session_is_a_transaction(postgres_url: str) -> None:
    db = Database(postgres_url)
    try:
        with db.read_session() as s:
            assert s.connection().connection.dbapi_connection.autocommit is True  # type: ignore[union-attr]
            assert s.scalar(text("select 1")) == 1
        with db.session() as s:
            assert s.connection().connection.dbapi_connection.autocommit is False  # type: ignore[union-attr]
    finally:
        db.dispose()


@pytest.mark.postgres
def test_idle_ping_replaces_a_connection_the_server_dropped(postgres_url: str) -> None:
    """A pooled connection killed on the server while idle is pinged and replaced: the next
    session works (no error reaches the caller)."""
    db = Database(postgres_url, PoolSettings(size=1, max_overflow=0, ping_idle_s=0.2))
    try:
        with db.read_session() as s:
            pid = s.scalar(text("select pg_backend_pid()"))
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("select pg_terminate_backend(%s)", (pid,))
        time.sleep(0.4)  # idle past ping_idle_s
        with db.read_session() as s:
            assert s.scalar(text("select pg_backend_pid()")) != pid
    finally:
        db.dispose()
