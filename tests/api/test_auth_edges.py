"""Auth edge cases of the security probe: odd ``sub`` claims, refresh-token reuse revoking
its family, and conflicting credentials (each on SQLite and PostgreSQL)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest

from tests.api.conftest import PASSWORD, SECRET, Api

ME = "/api/v1/auth/me"
REFRESH = "/api/v1/auth/refresh"


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


def _signed(sub: Any, typ: str = "access") -> str:
    now = int(time.time())
    claims = {
        "iss": "astrid",
        "sub": sub,
        "typ": typ,
        "role": "admin",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.mark.parametrize("sub", ["admin", "1e3", "-1", "٣", "9" * 40, str(2**31), " 1", "0x1"])
def test_signed_token_with_a_bad_sub_is_401(api: Api, sub: str) -> None:
    for typ, call in [
        ("access", lambda t: api.client.get(ME, headers={"Authorization": f"Bearer {t}"})),
        ("refresh", lambda t: api.client.post(REFRESH, json={"refresh_token": t})),
    ]:
        body = _problem(call(_signed(sub, typ)), 401)
        assert "sub" in body["detail"], body


def test_a_good_numeric_sub_still_works(api: Api) -> None:
    token = _signed(str(api.user_ids["viewer"]))
    assert api.client.get(ME, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def _login(api: Api) -> dict[str, str]:
    response = api.client.post(
        "/api/v1/auth/token", data={"username": "curator-user", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_refresh_token_reuse_revokes_the_whole_family(api: Api) -> None:
    first = _login(api)
    other_login = _login(api)  # another family of the same user: untouched
    second = api.client.post(REFRESH, json={"refresh_token": first["refresh_token"]}).json()
    third = api.client.post(REFRESH, json={"refresh_token": second["refresh_token"]}).json()
    # The thief replays the first token: refused, and the family dies with it.
    replay = api.client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert "family" in _problem(replay, 401)["detail"]
    dead = api.client.post(REFRESH, json={"refresh_token": third["refresh_token"]})
    assert "family" in _problem(dead, 401)["detail"]
    assert api.client.post(REFRESH, json={"refresh_token": other_login["refresh_token"]}).is_success


def test_conflicting_credentials_are_refused(api: Api) -> None:
    h = api.as_role("curator")
    key = api.client.post("/api/v1/auth/api-keys", json={"name": "k"}, headers=h).json()["key"]
    forged = "Bearer " + _signed("1")[:-4] + "AAAA"
    for headers in [
        {"X-API-Key": key, "Authorization": forged},
        {"X-API-Key": key, **api.as_role("admin")},  # two valid credentials of two users
    ]:
        assert "conflicting" in _problem(api.client.get(ME, headers=headers), 401)["detail"]
    # The same key twice is one credential, not a conflict.
    same = {"X-API-Key": key, "Authorization": f"Bearer {key}"}
    assert api.client.get(ME, headers=same).status_code == 200
    assert api.client.get(ME, headers={"X-API-Key": key}).status_code == 200
