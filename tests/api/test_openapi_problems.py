"""The OpenAPI document lists the problem+json answers that routes really give.

First the document: every error response of every operation is problem+json with the shared
``Problem`` schema; protected routes list 401/403, data routes 503. Then real requests that
fail in each way, each checked against what the document says of its operation.
"""

from __future__ import annotations

import json
from typing import Any

from tests.api.conftest import Api

PROBLEM = "application/problem+json"
PUBLIC = {
    "/api/v1/auth/token",
    "/api/v1/auth/refresh",
    "/api/v1/auth/logout",
    "/api/v1/notify/unsubscribe",  # the signed token in the link is the credential
}


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(p, m, op) for p, ops in doc["paths"].items() for m, op in ops.items()]


def test_every_error_response_is_documented_as_problem_json(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    assert "HTTPValidationError" not in json.dumps(doc)  # FastAPI's 422 body is never sent
    assert doc["components"]["schemas"]["Problem"]["required"] == [
        "type",
        "title",
        "status",
        "detail",
    ]
    for path, method, op in _operations(doc):
        codes = {int(c) for c in op["responses"] if c.isdigit()}
        for code in codes - set(range(100, 400)):
            content = op["responses"][str(code)]["content"]
            assert list(content) == [PROBLEM], (path, method, code)
        if path.startswith("/api/v1/"):
            assert {500, 503} <= codes, (path, method)
        if path.startswith("/api/v1/") and path not in PUBLIC:
            assert {401, 403} <= codes, (path, method)
        if "{" in path:
            assert 404 in codes, (path, method)


CASES = [
    # (method, template, concrete path, role, keyword arguments of the request)
    ("get", "/api/v1/observations", "/api/v1/observations", None, {}),
    ("get", "/api/v1/observations", "/api/v1/observations?limit=0", "viewer", {}),
    ("get", "/api/v1/detections/{detection_id}", "/api/v1/detections/999999", "viewer", {}),
    ("get", "/api/v1/candidates/{candidate_id}", "/api/v1/candidates/999999", "viewer", {}),
    ("get", "/api/v1/users", "/api/v1/users", "viewer", {}),
    # an empty catalog has nothing to export: 409 (once undocumented; schemathesis found it)
    ("get", "/api/v1/catalog/export", "/api/v1/catalog/export", "viewer", {}),
    (
        "put",
        "/api/v1/observations/{observation_id}/status",
        "/api/v1/observations/999999/status",
        "curator",
        {"json": {"status": "failed"}},
    ),
    (
        "put",
        "/api/v1/observations/{observation_id}/status",
        "/api/v1/observations/1/status",
        "viewer",
        {"json": {"status": "failed"}},
    ),
    ("post", "/api/v1/auth/token", "/api/v1/auth/token", None, {"data": {"username": "x"}}),
    (
        "post",
        "/api/v1/auth/token",
        "/api/v1/auth/token",
        None,
        {"data": {"username": "nobody", "password": "wrong"}},
    ),
    (
        "post",
        "/api/v1/auth/refresh",
        "/api/v1/auth/refresh",
        None,
        {"json": {"refresh_token": "not-a-token"}},
    ),
    ("post", "/api/v1/pipeline/runs", "/api/v1/pipeline/runs", "curator", {"json": {}}),
]


def test_errors_that_routes_really_return_are_documented(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    seen = set()
    for method, template, path, role, kwargs in CASES:
        response = api.client.request(method, path, headers=api.as_role(role), **kwargs)
        status = response.status_code
        assert status >= 400, (path, status)
        assert response.headers["content-type"] == PROBLEM, (path, status)
        documented = doc["paths"][template][method]["responses"]
        assert str(status) in documented, f"{method.upper()} {template} answered {status}"
        seen.add(status)
    assert seen >= {401, 403, 404, 409, 422}
