"""X-Forwarded-For is trusted only from configured proxies: a local caller cannot pick the
address the rate limits count (a real ``astrid serve`` process and an in-process uvicorn)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from astrid.api import ApiConfig, create_app
from astrid.runtime import Runtime
from astrid.store.db import upgrade
from tests.api.conftest import SECRET, free_port

LOGIN = "/api/v1/auth/token"


def _spoofed_logins(base: str, n: int) -> list[int]:
    """``n`` logins, each claiming another client address."""
    with httpx.Client(base_url=base, timeout=30) as client:
        return [
            client.post(
                LOGIN,
                data={"username": f"nobody{i}", "password": "wrong-password"},
                headers={"X-Forwarded-For": f"203.0.113.{i + 1}"},
            ).status_code
            for i in range(n)
        ]


def test_astrid_serve_ignores_forwarded_for_from_a_local_caller(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRID_")}
    env.update(
        ASTRID_DATA_DIR=str(tmp_path),
        ASTRID_SECRET_KEY="s" * 40,
        ASTRID_API_RATE_LIMIT="4",
        ASTRID_API_RATE_WINDOW_S="600",
    )
    upgrade(f"sqlite:///{tmp_path / 'astrid.db'}")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "astrid", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.3)
        codes = _spoofed_logins(f"http://127.0.0.1:{port}", 7)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert codes[:4] == [401] * 4 and codes[4:] == [429] * 3, codes


def test_a_configured_proxy_is_trusted(migrated_url: str, make_runtime) -> None:
    runtime: Runtime = make_runtime(migrated_url)
    config = ApiConfig(
        secret_key=SECRET, rate_limit=2, rate_window_s=600, forwarded_allow_ips=("127.0.0.1",)
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime, config),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            **config.uvicorn_proxy_options(),
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        codes = _spoofed_logins(f"http://127.0.0.1:{port}", 4)  # four addresses, one hit each
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert codes == [401] * 4
    assert ApiConfig().uvicorn_proxy_options() == {
        "proxy_headers": False,
        "forwarded_allow_ips": "",
    }
