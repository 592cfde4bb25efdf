"""Real ``astrid worker`` subprocesses for the queue tests: their environment, starting and
stopping them, and waiting (polling) for what they do.

Workers run as a user runs them (``python -m astrid worker``) on a real Redis broker; the
environment is this process's minus every ``ASTRID_*`` variable, so a developer's own
settings never leak into a test.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests._cli import clean_env

__all__ = ["start_worker", "stop", "wait_for", "worker_env"]


def worker_env(
    data_dir: Path, broker_url: str, database_url: str | None = None, **settings: str
) -> dict[str, str]:
    """This process's environment without ``ASTRID_*``, plus ``ASTRID_DATA_DIR``,
    ``ASTRID_BROKER_URL``, ``ASTRID_DATABASE_URL`` (when given) and ``settings`` (names
    as ``ASTRID_...``)."""
    env = clean_env(data_dir, ASTRID_BROKER_URL=broker_url)
    if database_url is not None:
        env["ASTRID_DATABASE_URL"] = database_url
    env.update(settings)
    return env


def start_worker(
    env: dict[str, str], *args: str, stderr: int = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    """``python -m astrid worker *args`` in ``env``; stdout is dropped, stderr piped (read it
    in a failing assertion) unless ``stderr`` says otherwise."""
    return subprocess.Popen(
        [sys.executable, "-m", "astrid", "worker", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def stop(*procs: subprocess.Popen[bytes] | None, timeout_s: float = 30) -> None:
    """SIGTERM every process still running (all at once, so their graceful stops overlap),
    then wait up to ``timeout_s`` seconds for each and kill one that has not exited."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        if proc is not None:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval_s: float = 0.2
) -> Any:
    """The first truthy value of ``predicate()``, polled every ``interval_s`` seconds;
    AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
