"""Authentication for real: argon2 logins, JWT rotation and revocation, bad tokens, API keys,
Supabase (HS256) and OIDC (RS256 against a JWKS served over loopback HTTP), and the CLI."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select
from typer.testing import CliRunner

from astrid.api.security import hash_password, verify_password
from astrid.store.tables import ApiKey, User
from tests.api.conftest import PASSWORD, SECRET, Api

ME = "/api/v1/auth/me"


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


def test_argon2_hashes_verify_and_differ() -> None:
    h1, h2 = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert h1.startswith("$argon2id$") and h1 != h2
    assert verify_password(h1, "s3cret-pass") and not verify_password(h1, "s3cret-Pass")
    assert not verify_password(None, "anything")


def test_login_refresh_rotation_and_logout(api: Api) -> None:
    bad = api.client.post("/api/v1/auth/token", data={"username": "curator-user", "password": "x"})
    _problem(bad, 401)
    ok = api.client.post(
        "/api/v1/auth/token", data={"username": "curator-user", "password": PASSWORD}
    )
    assert ok.status_code == 200
    pair = ok.json()
    me = api.client.get(ME, headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.json()["username"] == "curator-user" and me.json()["role"] == "curator"
    # A refresh token is not an access token.
    _problem(api.client.get(ME, headers={"Authorization": f"Bearer {pair['refresh_token']}"}), 401)
    # Rotation: the new pair works, the used refresh token is dead.
    new = api.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert new.status_code == 200
    again = api.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert "revoked" in _problem(again, 401)["detail"]
    # Logout revokes the current refresh token.
    refresh = new.json()["refresh_token"]
    assert (
        api.client.post("/api/v1/auth/logout", json={"refresh_token": refresh}).status_code == 204
    )
    _problem(api.client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}), 401)


def _claims(user_id: int, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "astrid",
        "sub": str(user_id),
        "typ": "access",
        "iat": now,
        "exp": now + 60,
        "jti": "x" * 32,
        **extra,
    }


def test_expired_forged_and_unsigned_tokens_are_refused(api: Api) -> None:
    uid = api.user_ids["admin"]
    cases = {
        "expired": jwt.encode(_claims(uid, exp=int(time.time()) - 5), SECRET, algorithm="HS256"),
        "forged": jwt.encode(_claims(uid), "not-the-secret-key-at-all-000000", algorithm="HS256"),
        "alg-none": jwt.encode(_claims(uid), None, algorithm="none"),
        "garbage": "abc.def.ghi",
        "foreign-issuer": jwt.encode(_claims(uid, iss="evil"), SECRET, algorithm="HS256"),
    }
    details = {}
    for name, token in cases.items():
        r = api.client.get(ME, headers={"Authorization": f"Bearer {token}"})
        details[name] = _problem(r, 401)["detail"]
        assert r.headers["www-authenticate"] == "Bearer"
    assert "expired" in details["expired"]
    assert "signature" in details["forged"].lower()
    assert "alg=none" in details["alg-none"]
    assert "not trusted" in details["foreign-issuer"]
    good = jwt.encode(_claims(uid), SECRET, algorithm="HS256")
    assert api.client.get(ME, headers={"Authorization": f"Bearer {good}"}).status_code == 200


def test_api_keys_shown_once_hashed_scoped_revocable(api: Api) -> None:
    h = api.as_role("curator")
    made = api.client.post(
        "/api/v1/auth/api-keys", json={"name": "script", "scopes": ["read", "write"]}, headers=h
    )
    assert made.status_code == 201
    body = made.json()
    key, prefix = body["key"], body["prefix"]
    assert key.startswith(f"astrid_{prefix}_") and len(key) > 50
    with api.runtime.db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        assert row is not None and key not in row.key_hash and len(row.key_hash) == 64
        assert row.last_used_at is None
    listed = api.client.get("/api/v1/auth/api-keys", headers=h).json()
    assert [k["prefix"] for k in listed] == [prefix] and "key" not in listed[0]
    # The key works as X-API-Key and as a bearer; last-used is recorded.
    assert api.client.get(ME, headers={"X-API-Key": key}).json()["username"] == "curator-user"
    assert api.client.get(ME, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    with api.runtime.db.session() as s:
        assert s.scalar(select(ApiKey.last_used_at).where(ApiKey.prefix == prefix)) is not None
    # A tampered key with the right prefix is refused.
    _problem(api.client.get(ME, headers={"X-API-Key": key[:-2] + "zz"}), 401)
    # Read-only keys cannot write, and cannot mint write keys.
    ro = api.client.post("/api/v1/auth/api-keys", json={"name": "ro"}, headers=h).json()["key"]
    put = api.client.put(
        "/api/v1/observations/1/status", json={"status": "failed"}, headers={"X-API-Key": ro}
    )
    assert "scope" in _problem(put, 403)["detail"]
    # Revoked → 401.
    assert api.client.delete(f"/api/v1/auth/api-keys/{body['id']}", headers=h).status_code == 200
    assert "revoked" in _problem(api.client.get(ME, headers={"X-API-Key": key}), 401)["detail"]
    # Another user's key cannot be revoked by a non-admin (404, nothing changes).
    other = api.client.post(
        "/api/v1/auth/api-keys", json={"name": "v"}, headers=api.as_role("viewer")
    ).json()
    assert api.client.delete(f"/api/v1/auth/api-keys/{other['id']}", headers=h).status_code == 404


def test_expired_api_key_is_refused(api: Api) -> None:
    made = api.client.post(
        "/api/v1/auth/api-keys",
        json={"name": "short", "expires_in_days": 1},
        headers=api.as_role("viewer"),
    ).json()
    from datetime import UTC, datetime, timedelta

    with api.runtime.db.session() as s:
        row = s.get(ApiKey, made["id"])
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert (
        "expired" in _problem(api.client.get(ME, headers={"X-API-Key": made["key"]}), 401)["detail"]
    )


def test_admin_manages_users_and_roles(api: Api) -> None:
    admin = api.as_role("admin")
    created = api.client.post(
        "/api/v1/users", json={"username": "newbie", "password": "pw-long-enough"}, headers=admin
    )
    assert created.status_code == 201 and created.json()["role"] == "viewer"
    dup = api.client.post(
        "/api/v1/users", json={"username": "newbie", "password": "pw-long-enough"}, headers=admin
    )
    assert _problem(dup, 409)["errors"][0]["field"] == "body.username"
    uid = created.json()["id"]
    changed = api.client.put(f"/api/v1/users/{uid}/role", json={"role": "expert"}, headers=admin)
    assert changed.json()["role"] == "expert"
    bad = api.client.put(f"/api/v1/users/{uid}/role", json={"role": "god"}, headers=admin)
    assert _problem(bad, 422)["errors"][0]["field"] == "body.role"
    names = [u["username"] for u in api.client.get("/api/v1/users", headers=admin).json()]
    assert "newbie" in names


def test_supabase_tokens_map_to_local_users(make_api) -> None:
    api = make_api(supabase_jwt_secret="supabase-project-secret-0123456789")
    now = int(time.time())
    claims = {
        "sub": "5f1c-uuid",
        "aud": "authenticated",
        "email": "ana@example.org",
        "role": "authenticated",
        "iat": now,
        "exp": now + 60,
        "iss": "https://proj.supabase.co/auth/v1",
    }
    token = jwt.encode(claims, "supabase-project-secret-0123456789", algorithm="HS256")
    me = api.client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["username"] == "ana@example.org"
    assert me.json()["role"] == "viewer"
    # Same identity again: the same local user, not a new one.
    assert (
        api.client.get(ME, headers={"Authorization": f"Bearer {token}"}).json()["id"]
        == me.json()["id"]
    )
    wrong_secret = jwt.encode(claims, "another-secret-0123456789abcdef00", algorithm="HS256")
    _problem(api.client.get(ME, headers={"Authorization": f"Bearer {wrong_secret}"}), 401)


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, Any]]:
    """A real HTTP server on loopback publishing one RSA public key as a JWKS."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="test-kid", use="sig", alg="RS256")
    payload = json.dumps({"keys": [jwk]}).encode()
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", (key, hits)
    server.shutdown()
    server.server_close()


