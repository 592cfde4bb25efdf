"""``astrid ingest-position`` when the archive has nothing or is down: exit 1 with the reason,
or one ``error:`` line naming the archive's failure, against the loopback SkyView/MAST server;
``astrid status`` then lists the parked fetch, and after the archive is back, its retries."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from astrid.runtime import Runtime
from astrid.settings import Settings, get_settings
from astrid.store.tables import Observation
from tests.cli.inprocess import Run, assert_one_error, migrated_sqlite_env, runner
from tests.pipeline.archive_server import ArchiveServer, centre_of
from tests.pipeline.conftest import DECAM


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield migrated_sqlite_env(tmp_path, monkeypatch)
    get_settings.cache_clear()


def _observations(url: str) -> int:
    runtime = Runtime(Settings(database_url=url, _env_file=None))  # type: ignore[call-arg]
    try:
        with runtime.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(Observation)) or 0)
    finally:
        runtime.close()


def test_no_image_at_the_position_and_an_archive_down_are_said(
    db_url: str,
    archive_server: ArchiveServer,
    shared_data: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    run: Callable[..., Run] = runner(capsys)
    base = ("ingest-position", "--archive-url", archive_server.url, "--fov", "3arcmin")
    # MAST knows the collection but has no JWST image here: a manifest with no entry, exit 1
    manifest = tmp_path / "empty.json"
    code, out, err = run(*base, "--archive", "mast", "--survey", "JWST", "--ra", "10",
                         "--dec", "10", "--manifest", str(manifest))  # fmt: skip
    assert code == 1 and "0 image(s) from mast 'JWST'" in out
    assert "error: mast has no 'JWST' image at this position" in err
    assert manifest.read_text().strip() == "[]"
    # SkyView's query fails every time: the retries give up and say why, one line, exit 2
    archive_server.state.fail_next["/current/cgi/runquery.pl"] = 99
    ra, dec = centre_of(shared_data / DECAM)
    down = run(*base, "--survey", "DSS", "--ra", str(ra), "--dec", str(dec))
    assert_one_error(down, "skyview query failed: gave up after 4 attempts", "503")
    assert _observations(db_url) == 0
    code, out, _ = run("status")  # the parked fetch, in the operator's view
    assert code == 0 and "parked failures" in out and "gave up after 4 attempts" in out
    # the archive back: the same command ingests the image (the parked fetch is re-run)
    archive_server.state.fail_next.clear()
    code, out, err = run(*base, "--survey", "DSS", "--ra", str(ra), "--dec", str(dec))
    assert (code, err) == (0, ""), err
    assert "1 image(s) from skyview 'DSS': 1 new, 0 already present, 0 failed" in out
    assert _observations(db_url) == 1
    code, out, _ = run("status")  # no failure left; the fetch shows it needed retries
    assert code == 0 and "parked failures" not in out
    assert "runs that took more than one attempt" in out
    code, out, _ = run("status", "--json")
    (retried,) = json.loads(out)["retried"]
    assert (retried["stage"], retried["status"], retried["attempts"]) == (
        "archive_fetch",
        "succeeded",
        5,  # four failed attempts, then the one that succeeded
    )
