"""Fixtures of the API tests: an app over a migrated runtime (SQLite and PostgreSQL), users
of every role with real tokens, and a real uvicorn server on loopback."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from astrid.api import ApiConfig, create_app
from astrid.api.security import TokenService, create_user, hash_password
from astrid.runtime import Runtime
from tests.pipeline.archive_server import ArchiveServer, load_image
from tests.pipeline.conftest import DECAM

ROLES = ("viewer", "curator", "expert", "admin")
SECRET = "test-secret-key-0123456789abcdef0123456789"
PASSWORD = "correct horse battery"
CLOSED_ARCHIVE = "http://127.0.0.1:9"  # nothing listens: archive calls fail fast, offline


@dataclass
class Api:
    """A running app, its client and a bearer header per role."""

    app: FastAPI
    client: TestClient
    runtime: Runtime
    config: ApiConfig
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)

    def as_role(self, role: str | None) -> dict[str, str]:
        return {} if role is None else self.headers[role]


def make_users(
    runtime: Runtime, config: ApiConfig
) -> tuple[dict[str, dict[str, str]], dict[str, int]]:
    tokens = TokenService(config)
    headers, ids = {}, {}
    with runtime.db.session() as session:
        for role in ROLES:
            user = create_user(session, f"{role}-user", None, role)
            user.password_hash = _password_hash()  # real argon2, computed once per session
            headers[role] = {"Authorization": f"Bearer {tokens.issue(user).access_token}"}
            ids[role] = user.id
    return headers, ids


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
def api_config() -> ApiConfig:
    return ApiConfig(secret_key=SECRET, rate_limit=0, stream_poll_s=0.05, stream_heartbeat_s=0.3)


@pytest.fixture
def make_api(runtime: Runtime) -> Iterator[Callable[..., Api]]:
    """Build an app over ``runtime`` with config overrides, users of every role included."""
    clients: list[TestClient] = []
    created: dict[str, Any] = {}

    def factory(config: ApiConfig | None = None, **overrides: Any) -> Api:
        base = config or ApiConfig(
            secret_key=SECRET,
            rate_limit=0,
            stream_poll_s=0.05,
            stream_heartbeat_s=0.3,
            archive_base_url=CLOSED_ARCHIVE,
        )
        cfg = replace(base, **overrides)
        app = create_app(runtime, cfg)
        client = TestClient(app, raise_server_exceptions=False)
        clients.append(client)
        if "users" not in created:
            created["users"] = make_users(runtime, cfg)
        headers, ids = created["users"]
        return Api(app, client, runtime, cfg, headers, ids)

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def archive_server(shared_data: Path) -> Iterator[ArchiveServer]:
    """SkyView + MAST look-alike on loopback (tests/pipeline) serving a real DECam image."""
    server = ArchiveServer([load_image(shared_data / DECAM, "DECam", "1001")]).start()
    yield server
    server.stop()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_env(data_dir: Path) -> dict[str, str]:
    """The environment of an ``astrid serve`` process on the SQLite database of ``data_dir``."""
    env = {**os.environ, "ASTRID_DATA_DIR": str(data_dir), "ASTRID_SECRET_KEY": "s" * 40}
    env.pop("ASTRID_DATABASE_URL", None)
    return env


def wait_ready(
    proc: subprocess.Popen[bytes], port: int, patience_s: float, poll_s: float = 0.2
) -> httpx.Response:
    """The first answer of ``/health/ready`` of the server ``proc`` starts on ``port``;
    fails if ``proc`` exits or ``patience_s`` (a cold interpreter is slow) goes by first."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2)
        except httpx.HTTPError:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(poll_s)


class LiveServer:
    """uvicorn serving an app in a thread on 127.0.0.1."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.server.force_exit = True
        self.thread.join(timeout=10)
