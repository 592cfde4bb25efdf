"""The OpenAPI document lists the problem+json answers each route really gives.

FastAPI documents only 200 and its own 422 schema; AstrID's handlers answer every failure as
RFC 9457 problem+json (:mod:`astrid.api.problems`). :func:`document_problems` adds, per
operation, the statuses its policy, parameters and body can produce, all as
``application/problem+json`` with one shared ``Problem`` schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI

from astrid.api.auth import Policy
from astrid.api.problems import DATABASE_RETRY_AFTER_S, PROBLEM_JSON

__all__ = ["PROBLEM_SCHEMA", "document_problems", "problem_statuses"]

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "Each offending field (``body.name``, ``query.ra``, ``file``).",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

_DESCRIPTIONS = {
    400: "The request is refused by a domain rule",
    401: "Missing, invalid, expired or conflicting credentials",
    403: "The caller's role or API-key scope is not enough",
    404: "No such resource",
    409: "Conflicts with the current state (duplicate, illegal status change)",
    413: "Request body too large",
    422: "Invalid input; ``errors`` names each field",
    429: "Rate limit exceeded (see Retry-After)",
    500: "Unexpected server error (no details leave the server)",
    503: f"A dependency (the database) is unavailable; Retry-After: {DATABASE_RETRY_AFTER_S} s",
}
_WRITES = {"post", "put", "patch", "delete"}
_AUTH_FORMS = ("/auth/token", "/auth/refresh", "/auth/logout")


def problem_statuses(
    path: str, method: str, operation: dict[str, Any], policy: Policy | None, api_prefix: str
) -> set[int]:
    """The error statuses one operation can answer (a superset the handlers guarantee)."""
    codes = {500}
    in_api = path.startswith(api_prefix)
    if in_api or path == "/health/ready":
        codes.add(503)
    has_input = bool(operation.get("parameters") or operation.get("requestBody"))
    if has_input:
        codes.add(422)
    if operation.get("requestBody"):
        codes.add(413)
    if in_api and has_input:
        codes.add(400)
    if "{" in path:
        codes.add(404)
    if in_api and method in _WRITES:
        codes.add(409)
    if policy is not None and policy.role is not None:
        codes |= {401, 403}
    if path.endswith(_AUTH_FORMS):
        codes.add(401)
    if policy is not None and policy.rate_limited:
        codes.add(429)
    return codes


def document_problems(app: FastAPI, routes: Iterable[Any], api_prefix: str = "/api/v1") -> None:
    """Wrap ``app.openapi`` so every operation documents its problem+json answers.

    ``routes`` are :class:`astrid.api.app.RouteInfo` (path, methods, policies).
    """
    policies = {
        (r.path, m.lower()): (r.policies[0] if r.policies else None)
        for r in routes
        for m in r.methods
    }
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = original()
        doc.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, operations in doc.get("paths", {}).items():
            for method, operation in operations.items():
                if (path, method) not in policies:
                    continue
                responses = operation.setdefault("responses", {})
                codes = problem_statuses(
                    path, method, operation, policies[(path, method)], api_prefix
                )
                codes |= {int(c) for c in responses if c.isdigit() and int(c) >= 400}
                for code in sorted(codes):
                    entry = responses.setdefault(str(code), {})
                    entry["description"] = entry.get("description") or _DESCRIPTIONS.get(
                        code, "Error"
                    )
                    if code == 422 and entry["description"] == "Validation Error":
                        entry["description"] = _DESCRIPTIONS[422]
                    entry["content"] = content
                    if code in (429, 503):
                        entry["headers"] = {
                            "Retry-After": {
                                "description": "Seconds to wait before retrying.",
                                "schema": {"type": "integer"},
                            }
                        }
        schemas = doc["components"]["schemas"]
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
