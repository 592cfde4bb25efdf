"""The curation API over HTTP on SQLite and PostgreSQL: scanning queue (orders, cursors,
filters, item shape), votes (contract, replace, undo, bulk), bad input as problems naming the
field, objects with light curves, comments with mentions, expert review, discoveries and the
taxonomy."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func, select

from astrid.domain.events import EventType
from astrid.store.tables import Comment, DetectionAnnotation, DomainEvent, Vote
from tests.api.conftest import Api
from tests.domain.curation_fixtures import add_detection

N = 60


def _seed(api: Api) -> dict[int, dict[str, float]]:
    rng = np.random.default_rng(5)
    out = {}
    with api.runtime.db.session() as s:
        for i in range(N):
            conf = float(rng.uniform(0, 1))
            det = add_detection(
                s,
                float(rng.uniform(150, 151)),
                float(rng.uniform(2, 3)),
                confidence=conf,
                snr=float(rng.uniform(3, 40)),
                mag=float(rng.uniform(17, 22)),
                mjd=60000.0 + i,
                source="alert" if i % 4 == 0 else "pipeline",
                cutout_keys={"science": "k1", "template": "k2", "difference": "k3"},
            )
            out[det.id] = {"score": conf, "snr": det.snr or 0.0, "ra": det.ra, "dec": det.dec}
        first = min(out)
        s.add(
            DetectionAnnotation(
                detection_id=first,
                kind="star",
                name="Gaia 1",
                separation_arcsec=0.4,
                mag=15.2,
                source="local",
            )
        )
    return out


def _walk(api: Api, role: str = "viewer", **params: Any) -> list[dict[str, Any]]:
    items, cursor = [], None
    while True:
        q = {**params, "limit": 7, **({"cursor": cursor} if cursor else {})}
        r = api.client.get("/api/v1/scanning/queue", params=q, headers=api.as_role(role))
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return items


def test_queue_orders_pages_and_filters(api: Api) -> None:
    seeded = _seed(api)
    by_score = _walk(api)
    assert len(by_score) == N and len({i["detection_id"] for i in by_score}) == N
    scores = [i["score"] for i in by_score]
    assert scores == sorted(scores, reverse=True)
    unsure = [abs(i["score"] - 0.5) for i in _walk(api, order="uncertainty")]
    assert unsure == sorted(unsure)
    ages = [i["detection_id"] for i in _walk(api, order="age")]
    assert ages == sorted(seeded, reverse=True)
    strong = _walk(api, min_snr=20, min_score=0.3)
    assert {i["detection_id"] for i in strong} == {
        k for k, v in seeded.items() if v["snr"] >= 20 and v["score"] >= 0.3
    }
    assert {i["source"] for i in _walk(api, source="alert")} == {"alert"}
    starred = _walk(api, annotation="star")
    assert [i["detection_id"] for i in starred] == [min(seeded)]
    assert len(_walk(api, no_annotation="star")) == N - 1
    cone = _walk(api, ra=150.5, dec=2.5, radius=0.3)
    near = {
        k
        for k, v in seeded.items()
        if np.degrees(
            np.arccos(
                np.clip(
                    np.sin(np.radians(2.5)) * np.sin(np.radians(v["dec"]))
                    + np.cos(np.radians(2.5))
                    * np.cos(np.radians(v["dec"]))
                    * np.cos(np.radians(v["ra"] - 150.5)),
                    -1,
                    1,
                )
            )
        )
        <= 0.3
    }
    assert {i["detection_id"] for i in cone} == near
    item = starred[0]
    assert item["cutouts"] == {
        "science": f"/api/v1/detections/{item['detection_id']}/cutouts/science",
        "reference": f"/api/v1/detections/{item['detection_id']}/cutouts/template",
        "difference": f"/api/v1/detections/{item['detection_id']}/cutouts/difference",
    }
    assert item["nearest_star"]["name"] == "Gaia 1"
    assert item["object"]["n_detections"] == 1 and item["my_vote"] is None
    assert set(item) >= {"score", "snr", "mag", "annotations", "votes", "state", "survey"}


def test_queue_bad_parameters_are_problems(api: Api) -> None:
    h = api.as_role("viewer")
    for params, field in (
        ({"order": "random"}, "query.order"),
        ({"ra": 10, "dec": 5}, "query.radius"),
        ({"cursor": "garbage"}, "query.cursor"),
        ({"radius": 200, "ra": 1, "dec": 1}, "query.radius"),
        ({"radius": 0, "ra": 1, "dec": 1}, "query.radius"),
    ):
        r = api.client.get("/api/v1/scanning/queue", params=params, headers=h)
        assert 400 <= r.status_code < 500, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert field in [e["field"] for e in r.json()["errors"]], r.text


def test_vote_contract_replace_undo_and_consensus(api: Api) -> None:
    _seed(api)
    det = _walk(api)[0]["detection_id"]
    url = f"/api/v1/detections/{det}/votes"
    cur, exp = api.as_role("curator"), api.as_role("expert")
    r = api.client.post(url, json={"label": "bogus", "comment": "<script>x</script>"}, headers=cur)
    assert r.status_code == 201, r.text
    first = r.json()["vote"]["id"]
    r = api.client.post(
        url, json={"label": "real", "classification": "transient/supernova"}, headers=cur
    )
    body = r.json()
    assert r.status_code == 201 and body["replaced_vote_id"] == first
    assert body["state"]["state"] == "awaiting" and not body["consensus_reached"]
    # The voter's queue no longer shows it; with include_voted it carries my_vote.
    assert det not in [i["detection_id"] for i in _walk(api, role="curator")]
    mine = [i for i in _walk(api, role="curator", include_voted=True) if i["detection_id"] == det]
    assert mine[0]["my_vote"]["label"] == "real"
    listed = api.client.get(url, headers=api.as_role("viewer")).json()
    assert [(v["username"], v["label"], v["classification"]) for v in listed["items"]] == [
        ("curator-user", "real", "transient/supernova")
    ]
    assert "created_at" in listed["items"][0]
    history = api.client.get(url, params={"history": True}, headers=api.as_role("viewer")).json()
    assert [v["state"] for v in history["items"]] == ["superseded", "active"]
    assert history["items"][0]["comment"] == "<script>x</script>"
    r = api.client.post(url, json={"label": "real"}, headers=exp)
    assert r.json()["consensus_reached"] and r.json()["state"]["state"] == "consensus_real"
    undo = api.client.delete(f"{url}/mine", headers=exp)
    assert undo.status_code == 200 and undo.json()["state"]["state"] == "awaiting"
    again = api.client.delete(f"{url}/mine", headers=exp)
    assert again.status_code == 409
    trail = api.client.get(f"/api/v1/detections/{det}/curation", headers=api.as_role("viewer"))
    assert [a["action"] for a in trail.json()["audit"]] == [
        "vote",
        "vote",
        "vote",
        "state",
        "undo",
        "state",
    ]


def test_bad_votes_are_problems_naming_the_field_and_store_nothing(api: Api) -> None:
    _seed(api)
    cur = api.as_role("curator")
    url = "/api/v1/detections/1/votes"
    cases = [
        ({"label": "maybe"}, 422, "body.label"),
        ({"label": "real", "classification": "transient/dragon"}, 422, "body.classification"),
        ({"label": "real", "comment": "x" * 1_000_000}, 422, "body.comment"),
        ({"label": "real", "probability": 2}, 422, "body.probability"),
        ({"label": "real", "extra": 1}, 422, "body.extra"),
    ]
    for body, status, field in cases:
        r = api.client.post(url, json=body, headers=cur)
        assert r.status_code == status, r.text
        assert field in [e["field"] for e in r.json()["errors"]], r.text
    r = api.client.post("/api/v1/detections/999999/votes", json={"label": "real"}, headers=cur)
    assert r.status_code == 404 and "999999" in r.json()["detail"]
    with api.runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Vote)) == 0


def test_bulk_votes_one_bad_id_never_stops_the_rest(api: Api) -> None:
    seeded = _seed(api)
    ids = sorted(seeded)[:3]
    r = api.client.post(
        "/api/v1/votes/bulk",
        json={
            "detection_ids": [*ids, 999999],
            "label": "bogus",
            "classification": "artefact/cosmic ray",
        },
        headers=api.as_role("curator"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["n_ok"], body["n_failed"]) == (3, 1)
    assert body["results"][-1] == {
        "detection_id": 999999,
        "ok": False,
        "status": 404,
        "error": "no detection with id 999999",
    }
    bad = api.client.post(
        "/api/v1/votes/bulk",
        json={"detection_ids": ids, "label": "bogus", "classification": "nope"},
        headers=api.as_role("curator"),
    ).json()
    assert bad["n_ok"] == 0 and all(res["status"] == 422 for res in bad["results"])


def test_objects_comments_reviews_discoveries_and_taxonomy(api: Api) -> None:
    seeded = _seed(api)
    det = min(seeded)
    objects = api.client.get(
        "/api/v1/objects", params={"limit": 100}, headers=api.as_role("viewer")
    ).json()
    assert len(objects["items"]) == N
    obj = next(o for o in objects["items"] if abs(o["ra"] - seeded[det]["ra"]) < 1e-9)
    cone = api.client.get(
        "/api/v1/objects",
        params={"ra": obj["ra"], "dec": obj["dec"], "radius": 1e-4},
        headers=api.as_role("viewer"),
    ).json()
    assert [o["id"] for o in cone["items"]] == [obj["id"]]
    detail = api.client.get(f"/api/v1/objects/{obj['id']}", headers=api.as_role("viewer"))
    assert detail.status_code == 200, detail.text
    d = detail.json()
    assert d["detections"][0]["detection_id"] == det
    assert [p["kind"] for p in d["light_curve"]] == ["detection"]
    assert d["annotations"][0]["name"] == "Gaia 1"

    # Comments: plain text kept as typed, @mentions of existing users only.
    text = "<img src=x onerror=alert(1)> ask @expert-user and @nobody"
    r = api.client.post(
        f"/api/v1/objects/{obj['id']}/comments", json={"body": text}, headers=api.as_role("curator")
    )
    assert r.status_code == 201, r.text
    assert r.json()["body"] == text and r.json()["mentions"] == ["expert-user"]
    listed = api.client.get(
        f"/api/v1/objects/{obj['id']}/comments", headers=api.as_role("viewer")
    ).json()
    assert listed["items"][0]["body"] == text
    huge = api.client.post(
        f"/api/v1/detections/{det}/comments",
        json={"body": "y" * 1_000_000},
        headers=api.as_role("curator"),
    )
    assert huge.status_code == 422 and huge.json()["errors"][0]["field"] == "body.body"
    with api.runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Comment)) == 1
        mention = s.scalars(
            select(DomainEvent).where(DomainEvent.event_type == EventType.USER_MENTIONED.value)
        ).one()
        assert mention.payload["mentioned_username"] == "expert-user"

    # Disagreement → expert queue → expert review.
    url = f"/api/v1/detections/{det}/votes"
    api.client.post(url, json={"label": "real"}, headers=api.as_role("curator"))
    with api.runtime.db.session() as s:  # a second curator, by the domain
        from astrid.domain.curation_audit import Actor
        from astrid.domain.votes import cast_vote
        from astrid.store.tables import User

        other = User(username="second", role="curator")
        s.add(other)
        s.flush()
        cast_vote(s, det, Actor(other.id, "second", "curator"), "bogus")
    queue = api.client.get("/api/v1/review/queue", headers=api.as_role("expert")).json()
    assert [q["detection_id"] for q in queue["detections"]] == [det]
    high = {k for k, v in seeded.items() if v["score"] >= 0.95}
    assert high and len(queue["objects"]) == len(high)
    assert all(o["max_confidence"] >= 0.95 for o in queue["objects"])
    top = queue["objects"][0]["id"]
    api.client.post(
        f"/api/v1/objects/{top}/reviews", json={"verdict": "dispute"}, headers=api.as_role("expert")
    )
    queue = api.client.get("/api/v1/review/queue", headers=api.as_role("expert")).json()
    assert top not in [o["id"] for o in queue["objects"]]
    assert _walk(api, role="expert", queue="expert_queue")[0]["detection_id"] == det
    r = api.client.post(
        f"/api/v1/detections/{det}/reviews",
        json={"verdict": "confirm", "importance": 7},
        headers=api.as_role("expert"),
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.importance"
    r = api.client.post(
        f"/api/v1/detections/{det}/reviews",
        json={"verdict": "confirm"},
        headers=api.as_role("expert"),
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.label"
    r = api.client.post(
        f"/api/v1/detections/{det}/reviews",
        json={
            "verdict": "dispute",
            "label": "real",
            "importance": 4,
            "classification": "transient/supernova/Ia",
            "notes": "SN-like",
        },
        headers=api.as_role("expert"),
    )
    assert r.status_code == 201, r.text
    r = api.client.post(
        f"/api/v1/objects/{obj['id']}/reviews",
        json={"verdict": "confirm", "importance": 5},
        headers=api.as_role("expert"),
    )
    assert r.status_code == 201
    assert (
        api.client.get("/api/v1/review/queue", headers=api.as_role("expert")).json()["detections"]
        == []
    )

    # Discoveries.
    r = api.client.post(
        f"/api/v1/objects/{obj['id']}/discovery",
        json={"name": "AT 2026abc"},
        headers=api.as_role("expert"),
    )
    assert r.status_code == 201, r.text
    disc = r.json()["id"]
    dup = api.client.post(
        f"/api/v1/objects/{obj['id']}/discovery", json={}, headers=api.as_role("expert")
    )
    assert dup.status_code == 409
    for status in ("follow_up_requested", "confirmed", "reported"):
        r = api.client.patch(
            f"/api/v1/discoveries/{disc}", json={"status": status}, headers=api.as_role("expert")
        )
        assert r.status_code == 200, r.text
    back = api.client.patch(
        f"/api/v1/discoveries/{disc}", json={"status": "new"}, headers=api.as_role("expert")
    )
    assert back.status_code == 409
    hist = api.client.get(f"/api/v1/discoveries/{disc}", headers=api.as_role("viewer")).json()
    assert [h["to"] for h in hist["history"]] == [
        "new",
        "follow_up_requested",
        "confirmed",
        "reported",
    ]
    assert (
        api.client.get(
            "/api/v1/discoveries", params={"status": "reported"}, headers=api.as_role("viewer")
        ).json()["items"][0]["id"]
        == disc
    )

    # Taxonomy: read by all, new version by admins; old paths stop validating.
    tax = api.client.get("/api/v1/taxonomy", headers=api.as_role("viewer")).json()
    assert tax["version"] == 1 and "artefact/cosmic ray" in tax["paths"]
    bad = api.client.put(
        "/api/v1/taxonomy", json={"tree": {"a/b": {}}}, headers=api.as_role("admin")
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.tree"
    r = api.client.put(
        "/api/v1/taxonomy",
        json={"tree": {"real": {"SN": {}}, "bogus": {}}},
        headers=api.as_role("admin"),
    )
    assert r.status_code == 200 and r.json()["version"] == 2
    v1 = api.client.get("/api/v1/taxonomy/versions/1", headers=api.as_role("viewer")).json()
    assert "transient/supernova/Ia" in v1["paths"]
    r = api.client.post(
        f"/api/v1/detections/{max(seeded)}/votes",
        json={"label": "real", "classification": "transient"},
        headers=api.as_role("curator"),
    )
    assert r.status_code == 422
    r = api.client.post(
        f"/api/v1/detections/{max(seeded)}/votes",
        json={"label": "real", "classification": "real/sn"},
        headers=api.as_role("curator"),
    )
    assert r.status_code == 201 and r.json()["vote"]["classification"] == "real/SN"
    rule = api.client.put(
        "/api/v1/curation/rule",
        json={"agreeing": 3, "expert_decides": False},
        headers=api.as_role("admin"),
    )
    assert rule.json() == {"agreeing": 3, "expert_decides": False}
    assert api.client.get("/api/v1/curation/rule", headers=api.as_role("viewer")).json() == {
        "agreeing": 3,
        "expert_decides": False,
    }


def test_escalation_sends_a_detection_to_the_experts_until_one_decides(api: Api) -> None:
    _seed(api)
    det = _walk(api)[0]["detection_id"]
    cur, exp = api.as_role("curator"), api.as_role("expert")
    url = f"/api/v1/detections/{det}/escalate"
    assert api.client.post(url, headers=api.as_role("viewer")).status_code == 403
    r = api.client.post(url, json={"reason": "odd <b>shape</b>"}, headers=cur)
    assert r.status_code == 200, r.text
    assert r.json()["state"]["state"] == "expert_queue"
    assert r.json()["state"]["reason"] == "escalated by curator-user: odd <b>shape</b>"
    assert api.client.post(url, headers=cur).json()["state"]["state"] == "expert_queue"
    queue = api.client.get("/api/v1/review/queue", headers=exp).json()
    assert det in [i["detection_id"] for i in queue["detections"]]
    # A curator's vote does not take it back from the experts ...
    vote = api.client.post(f"/api/v1/detections/{det}/votes", json={"label": "real"}, headers=cur)
    assert vote.json()["state"]["state"] == "expert_queue"
    # ... an expert's decides it, and the audit keeps both moves.
    vote = api.client.post(f"/api/v1/detections/{det}/votes", json={"label": "real"}, headers=exp)
    assert vote.json()["state"]["state"] != "expert_queue"
    audit = api.client.get(f"/api/v1/detections/{det}/curation", headers=cur).json()
    moves = [a["after"].get("state") for a in audit["audit"] if a["action"] == "state"]
    assert moves[0] == "expert_queue" and moves[-1] == vote.json()["state"]["state"]
    conflict = api.client.post(url, headers=cur)
    assert conflict.status_code == 409 and "already decided" in conflict.json()["detail"]
    missing = api.client.post("/api/v1/detections/999999/escalate", headers=cur)
    assert missing.status_code == 404
