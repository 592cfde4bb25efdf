"""Running the pipeline over pending observations, on SQLite and PostgreSQL.

A corrupt observation blob must park that observation as failed with its reason while the
others complete; restoring the bytes and retrying must complete it; re-running must not
store anything twice. ``astrid process`` runs the same path from the command line.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from astrid.pipeline.demo import simulate_demo_survey
from astrid.pipeline.orchestrate import pending_observations, process_pending, stage_timings
from astrid.runtime import Runtime
from astrid.store.db import upgrade
from astrid.store.tables import (
    Candidate,
    Detection,
    Difference,
    Observation,
    PreprocessResult,
    StageRun,
)
from tests._cli import astrid_in, clean_env
from tests.pipeline.conftest import one_field_survey


def _blob_path(runtime: Runtime, key: str) -> Path:
    root = Path(runtime.settings.data_dir) / "blobs"
    return root / key[:2] / key[2:4] / key


def _counts(runtime: Runtime) -> dict[str, int]:
    with runtime.db.session() as s:
        return {
            t.__name__: int(s.scalar(select(func.count()).select_from(t)) or 0)
            for t in (PreprocessResult, Difference, Candidate, Detection)
        }


def test_corrupt_blob_parks_one_observation_and_the_rest_complete(
    runtime: Runtime, tmp_path: Path
) -> None:
    (e0, e1, e2), _ = one_field_survey(
        runtime, tmp_path / "raw", seed=3, n_epochs=3, n_transients=3, flux_range=(3000.0, 6000.0)
    )
    with runtime.db.session() as s:
        bad_key = s.get(Observation, e2).blob_key
    path = _blob_path(runtime, bad_key)
    original = path.read_bytes()
    path.write_bytes(original[:2880] + b"\0" * (len(original) - 2880))

    assert pending_observations(runtime) == [e0, e1, e2]
    summary = process_pending(runtime)
    status = {r.observation_id: r.status for r in summary.reports}
    assert status == {e0: "preprocessed", e1: "completed", e2: "failed"}
    failed = next(r for r in summary.reports if r.observation_id == e2)
    assert "BlobIntegrityError" in (failed.reason or "") and bad_key in (failed.reason or "")
    assert summary.stage_counts["preprocess"] == {"done": 2, "failed": 1}
    assert failed.value("n_detections") is None
    done = next(r for r in summary.reports if r.observation_id == e1)
    assert done.value("n_detections") >= 3
    with runtime.db.session() as s:
        parked = s.scalars(select(StageRun).where(StageRun.status == "failed")).all()
        assert [(p.stage, p.observation_id) for p in parked] == [("preprocess", e2)]

    # Nothing is redone for the others; the failed one stays parked until retried.
    before = _counts(runtime)
    again = process_pending(runtime)
    assert {r.observation_id for r in again.reports} == {e0}
    assert _counts(runtime) == before

    path.write_bytes(original)
    retried = process_pending(runtime, retry_failed=True)
    assert {r.observation_id: r.status for r in retried.reports}[e2] == "completed"
    after = _counts(runtime)
    assert after["Difference"] == 2 and after["PreprocessResult"] == 3
    timings = stage_timings(runtime, [e1, e2])
    assert set(timings) == {"preprocess", "reference", "difference", "detect"}
    assert timings["difference"][0] == 2 and timings["difference"][1] > 0


def test_process_command(tmp_path: Path) -> None:
    # One backend is enough here: the command only calls process_observations (tested above
    # on both); this checks the face: arguments, progress, table, report, exit codes.
    env = clean_env(tmp_path / "data")
    survey = simulate_demo_survey(
        tmp_path / "raw",
        seed=5,
        n_fields=1,
        n_epochs=2,
        n_transients=3,
        flux_range=(3000.0, 6000.0),
    )

    astrid = astrid_in(env)

    upgrade(f"sqlite:///{tmp_path / 'data' / 'astrid.db'}")
    assert astrid("ingest", str(tmp_path / "raw"), "--survey", "t").returncode == 0
    report = tmp_path / "report.html"
    run = astrid("process", "--pending", "--report", str(report))
    assert run.returncode == 0, run.stderr
    lines = [ln for ln in run.stdout.splitlines() if "completed" in ln]
    assert len(lines) == 1 and " 1 " in lines[0]  # epoch 1, reference = observation 1
    assert "time per stage: preprocess" in run.stdout
    html = report.read_text()
    assert html.count("<div class='card'>") >= len(survey.truth)
    bad = astrid("process", "2", "99")
    assert bad.returncode == 2 and "no observation with id 99" in bad.stderr
