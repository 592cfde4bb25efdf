"""The operations pages in a real browser (Debian's Chromium) against a real ``astrid serve``
on Redis with a real ``astrid worker``, on SQLite and PostgreSQL: the worker's heartbeat,
an admin pausing and resuming the queue (and the worker really holding its message), a
lost worker's degraded banner, diagnostics "run all" with the smoke test's numbers kept in
localStorage and exported as JSON, and axe-core on both pages."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from tests._workers import start_worker, stop
from tests.web.conftest import PASSWORD, USERS, Site, database, login, serve, serve_env
from tests.web.test_dashboard import _axe

pytestmark = [pytest.mark.xdist_group("web"), pytest.mark.slow]


@dataclass
class OpsSite:
    site: Site
    broker_url: str
    worker: subprocess.Popen[bytes]

    def start_worker(self) -> subprocess.Popen[bytes]:
        return start_worker(self.site.env, "--threads", "1", stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def ops(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: str,
    web_build: Path,
) -> Iterator[OpsSite]:
    """``astrid serve`` and one ``astrid worker`` sharing a database and a Redis namespace."""
    import redis

    from astrid.api.security import create_user
    from astrid.runtime import Runtime
    from astrid.settings import Settings
    from astrid.store.db import upgrade

    data_dir = tmp_path_factory.mktemp(f"ops-{request.param}")
    namespace = f"astrid-web-{uuid.uuid4().hex[:10]}"
    broker_url = f"{redis_server}?namespace={namespace}&heartbeat_timeout=3000"
    extra_env = {
        "ASTRID_BROKER_URL": broker_url,
        "ASTRID_WORKER_HEARTBEAT_S": "0.5",
        "ASTRID_WORKER_LOST_AFTER_S": "4",
    }
    with database(request, data_dir, "astrid_o") as database_url:
        upgrade(database_url)
        runtime = Runtime(Settings(data_dir=data_dir, database_url=database_url, _env_file=None))  # type: ignore[call-arg]
        with runtime.db.session() as session:
            for role, name in USERS.items():
                create_user(session, name, PASSWORD, role)
        runtime.close()
        env = serve_env(data_dir, database_url, web_build, extra_env)
        # the worker boots while the server does: both are up when the first test runs
        worker = start_worker(env, "--threads", "1", stderr=subprocess.DEVNULL)
        try:
            with serve(data_dir, env, request.param, start_timeout_s=180) as site:
                yield OpsSite(site, broker_url, worker)
        finally:
            stop(worker)
            client = redis.Redis.from_url(redis_server)
            keys = list(client.scan_iter(match=f"{namespace}*"))
            if keys:
                client.delete(*keys)
            client.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    context.close()


def _row(page: Any, pid: int) -> Any:
    return page.locator(f"[data-testid=workers-table] tr[data-worker-pid='{pid}']")


def test_the_workers_page_shows_a_running_workers_heartbeat(page: Any, ops: OpsSite) -> None:
    login(page, ops.site, "viewer", "/workers")
    row = _row(page, ops.worker.pid)
    row.and_(page.locator("[data-state=alive]")).wait_for()
    beat = row.locator("[data-testid=heartbeat]").inner_text()
    assert re.fullmatch(r"\d s ago", beat), beat  # heartbeats every 0.5 s, polled every 5 s
    assert "astrid" in row.inner_text() and "idle" in row.inner_text()
    with ops.site.api("viewer") as api:
        first = next(w for w in api.get("/workers").json() if w["pid"] == ops.worker.pid)
        time.sleep(1.2)
        again = next(w for w in api.get("/workers").json() if w["pid"] == ops.worker.pid)
    assert again["last_seen"] > first["last_seen"]  # the worker itself keeps writing
    # A viewer reads but has no actions.
    assert page.get_by_role("button", name="Pause astrid").count() == 0
    assert page.locator("[data-testid=degraded]").count() == 0


def test_an_admin_pauses_the_queue_and_the_worker_holds_its_message(
    page: Any, ops: OpsSite
) -> None:
    from astrid.pipeline.queue.actors import enqueue
    from astrid.pipeline.queue.broker import make_broker

    login(page, ops.site, "admin", "/workers")
    _row(page, ops.worker.pid).wait_for()
    page.get_by_role("button", name="Pause astrid").click()
    page.locator("[data-testid=queue-state-astrid]", has_text="paused by admin-web").wait_for()
    page.get_by_label("Refresh every").select_option("2")
    page.locator(f"tr[data-worker-pid='{ops.worker.pid}']", has_text="(paused)").wait_for()

    broker = make_broker(ops.broker_url)
    engine = create_engine(ops.site.database_url.replace("postgresql://", "postgresql+psycopg://"))
    token = uuid.uuid4().hex

    def probe_status() -> str | None:
        from astrid.store.tables import StageRun

        with engine.connect() as conn:
            rows = conn.execute(select(StageRun.status, StageRun.inputs)).all()
        return next((s for s, inputs in rows if inputs.get("token") == token), None)

    try:
        enqueue(broker, "probe", token=token)
        time.sleep(3.0)  # six heartbeats of the worker
        assert probe_status() is None  # paused: not started
        with ops.site.api("admin") as api:
            [queue] = api.get("/queues").json()["queues"]
        assert queue["paused"] and queue["waiting"] + queue["in_flight"] == 1

        page.get_by_role("button", name="Resume astrid").click()
        page.locator("[data-testid=queue-state-astrid]", has_text="running").wait_for()
        deadline = time.monotonic() + 30
        while probe_status() != "succeeded":
            assert time.monotonic() < deadline, "the probe did not run after resuming"
            time.sleep(0.3)
    finally:
        broker.close()
        engine.dispose()
    # The worker's own count reaches the page at a later poll.
    row = _row(page, ops.worker.pid)
    page.wait_for_function(
        "pid => Number(document.querySelector(`tr[data-worker-pid='${pid}'] td:nth-child(6)`)"
        "?.textContent) >= 1",
        arg=ops.worker.pid,
    )
    assert "(paused)" not in row.inner_text()
    assert "processed" in page.locator("[data-window='1h']").inner_text()


def test_a_killed_worker_is_shown_lost_in_a_degraded_banner(page: Any, ops: OpsSite) -> None:
    extra = ops.start_worker()
    try:
        login(page, ops.site, "viewer", "/workers")
        page.get_by_label("Refresh every").select_option("2")
        _row(page, extra.pid).and_(page.locator("[data-state=alive]")).wait_for(timeout=60_000)
        os.kill(extra.pid, signal.SIGKILL)
        extra.wait(10)
        banner = page.locator("[data-testid=degraded]", has_text=f":{extra.pid} is lost")
        banner.wait_for(timeout=20_000)  # lost after 4 s without a heartbeat, polled every 2 s
        assert _row(page, extra.pid).get_attribute("data-state") == "lost"
    finally:
        stop(extra)


def test_diagnostics_run_all_passes_and_keeps_the_smoke_numbers(
    page: Any, ops: OpsSite, tmp_path: Path
) -> None:
    from astrid.pipeline.diagnostics import smoke_test

    login(page, ops.site, "admin", "/diagnostics")
    rows = page.locator("[data-testid=checks-table] tbody tr")
    page.wait_for_function("() => document.querySelectorAll('[data-check]').length === 6")
    page.get_by_role("button", name="Run all checks").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-check]')]"
        ".every(r => r.getAttribute('data-ok') !== 'unknown')",
        timeout=120_000,
    )
    states = {r.get_attribute("data-check"): r.get_attribute("data-ok") for r in rows.all()}
    assert states == dict.fromkeys(
        ["database", "storage", "broker", "mlflow", "model", "smoke"], "true"
    ), page.inner_text("[data-testid=checks-table]")
    expected = smoke_test()  # the same seeded simulation, run here with the science core
    numbers = page.inner_text("[data-testid=smoke-numbers]")
    assert numbers.startswith(f"found {expected.detected} of {expected.injected} injected"), numbers
    assert f"{expected.bright_detected} of {expected.bright} with S/N > 10" in numbers
    log = page.inner_text("[data-testid=diag-log]")
    for line in ("[database] database: ok", "[broker] broker: ok", "[smoke] simulating"):
        assert line in log, log
    assert page.locator("[data-testid=degraded]").count() == 0

    page.reload()  # the results are kept in localStorage
    page.locator("[data-testid=smoke-numbers]").wait_for()
    assert page.locator("[data-check][data-ok=true]").count() == 6
    with page.expect_download() as info:
        page.get_by_role("button", name="Export JSON").click()
    path = tmp_path / "diagnostics.json"
    info.value.save_as(path)
    doc = json.loads(path.read_text())
    latest = {r["name"]: r for r in reversed(doc["results"])}
    assert set(latest) == {"database", "storage", "broker", "mlflow", "model", "smoke"}
    assert latest["smoke"]["details"]["injected"] == expected.injected
    assert all(r["ok"] for r in latest.values())


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_operations_pages_pass_axe(page: Any, ops: OpsSite, theme: str) -> None:
    page.add_init_script(f"localStorage.setItem('astrid.theme', '{theme}')")
    login(page, ops.site, "admin", "/workers")
    found = {}
    for path in ("/workers", "/diagnostics"):
        page.goto(f"{ops.site.url}{path}")
        page.wait_for_selector("main h1")
        page.wait_for_selector("main table")
        page.wait_for_timeout(500)
        found[path] = _axe(page)
    bad = {p: v for p, v in found.items() if v}
    assert not bad, bad
