"""Every route × every role: the policy each route declares is the one enforced.

Routes are enumerated from the app itself, so a new route without a policy fails here, and
a route that becomes public must be added to PUBLIC_ROUTES on purpose.
"""

from __future__ import annotations

import re

from astrid.api.app import api_routes
from astrid.api.auth import role_rank
from tests.api.conftest import Api

PUBLIC_ROUTES = {
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/notify/unsubscribe"),  # signed token in the link of every message
    ("POST", "/api/v1/notify/unsubscribe"),  # RFC 8058 one-click
}
# The curation routes (issue 11): each must exist, so the matrix below checks every one.
CURATION_ROUTES = {
    ("GET", "/api/v1/scanning/queue"),
    ("POST", "/api/v1/detections/{detection_id}/votes"),
    ("GET", "/api/v1/detections/{detection_id}/votes"),
    ("DELETE", "/api/v1/detections/{detection_id}/votes/mine"),
    ("POST", "/api/v1/detections/{detection_id}/escalate"),
    ("POST", "/api/v1/votes/bulk"),
    ("GET", "/api/v1/detections/{detection_id}/curation"),
    ("GET", "/api/v1/curation/rule"),
    ("PUT", "/api/v1/curation/rule"),
    ("GET", "/api/v1/objects"),
    ("GET", "/api/v1/objects/{object_id}"),
    ("GET", "/api/v1/objects/{object_id}/light-curve"),
    ("GET", "/api/v1/detections/{detection_id}/comments"),
    ("POST", "/api/v1/detections/{detection_id}/comments"),
    ("GET", "/api/v1/objects/{object_id}/comments"),
    ("POST", "/api/v1/objects/{object_id}/comments"),
    ("GET", "/api/v1/review/queue"),
    ("POST", "/api/v1/detections/{detection_id}/reviews"),
    ("POST", "/api/v1/objects/{object_id}/reviews"),
    ("GET", "/api/v1/discoveries"),
    ("GET", "/api/v1/discoveries/{discovery_id}"),
    ("POST", "/api/v1/objects/{object_id}/discovery"),
    ("PATCH", "/api/v1/discoveries/{discovery_id}"),
    ("GET", "/api/v1/taxonomy"),
    ("GET", "/api/v1/taxonomy/versions/{version}"),
    ("PUT", "/api/v1/taxonomy"),
    ("POST", "/api/v1/objects/{object_id}/crossmatch"),
    ("POST", "/api/v1/objects/{object_id}/merge"),
    ("POST", "/api/v1/discoveries/{discovery_id}/tns-report"),
    ("DELETE", "/api/v1/votes/mine/last"),
}
# The operations routes (issue 12, workers and diagnostics): each must exist too.
OPS_ROUTES = {
    ("GET", "/api/v1/workers"),
    ("GET", "/api/v1/queues"),
    ("POST", "/api/v1/queues/{name}/pause"),
    ("POST", "/api/v1/queues/{name}/resume"),
    ("POST", "/api/v1/queues/{name}/purge"),
    ("POST", "/api/v1/failures/retry"),
    ("GET", "/api/v1/diagnostics/checks"),
    ("POST", "/api/v1/diagnostics/run"),
}
CALLERS = (None, "viewer", "curator", "expert", "admin", "admin-readonly-key")


def _url(path: str) -> str:
    # Ids that exist nowhere, so that allowed calls change nothing (404/422, never 401/403).
    url = re.sub(r"\{[a-z_]*id\}", "999999", path)
    url = url.replace("{kind}", "science").replace("{name}", "no-such-model")
    url = url.replace("{version}", "1")
    assert "{" not in url, f"fill in the path parameter of {path}"
    if url.endswith("/stream/events"):
        url += "?duration=0.05"
    return url


def test_every_route_declares_exactly_one_policy_and_enforces_it(api: Api) -> None:
    routes = api_routes(api.app)
    assert len(routes) >= 25
    missing = [r.path for r in routes if len(r.policies) != 1]
    assert not missing, f"routes without exactly one access policy: {missing}"

    # An admin's read-only API key: reads like an admin, cannot write.
    created = api.client.post(
        "/api/v1/auth/api-keys",
        json={"name": "matrix", "scopes": ["read"]},
        headers=api.as_role("admin"),
    )
    assert created.status_code == 201
    read_key = {"X-API-Key": created.json()["key"]}

    served = {(m, r.path) for r in routes for m in r.methods}
    assert served >= CURATION_ROUTES, sorted(CURATION_ROUTES - served)
    assert served >= OPS_ROUTES, sorted(OPS_ROUTES - served)
    policy_of = {(m, r.path): r.policies[0] for r in routes for m in r.methods}
    for method, path in OPS_ROUTES:  # reading for viewers, every action for admins
        assert policy_of[(method, path)].role == ("viewer" if method == "GET" else "admin")

    public_seen = set()
    checked = 0
    for route in routes:
        policy = route.policies[0]
        for method in sorted(route.methods - {"HEAD"}):
            if policy.role is None:
                public_seen.add((method, route.path))
            for caller in CALLERS:
                headers = read_key if caller == "admin-readonly-key" else api.as_role(caller)
                role = "admin" if caller == "admin-readonly-key" else caller
                response = api.client.request(method, _url(route.path), headers=headers)
                status = response.status_code
                where = f"{method} {route.path} as {caller}: {status} {response.text[:200]}"
                assert status < 500, where
                if policy.role is None:
                    assert status not in (401, 403), where
                elif role is None:
                    assert status == 401, where
                    assert response.headers["content-type"] == "application/problem+json"
                elif role_rank(role) < role_rank(policy.role) or (
                    caller == "admin-readonly-key" and policy.scope == "write"
                ):
                    assert status == 403, where
                else:
                    assert status not in (401, 403), where
                checked += 1
    assert public_seen == PUBLIC_ROUTES
    # Every operation was tried by every caller.
    n_ops = sum(len(r.methods - {"HEAD"}) for r in routes)
    assert checked == n_ops * len(CALLERS)
    print(f"route x role matrix: {n_ops} operations x {len(CALLERS)} callers = {checked} checks")


READ_ONLY_POSTS = {  # check or score input, store nothing
    ("POST", "/api/v1/observations/validate"),
    ("POST", "/api/v1/models/{name}/predict"),
}


def test_unsafe_methods_need_the_write_scope(api: Api) -> None:
    """Keys stay least-privilege: GET needs 'read', anything that changes state 'write'."""
    for route in api_routes(api.app):
        policy = route.policies[0]
        if policy.role is None:
            continue
        for method in route.methods - {"HEAD"}:
            safe = method == "GET" or (method, route.path) in READ_ONLY_POSTS
            assert policy.scope == ("read" if safe else "write"), f"{method} {route.path}"
