"""Undo within the scanning session (SQLite and PostgreSQL): a vote belongs to the login
session that cast it (the refresh-token family, kept across refreshes); ``DELETE
/votes/mine/last`` walks back this session's votes, newest first; a vote of an earlier login
cannot be undone (a 409 saying why), through either undo route; API keys are a session of
their own."""

from __future__ import annotations

from sqlalchemy import select

from astrid.store.tables import Vote
from tests.api.conftest import PASSWORD, Api
from tests.domain.curation_fixtures import add_detection


def _login(api: Api, username: str = "curator-user") -> dict[str, str]:
    r = api.client.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()


def _bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _vote(api: Api, det: int, headers: dict[str, str], label: str = "real") -> int:
    r = api.client.post(f"/api/v1/detections/{det}/votes", json={"label": label}, headers=headers)
    assert r.status_code == 201, r.text
    return int(r.json()["vote"]["id"])


def test_undo_is_limited_to_the_login_session(api: Api) -> None:
    with api.runtime.db.session() as s:
        dets = [add_detection(s, 150.0 + i * 0.01, 2.0, confidence=0.5).id for i in range(4)]
    first = _login(api)
    old_vote = _vote(api, dets[0], _bearer(first))
    # A client cannot claim another session: the body's session_id is ignored for JWTs.
    r = api.client.post(
        f"/api/v1/detections/{dets[3]}/votes",
        json={"label": "skip", "session_id": "forged"},
        headers=_bearer(first),
    )
    assert r.status_code == 201
    # Log in again (a new login session); the refreshed token stays in it.
    second = _login(api)
    refreshed = api.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    ).json()
    h2 = _bearer(refreshed)
    a = _vote(api, dets[1], _bearer(second))
    b = _vote(api, dets[2], h2, "bogus")
    with api.runtime.db.session() as s:
        sessions = dict(s.execute(select(Vote.id, Vote.session_id)).all())
    assert sessions[a] == sessions[b] != sessions[old_vote]
    assert "forged" not in sessions.values()
    # u, u: this session's votes, newest first.
    u1 = api.client.delete("/api/v1/votes/mine/last", headers=h2)
    assert u1.status_code == 200, u1.text
    assert (u1.json()["detection_id"], u1.json()["vote"]["id"]) == (dets[2], b)
    assert u1.json()["vote"]["state"] == "undone"
    u2 = api.client.delete("/api/v1/votes/mine/last", headers=_bearer(second))
    assert u2.json()["detection_id"] == dets[1]
    # Nothing of this session is left; the earlier session's vote stays.
    u3 = api.client.delete("/api/v1/votes/mine/last", headers=h2)
    assert u3.status_code == 409
    assert u3.headers["content-type"] == "application/problem+json"
    assert "earlier sessions cannot be undone" in u3.json()["detail"]
    by_id = api.client.delete(f"/api/v1/detections/{dets[0]}/votes/mine", headers=h2)
    assert by_id.status_code == 409
    assert "earlier session" in by_id.json()["detail"]
    # The first login still holds its session: there it can be undone (by id).
    mine = api.client.delete(f"/api/v1/detections/{dets[0]}/votes/mine", headers=_bearer(first))
    assert mine.status_code == 200 and mine.json()["vote"]["id"] == old_vote
    listed = api.client.get(
        f"/api/v1/detections/{dets[0]}/votes", headers=api.as_role("viewer")
    ).json()
    assert listed["items"] == []
    trail = api.client.get(
        f"/api/v1/detections/{dets[2]}/curation", headers=api.as_role("viewer")
    ).json()
    assert [t["action"] for t in trail["audit"]] == ["vote", "undo"]


def test_an_api_key_is_a_session_of_its_own(api: Api) -> None:
    with api.runtime.db.session() as s:
        det = add_detection(s, 10.0, 10.0, confidence=0.5).id
    key = api.client.post(
        "/api/v1/auth/api-keys",
        json={"name": "script", "scopes": ["read", "write"]},
        headers=_bearer(_login(api)),
    ).json()["key"]
    h = {"X-API-Key": key}
    _vote(api, det, h)
    assert api.client.delete(f"/api/v1/detections/{det}/votes/mine", headers=h).status_code == 200
    # A script may name its sessions; the last vote of another named session stays.
    r = api.client.post(
        f"/api/v1/detections/{det}/votes",
        json={"label": "real", "session_id": "night-1"},
        headers=h,
    )
    assert r.status_code == 201
    assert api.client.delete("/api/v1/votes/mine/last", headers=h).status_code == 409
