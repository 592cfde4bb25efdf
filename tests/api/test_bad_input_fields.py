"""Hostile values refused as 4xx problems that name the field (SQLite and PostgreSQL):
a 5,000-digit integer, 100,000-deep JSON nesting, NUL characters in stored text, and a
600-character upload file name."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api


def _fields(response: Any, status: int = 422) -> list[str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    fields = [e["field"] for e in body.get("errors", [])]
    assert fields and fields[0] in body["detail"], body
    return fields


def test_a_5000_digit_integer_names_its_field(api: Api) -> None:
    huge = "9" * 5000
    response = api.client.post(
        "/api/v1/pipeline/runs",
        content=f'{{"observation_ids": [1, {huge}]}}',
        headers={**api.as_role("curator"), "Content-Type": "application/json"},
    )
    assert _fields(response) == ["body.observation_ids.1"]
    assert "5000 digits" in response.json()["errors"][0]["message"]


def test_deep_nesting_names_its_field(api: Api) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    response = api.client.put(
        "/api/v1/observations/1/status",
        content=f'{{"status": "failed", "reason": {deep}}}',
        headers={**api.as_role("curator"), "Content-Type": "application/json"},
    )
    [field] = _fields(response)
    assert field.startswith("body.reason")


@pytest.mark.parametrize(
    ("method", "path", "role", "body", "field"),
    [
        ("POST", "/api/v1/auth/api-keys", "viewer", {"name": "key\x00name"}, "body.name"),
        (
            "POST",
            "/api/v1/users",
            "admin",
            {"username": "eve\x00", "password": "long enough password"},
            "body.username",
        ),
        (
            "PUT",
            "/api/v1/observations/1/status",
            "curator",
            {"status": "failed", "reason": "bad\x00reason"},
            "body.reason",
        ),
    ],
)
def test_nul_characters_in_json_name_the_field(
    api: Api, method: str, path: str, role: str, body: dict[str, Any], field: str
) -> None:
    response = api.client.request(method, path, json=body, headers=api.as_role(role))
    assert field in _fields(response)


def test_nul_characters_in_forms_name_the_field(api: Api) -> None:
    login = api.client.post("/api/v1/auth/token", data={"username": "a\x00", "password": "x"})
    assert "body.username" in _fields(login)
    upload = api.client.post(
        "/api/v1/observations/ingest/upload",
        files={"file": ("x.fits", b"SIMPLE  =                    T", "application/fits")},
        data={"survey": "DECam\x00"},
        headers=api.as_role("curator"),
    )
    assert "body.survey" in _fields(upload)


def test_a_600_character_file_name_is_refused_naming_the_file(api: Api) -> None:
    name = "a" * 600 + ".fits"
    response = api.client.post(
        "/api/v1/observations/ingest/upload",
        files={"file": (name, b"SIMPLE  =                    T", "application/fits")},
        headers=api.as_role("curator"),
    )
    assert _fields(response) == ["file"]
    assert "255" in response.json()["errors"][0]["message"]
