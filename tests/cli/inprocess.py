"""``astrid ARGS...`` in the test's own process, through the console script's entry point
(``astrid.cli.main``: AstridError becomes one ``error:`` line and exit 2), on a migrated
SQLite database named by the environment as ``astrid init`` leaves it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from astrid.cli import main
from astrid.settings import get_settings
from astrid.store.db import upgrade

#: (exit code, stdout, stderr)
Run = tuple[int, str, str]


def migrated_sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Migrate ``tmp_path/astrid.db`` and point ASTRID_* at it; tasks run in process and no
    outside service (SkyBoT, TNS) is configured. Returns the database URL."""
    url = f"sqlite:///{tmp_path / 'astrid.db'}"
    upgrade(url)
    for key in ("ASTRID_BROKER_URL", "ASTRID_SKYBOT_URL", "ASTRID_TNS_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ASTRID_DATABASE_URL", url)
    monkeypatch.setenv("ASTRID_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    return url


def runner(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """A function running ``astrid ARGS...`` here and returning (exit code, stdout, stderr)."""

    def run(*args: str) -> Run:
        capsys.readouterr()
        get_settings.cache_clear()  # the command reads the environment, as a new process does
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def assert_one_error(result: Run, *needles: str) -> None:
    """Exit 2 with one ``error:`` line on stderr holding every needle, and no traceback."""
    code, out, err = result
    assert code == 2, (code, out, err)
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert "Traceback" not in out + err
