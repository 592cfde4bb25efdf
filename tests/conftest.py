"""Fixtures shared by the whole suite.

Real test data lives in the ``shared/data`` folder beside the repository; the one setting
``ASTRID_SHARED_DATA_DIR`` points elsewhere. Where the folder is absent, tests that need it
skip with that reason, except under ``CI=true``, where a missing folder fails the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    configured = os.environ.get("ASTRID_SHARED_DATA_DIR")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real telescope data (decam_cutouts/, nircam_pair/, ...)."""
    path = _shared_data_dir()
    if not path.is_dir():
        message = f"real test data folder {path} is missing (set ASTRID_SHARED_DATA_DIR)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
