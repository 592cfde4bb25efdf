"""``astrid detect`` imports only what it needs (start-up time is most of a small detect)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")

# each costs 0.5-2.5 s to import and none is needed to difference a pair with ZOGY
HEAVY = ("scipy.signal", "scipy.stats", "photutils", "reproject", "matplotlib", "skimage")


@pytest.mark.parametrize("module", ["astrid.science.difference", "astrid.cli.science"])
def test_detect_path_imports_no_heavy_module(module: str) -> None:
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.strip() == ""
