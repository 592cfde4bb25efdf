"""``astrid demo`` on the embedded defaults, in a fresh working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_from_an_empty_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRID_")}
    result = subprocess.run(
        [sys.executable, "-m", "astrid", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "6 ingested, 0 already present, 0 failed" in result.stdout
    assert (tmp_path / "astrid-data" / "astrid.db").is_file()
    blobs = [p for p in (tmp_path / "astrid-data" / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 6
    again = subprocess.run(
        [sys.executable, "-m", "astrid", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0 and "0 ingested, 6 already present" in again.stdout
