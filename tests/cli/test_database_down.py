"""With the database refused at start, every command that needs it says so in one line.

PostgreSQL sits behind a loopback TCP proxy the test cuts (connection refused, as from a
stopped server); SQLite's database path is a directory it cannot open. The URL carries a
password that must not be printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tcp_proxy import TcpProxy

PASSWORD = "hunter2-secret"


@pytest.fixture(params=["sqlite", "postgresql"])
def refused_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(database URL that is refused, what the error line must show of it)."""
    if request.param == "sqlite":
        folder = tmp_path / "not-a-database"
        folder.mkdir()
        yield f"sqlite:///{folder}", str(folder)
        return
    server = str(request.getfixturevalue("postgres_server"))
    user_host = server.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")
    proxy, url = TcpProxy.for_url(user_host)
    proxy.cut()
    yield url, f"127.0.0.1:{proxy.port}"


BROKER = "redis://127.0.0.1:6379/0?namespace=astrid-test-database-down"
COMMANDS = {
    "process": ["process", "--pending"],
    "status": ["status"],
    "ingest": ["ingest", "{tmp}"],
    "serve": ["serve", "--port", "0"],
    "worker": ["worker"],
}


def test_commands_refuse_a_dead_database_in_one_line(
    refused_url: tuple[str, str], tmp_path: Path
) -> None:
    url, shown = refused_url
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRID_")}
    env.update(
        ASTRID_DATA_DIR=str(tmp_path / "data"), ASTRID_DATABASE_URL=url, ASTRID_SECRET_KEY="s" * 40
    )
    # All five at once: each is a fresh interpreter, so this halves the wall time.
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", "astrid", *(a.format(tmp=tmp_path) for a in args)],
            # A worker first needs a broker (it says so before anything else): give it one.
            env=env if name != "worker" else {**env, "ASTRID_BROKER_URL": BROKER},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in COMMANDS.items()
    }
    problems = []
    for name, proc in running.items():
        try:
            out, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            problems.append(f"{name}: still running (started without its database)")
            continue
        lines = [line for line in (out + err).splitlines() if line.strip()]
        if proc.returncode != 2:
            problems.append(f"{name}: exit {proc.returncode}, expected 2")
        if len(lines) != 1:
            problems.append(f"{name}: {len(lines)} lines of output, expected 1: {lines[-3:]}")
        text = out + err
        if shown not in text or "unavailable" not in text:
            problems.append(f"{name}: the line does not name the database: {text[:300]!r}")
        if PASSWORD in text:
            problems.append(f"{name}: the password is printed")
    assert not problems, "\n".join(problems)
