"""``astrid`` as a user runs it: a subprocess (``python -m astrid``) in an environment of
this process's variables minus every ``ASTRID_*`` one, so a developer's own settings never
leak into a test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

__all__ = ["astrid", "astrid_in", "clean_env"]


def clean_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """This process's environment without ``ASTRID_*``, plus ``ASTRID_DATA_DIR=data_dir``
    and ``settings`` (names as ``ASTRID_...``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRID_")}
    env["ASTRID_DATA_DIR"] = str(data_dir)
    env.update(settings)
    return env


def astrid(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m astrid *args`` in ``env``, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "astrid", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def astrid_in(env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """:func:`astrid` bound to ``env``: ``run = astrid_in(env); run("init")``."""
    return partial(astrid, env)