def test_oidc_tokens_verified_against_jwks_over_http(make_api, jwks_server) -> None:
    issuer, (key, hits) = jwks_server
    api = make_api(oidc_issuer=issuer, oidc_audience="astrid-api")
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": "oidc-user-1",
        "aud": "astrid-api",
        "iat": now,
        "exp": now + 60,
        "preferred_username": "bob",
    }
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "test-kid"})
    me = api.client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "bob"
    assert hits == ["/.well-known/jwks.json"]
    with api.runtime.db.session() as s:
        user = s.scalar(select(User).where(User.username == "bob"))
        assert user is not None and user.external_subject == f"{issuer}|oidc-user-1"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": "test-kid"})
    _problem(api.client.get(ME, headers={"Authorization": f"Bearer {forged}"}), 401)
    wrong_aud = jwt.encode(
        {**claims, "aud": "someone-else"}, key, algorithm="RS256", headers={"kid": "test-kid"}
    )
    assert (
        "audience"
        in _problem(api.client.get(ME, headers={"Authorization": f"Bearer {wrong_aud}"}), 401)[
            "detail"
        ].lower()
    )
    # HS256 signed with the public key (algorithm confusion) is refused.
    confused = jwt.encode(claims, "x" * 32, algorithm="HS256", headers={"kid": "test-kid"})
    _problem(api.client.get(ME, headers={"Authorization": f"Bearer {confused}"}), 401)


def test_cli_users_and_api_keys(migrated_url: str, monkeypatch, tmp_path) -> None:
    from astrid.cli import app
    from astrid.settings import get_settings

    monkeypatch.setenv("ASTRID_DATABASE_URL", migrated_url)
    monkeypatch.setenv("ASTRID_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        r = runner.invoke(
            app, ["users", "create", "carol", "--role", "curator", "--password", "long-password-1"]
        )
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["users", "set-role", "carol", "expert"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["users", "set-role", "carol", "emperor"])
        assert r.exit_code != 0
        r = runner.invoke(
            app, ["api-keys", "create", "carol", "--scope", "read", "--expires-days", "30"]
        )
        assert r.exit_code == 0, r.output
        key = r.output.strip().splitlines()[-1]
        prefix = key.split("_")[1]
        r = runner.invoke(app, ["api-keys", "revoke", prefix])
        assert r.exit_code == 0, r.output
    finally:
        get_settings.cache_clear()
    from astrid.store.db import Database

    db = Database(migrated_url)
    try:
        with db.session() as s:
            user = s.scalar(select(User).where(User.username == "carol"))
            assert user is not None and user.role == "expert"
            assert verify_password(user.password_hash, "long-password-1")
            row = s.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
            assert row is not None and row.revoked_at is not None and row.scopes == ["read"]
            assert row.expires_at is not None
    finally:
        db.dispose()
