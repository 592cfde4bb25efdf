"""Damaged FITS files are refused alike by ``astrid ingest`` (a real process), the stage runner
the workers use and the task layer: one line naming the problem, nothing stored."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from astrid.pipeline.queue.actors import submit
from astrid.pipeline.stages.ingest import ingest_files
from astrid.runtime import Runtime
from astrid.store.tables import Observation
from tests._cli import astrid_in, clean_env
from tests.damaged_fits import damaged_files


def _write_all(folder: Path) -> dict[Path, str]:
    folder.mkdir()
    out = {}
    for name, (data, words) in damaged_files().items():
        path = folder / name
        path.write_bytes(data)
        out[path] = words
    return out


def _stored(runtime: Runtime) -> tuple[int, int]:
    with runtime.db.session() as s:
        n_obs = int(s.scalar(select(func.count()).select_from(Observation)) or 0)
    return n_obs, len(list(runtime.blobs.keys()))


def test_cli_refuses_each_damaged_file_in_one_line(tmp_path: Path, database_url: str) -> None:
    files = _write_all(tmp_path / "damaged")
    env = clean_env(tmp_path / "data", ASTRID_DATABASE_URL=database_url)

    astrid = astrid_in(env)

    assert astrid("init").returncode == 0
    batch = astrid("ingest", str(tmp_path / "damaged"))
    assert batch.returncode == 1 and "Traceback" not in batch.stdout + batch.stderr
    assert f"0 ingested, 0 already present, {len(files)} failed" in batch.stdout
    lines = [ln for ln in batch.stdout.splitlines() if ln.startswith("skipped")]
    assert len(lines) == len(files)  # one line per file
    for path, words in files.items():
        (line,) = [ln for ln in lines if f"{path.name}:" in ln]
        assert words in line, line
    one = astrid("ingest", str(tmp_path / "damaged" / "bad_bitpix.fits"))
    assert one.returncode == 1 and "BITPIX = 12 is not a valid FITS BITPIX" in one.stdout
    listed = astrid("observations", "list", "--json")
    assert listed.returncode == 0 and listed.stdout.strip() == "[]"
    blobs = tmp_path / "data" / "blobs"
    assert not blobs.exists() or not [p for p in blobs.rglob("*") if p.is_file()]


def test_the_worker_path_parks_each_damaged_file(runtime: Runtime, tmp_path: Path) -> None:
    files = _write_all(tmp_path / "damaged")
    outcomes = ingest_files(runtime, list(files))
    for outcome, (path, words) in zip(outcomes, files.items(), strict=True):
        assert outcome.status == "failed" and outcome.error_kind == "permanent", path.name
        assert words in (outcome.error or "") and "\n" not in (outcome.error or "")
    path, words = next(iter(files.items()))
    task = submit("ingest_file", path=str(path), runtime=runtime)  # the worker's task body
    assert task.result["status"] == "failed" and words in task.result["error"]
    assert _stored(runtime) == (0, 0)
