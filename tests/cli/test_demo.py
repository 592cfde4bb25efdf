"""``astrid demo`` on the embedded defaults, in a fresh working directory (a real process).

The demo simulates 3 fields x 4 epochs with 54 injected transients, runs the whole
pipeline and compares what it found with the truth. The first run must recover every
(>= 90%) injected transient of ideal S/N >= 10 and write the report; the second must reuse
everything (no new observation, difference or detection).
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _shared_data_dir() -> Path:
    configured = os.environ.get("ASTRID_SHARED_DATA_DIR")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"


def _counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return {
            t: conn.execute(f"select count(*) from {t}").fetchone()[0]
            for t in ("observations", "differences", "candidates", "detections")
        }


def test_demo_from_an_empty_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRID_")}
    shared = _shared_data_dir()
    if shared.is_dir():
        env["ASTRID_SHARED_DATA_DIR"] = str(shared)

    def demo() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "astrid", "demo"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    result = demo()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "12 ingested, 0 already present, 0 failed" in out
    assert "with 54 injected transients" in out
    bright = re.search(r"ideal S/N ≥ 10: (\d+) of (\d+) recovered", out)
    # Completeness at ideal S/N >= 10 (the theory says ~100%); one may fall on a bright star.
    assert bright is not None and int(bright[2]) > 10, out
    assert int(bright[1]) >= 0.9 * int(bright[2]), out
    recovered = re.search(r"recovered as detections: (\d+)", out)
    assert recovered is not None and int(recovered[1]) >= int(bright[2])
    assert re.search(r"│ preprocess\s+│ 12\s+│", out), out
    assert re.search(r"│ difference\s+│ 9\s+│", out), out
    data = tmp_path / "astrid-data"
    report = data / "demo" / "report.html"
    assert report.is_file() and "data:image/png;base64" in report.read_text()
    counts = _counts(data / "astrid.db")
    assert counts["observations"] == 12 and counts["differences"] == 9
    assert counts["detections"] >= counts["candidates"] >= int(recovered[1])
    if shared.is_dir():
        assert "real ZTF alerts: 50 stored as detections" in out
        assert counts["detections"] == counts["candidates"] + 50
    else:
        assert "shared data folder not found" in out

    # Curation: the demo users voted; the expert's agreement reached consensus.
    assert "curation: users 'curator' and 'expert' (password 'astrid-demo')" in out
    with sqlite3.connect(data / "astrid.db") as conn:
        n_votes = conn.execute("select count(*) from votes").fetchone()[0]
        decided = conn.execute(
            "select count(*) from curation_states where state like 'consensus_%'"
        ).fetchone()[0]
        queued = conn.execute("select count(*) from curation_states").fetchone()[0]
    assert n_votes == 8 and decided == 2 and queued == counts["detections"]

    again = demo()
    assert again.returncode == 0, again.stderr
    assert "0 ingested, 12 already present" in again.stdout
    assert _counts(data / "astrid.db") == counts
    with sqlite3.connect(data / "astrid.db") as conn:
        assert conn.execute("select count(*) from votes").fetchone()[0] == n_votes
