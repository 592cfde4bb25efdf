"""The API while its database is down: 503 problem+json with Retry-After, then recovery.

PostgreSQL is reached through a loopback TCP proxy the test cuts and restores (new
connections refused, open ones reset); SQLite's folder is moved away and back (new
connections cannot open the file). No mocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from astrid.runtime import Runtime
from astrid.store.db import upgrade
from tests.api.conftest import PASSWORD, Api
from tests.tcp_proxy import TcpProxy

PROBLEM = "application/problem+json"


@dataclass
class Outage:
    url: str
    _cut: Callable[[], None]
    _restore: Callable[[], None]

    def cut(self, runtime: Runtime) -> None:
        self._cut()
        if self.url.startswith("sqlite"):
            runtime.db.engine.dispose()  # open SQLite handles outlive a rename

    def restore(self) -> None:
        self._restore()


@pytest.fixture
def outage(database_url: str, tmp_path: Path) -> Iterator[Outage]:
    if database_url.startswith("sqlite"):
        folder, away = tmp_path / "db", tmp_path / "db-away"
        url = f"sqlite:///{folder / 'astrid.db'}"
        upgrade(url)
        yield Outage(url, lambda: folder.rename(away), lambda: away.rename(folder))
        return
    upgrade(database_url)
    proxy, url = TcpProxy.for_url(database_url)
    yield Outage(url, proxy.cut, proxy.restore)
    proxy.cut()


@pytest.fixture
def runtime(outage: Outage, make_runtime: Callable[..., Runtime]) -> Runtime:
    """Overrides the shared fixture: the API's runtime goes through the outage."""
    return make_runtime(outage.url)


def test_data_routes_answer_503_while_the_database_is_down(
    outage: Outage, make_api: Callable[..., Api]
) -> None:
    api = make_api()
    viewer, admin = api.as_role("viewer"), api.as_role("admin")
    assert api.client.get("/api/v1/observations", headers=viewer).status_code == 200
    login = {"username": "viewer-user", "password": PASSWORD}
    refresh_token = api.client.post("/api/v1/auth/token", data=login).json()["refresh_token"]
    outage.cut(api.runtime)
    for method, path, headers in [
        ("GET", "/api/v1/observations", viewer),
        ("GET", "/api/v1/detections/statistics", viewer),  # a real route (stats: 422)
        ("GET", "/api/v1/auth/me", admin),
        ("POST", "/api/v1/auth/refresh", {}),
    ]:
        body = {"refresh_token": refresh_token} if method == "POST" else None
        response = api.client.request(method, path, headers=headers, json=body)
        assert response.status_code == 503, (path, response.status_code, response.text)
        assert response.headers["content-type"].startswith(PROBLEM)
        assert int(response.headers["Retry-After"]) > 0
        assert response.json()["detail"] == "the database is unavailable; retry later"
    ready = api.client.get("/health/ready", headers=admin)
    assert ready.status_code == 503 and ready.json() == {"status": "unavailable"}
    outage.restore()
    assert api.client.get("/api/v1/observations", headers=viewer).status_code == 200


def test_readiness_details_are_for_admins_only(make_api: Callable[..., Api]) -> None:
    api = make_api()
    anonymous = api.client.get("/health/ready")
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}
    for role in ("viewer", "curator", "expert"):
        assert api.client.get("/health/ready", headers=api.as_role(role)).json() == {"status": "ok"}
    forged = api.client.get("/health/ready", headers={"Authorization": "Bearer forged"})
    assert forged.json() == {"status": "ok"}
    detailed = api.client.get("/health/ready", headers=api.as_role("admin")).json()
    assert detailed["status"] == "ok"
    assert detailed["checks"]["database"]["status"] == "ok"
