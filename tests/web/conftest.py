"""Fixtures of the browser tests: the built dashboard, Debian's Chromium driven by Playwright,
and a real ``astrid serve`` process on loopback over a database seeded through the real
pipeline (the shared data's ZTF alerts, scored by AstrID's model) on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from tests._workers import stop

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
BUILD = WEB / "out"
CHROMIUM = os.environ.get("ASTRID_TEST_CHROMIUM", "/usr/bin/chromium")
SECRET = "web-test-secret-0123456789abcdef0123456789"
PASSWORD = "correct horse battery"
USERS = {
    "curator": "curator-web",
    "viewer": "viewer-web",
    "expert": "expert-web",
    "admin": "admin-web",
}


@pytest.fixture(scope="session")
def web_build() -> Path:
    """``web/out``; built here (npm ci + build) when missing and Node is installed."""
    if not (BUILD / "index.html").is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(
                "the dashboard is not built and npm is missing: install Node 20, `make web`"
            )
        if not (WEB / "node_modules").is_dir():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
        env = {**os.environ, "NEXT_TELEMETRY_DISABLED": "1"}
        subprocess.run([npm, "run", "build"], cwd=WEB, check=True, env=env)
    return BUILD


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright (headless)."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-packages.sh (chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Site:
    """A running ``astrid serve`` with the dashboard and seeded data."""

    url: str
    database_url: str
    env: dict[str, str]
    backend: str
    tokens: dict[str, str] = field(default_factory=dict)

    def api(self, role: str) -> httpx.Client:
        """An HTTP client of the API logged in as ``role`` (a real password login)."""
        if role not in self.tokens:
            r = httpx.post(
                f"{self.url}/api/v1/auth/token",
                data={"username": USERS[role], "password": PASSWORD},
                timeout=30,
            )
            r.raise_for_status()
            self.tokens[role] = r.json()["access_token"]
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {self.tokens[role]}"},
            timeout=30,
        )


def seed(database_url: str, data_dir: Path, shared: Path) -> None:
    """Migrate; run the pipeline on a small simulated survey (one field, three epochs: objects
    with several epochs and forced photometry) and build its reference sky HiPS; ingest +
    score the real ZTF alerts; create one user per role."""
    from astrid.api.security import create_user
    from astrid.pipeline.alerts import ingest_alerts, load_alert_scorer
    from astrid.pipeline.demo import run_demo
    from astrid.pipeline.hips import build_reference_hips
    from astrid.runtime import Runtime
    from astrid.settings import Settings
    from astrid.store.db import upgrade

    upgrade(database_url)
    settings = Settings(data_dir=data_dir, database_url=database_url, _env_file=None)  # type: ignore[call-arg]
    runtime = Runtime(settings)
    try:
        run_demo(runtime, n_fields=1, n_epochs=3, report=False, alerts=False)
        build_reference_hips(runtime)  # the sky map's offline survey (served at /hips/astrid/)
        outcomes = ingest_alerts(
            runtime, [shared / "ztf_alerts"], scorer=load_alert_scorer("default")
        )
        assert sum(o.detection_id is not None for o in outcomes) >= 25, outcomes[:3]
        with runtime.db.session() as session:
            for role, name in USERS.items():
                create_user(session, name, PASSWORD, role)
    finally:
        runtime.close()


@contextmanager
def database(request: pytest.FixtureRequest, data_dir: Path, prefix: str) -> Iterator[str]:
    """The URL of an empty database for ``request.param`` (``sqlite``: a file in ``data_dir``;
    ``postgres``: a schema named ``<prefix>_<random>``, dropped on exit)."""
    if request.param == "sqlite":
        yield f"sqlite:///{data_dir / 'astrid.db'}"
        return
    import psycopg

    server = request.getfixturevalue("postgres_server")
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def serve_env(
    data_dir: Path, database_url: str, web_build: Path, extra_env: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of ``astrid serve`` (and of a worker beside it): this process's, the
    data folder, database, secret, no rate limit, the built dashboard, and ``extra_env``."""
    return {
        **os.environ,
        "ASTRID_DATA_DIR": str(data_dir),
        "ASTRID_DATABASE_URL": database_url,
        "ASTRID_SECRET_KEY": SECRET,
        "ASTRID_API_RATE_LIMIT": "0",
        "ASTRID_DASHBOARD_DIR": str(web_build),
        **(extra_env or {}),
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }


@contextmanager
def serve(
    data_dir: Path, env: dict[str, str], backend: str, start_timeout_s: float = 120
) -> Iterator[Site]:
    """``astrid serve`` (a subprocess, as a user runs it) in ``env`` (:func:`serve_env`),
    once ``/health/live`` answers 200; stopped (SIGTERM, then kill after 20 s) on exit. Its
    output goes to ``data_dir/serve.log``, shown when it fails to start."""
    port = _free_port()
    log = open(data_dir / "serve.log", "wb")  # noqa: SIM115 - closed after the server stops
    proc = subprocess.Popen(
        [sys.executable, "-m", "astrid", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                if httpx.get(f"{url}/health/live", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(
                    f"astrid serve did not start (exit {proc.poll()}): "
                    f"{(data_dir / 'serve.log').read_text()}"
                )
            time.sleep(0.3)
        yield Site(url, env["ASTRID_DATABASE_URL"], env, backend)
    finally:
        stop(proc, timeout_s=20)
        log.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def site(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    shared_data: Path,
    web_build: Path,
) -> Iterator[Site]:
    """``astrid serve`` (a subprocess, as a user runs it) on each backend, seeded."""
    data_dir = tmp_path_factory.mktemp(f"web-{request.param}")
    with database(request, data_dir, "astrid_w") as database_url:
        seed(database_url, data_dir, shared_data)
        env = serve_env(data_dir, database_url, web_build)
        with serve(data_dir, env, request.param) as running:
            yield running


@pytest.fixture
def page(browser: Any, site: Site) -> Iterator[Any]:
    """A fresh browser context (own localStorage) with a desktop viewport."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


def login(page: Any, site: Site, role: str, then: str = "/") -> None:
    """Log in through the form labelled Username / Password, then open ``then``."""
    page.goto(f"{site.url}/login?next={quote(then, safe='')}")
    page.get_by_label("Username").fill(USERS[role])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: url == f"{site.url}{then}")
