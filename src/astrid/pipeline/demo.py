"""``astrid demo``: the main job on the embedded defaults, from nothing to a report.

On a fresh install, with no network, it

1. simulates a small survey (:func:`simulate_demo_survey`: a few fields, a deep reference
   epoch and several later epochs each, with transients injected at known positions and
   fluxes, plus cosmic rays) and writes the images as FITS with a truth table;
2. ingests them into the data directory's database and blob store;
3. runs the whole pipeline (:func:`astrid.pipeline.orchestrate.process_pending`: preprocess,
   reference, difference, extract, score, detections with cutouts, events);
4. prints a summary: observations, candidates, detections, injected transients recovered
   against the truth, time per stage;
5. ingests and scores the real ZTF alerts of the shared data folder when it is present;
6. writes an HTML report with a cutout gallery and a completeness plot.

Running it again reuses everything already stored (nothing is computed or stored twice).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table, vstack
from rich.console import Console
from rich.table import Table as RichTable
from sqlalchemy import func, select

from astrid.pipeline.alerts import ingest_alerts, load_alert_scorer
from astrid.pipeline.orchestrate import ProcessSummary, process_pending, stage_timings
from astrid.pipeline.report import write_report
from astrid.pipeline.stages.common import STAGE_NAMES, StageResult
from astrid.pipeline.stages.ingest import ingest_paths
from astrid.progress import progress_bar
from astrid.runtime import Runtime
from astrid.science.simulate import simulate_pair
from astrid.science.simulate_image import write_simulated
from astrid.science.simulate_model import AnalyticPSF, Exposure
from astrid.store import db as dbmod
from astrid.store.sky_index import angular_separation_deg
from astrid.store.tables import Candidate, Detection, Observation, PreprocessResult

__all__ = [
    "DEMO_FIELDS",
    "DemoSummary",
    "DemoSurvey",
    "match_truth",
    "run_demo",
    "shared_data_dir",
    "simulate_demo_survey",
    "write_demo_survey",
]

# (name, RA, Dec) of the simulated fields: near RA 0, far south, near the pole, mid-south.
DEMO_FIELDS = (
    ("field-a", 0.5, 1.0),
    ("field-b", 318.1, -66.0),
    ("field-c", 120.0, 85.0),
    ("field-d", 210.0, -30.0),
)

#: An injected transient counts as recovered by a detection within this distance.
MATCH_RADIUS_ARCSEC = 1.5
#: Detections at or above this confidence count as "real" in the summary.
REAL_THRESHOLD = 0.5


@dataclass(frozen=True)
class DemoSurvey:
    """Files of a simulated survey and the truth of what was injected.

    ``truth`` has one row per injected transient: ``field``, ``epoch``, ``file``, ``ra``,
    ``dec`` (degrees), ``x_new``, ``y_new`` (pixels of its image), ``flux`` (ADU), ``mag``,
    ``ideal_snr`` (ZOGY limit against the reference).
    """

    paths: list[Path]
    truth: Table


def simulate_demo_survey(
    folder: Path,
    seed: int = 1,
    shape: tuple[int, int] = (256, 256),
    *,
    n_fields: int = 3,
    n_epochs: int = 4,
    n_transients: int = 6,
    flux_range: tuple[float, float] = (150.0, 6000.0),
) -> DemoSurvey:
    """Simulate ``n_fields`` fields × ``n_epochs`` epochs and write them into ``folder``.

    Epoch 0 of each field is a deep, sharp reference (FWHM 2.6 px, twice the exposure);
    later epochs have FWHM 3.3-3.6 px, a 1.5 px pointing offset in a different direction
    each time, 3 cosmic rays, and ``n_transients`` new point sources with log-uniform fluxes
    in ``flux_range`` (ADU). Every epoch of a field has the same stars. The truth table is
    also written as ``folder/truth.ecsv``.
    """
    if not 1 <= n_fields <= len(DEMO_FIELDS) or n_epochs < 2:
        raise ValueError(f"n_fields must be 1-{len(DEMO_FIELDS)} and n_epochs >= 2")
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    truths: list[Table] = []
    ny, nx = shape
    edge = 16
    for i, (name, ra, dec) in enumerate(DEMO_FIELDS[:n_fields]):
        field_seed = seed * 1000 + i
        rng = np.random.default_rng(field_seed + 500)
        ref_exp = Exposure(
            psf=AnalyticPSF(fwhm=2.6), mjd=60000.0 + i, filter="r", flux_scale=2.0, exptime=120.0
        )
        for k in range(1, n_epochs):
            angle = 2 * math.pi * k / (n_epochs - 1) + 0.3 * i
            new_exp = Exposure(
                # FWHM within (3.2, 3.6] px and a constant offset length keep the simulator's
                # star-catalogue margin, hence the stars, identical in every epoch.
                psf=AnalyticPSF(fwhm=3.3 + 0.3 * ((k - 1) % 2)),
                mjd=60000.0 + i + 7.0 * k,
                filter="r",
                offset=(1.5 * math.cos(angle), 1.5 * math.sin(angle)),
                cosmic_rays=3,
            )
            positions = np.column_stack(
                [
                    rng.uniform(edge, nx - 1 - edge, n_transients),
                    rng.uniform(edge, ny - 1 - edge, n_transients),
                ]
            )
            lo, hi = flux_range
            fluxes = np.exp(rng.uniform(math.log(lo), math.log(hi), n_transients))
            pair = simulate_pair(
                shape=shape,
                n_stars=150,
                seed=field_seed,
                ra=ra,
                dec=dec,
                ref=ref_exp,
                new=new_exp,
                transient_positions=[tuple(p) for p in positions],
                transient_fluxes=list(fluxes),
                edge=edge,
            )
            if k == 1:
                path = folder / f"{name}-e0.fits"
                path.write_bytes(write_simulated(pair.ref))
                paths.append(path)
            path = folder / f"{name}-e{k}.fits"
            path.write_bytes(write_simulated(pair.new))
            paths.append(path)
            t = pair.truth[pair.truth["kind"] == "transient"]
            t = t["ra", "dec", "x_new", "y_new", "flux", "mag", "ideal_snr"]
            t.add_column([name] * len(t), name="field", index=0)
            t.add_column([k] * len(t), name="epoch", index=1)
            t.add_column([path.name] * len(t), name="file", index=2)
            truths.append(t)
    truth = vstack(truths)
    truth.write(folder / "truth.ecsv", overwrite=True)
    return DemoSurvey(paths, truth)


def write_demo_survey(
    folder: Path, seed: int = 1, shape: tuple[int, int] = (256, 256), **options: Any
) -> list[Path]:
    """Simulate the demo survey into ``folder``; return the FITS paths (see
    :func:`simulate_demo_survey` for ``options``)."""
    return simulate_demo_survey(folder, seed, shape, **options).paths


def match_truth(
    truth: Table,
    detections: list[tuple[float, float, float | None, str]],
    radius_arcsec: float = MATCH_RADIUS_ARCSEC,
) -> tuple[np.ndarray, np.ndarray]:
    """Match injected transients to detections of the same file.

    Parameters
    ----------
    truth : astropy.table.Table
        With ``ra``, ``dec`` (degrees) and ``file``.
    detections : list of (ra, dec, confidence, filename)
        The detections to search.
    radius_arcsec : float
        Match radius.

    Returns
    -------
    found, confidence : numpy.ndarray
        Per truth row: whether a detection lies within the radius, and the highest
        confidence among those (NaN if none, or unscored).
    """
    found = np.zeros(len(truth), bool)
    conf = np.full(len(truth), np.nan)
    by_file: dict[str, list[tuple[float, float, float | None]]] = {}
    for ra, dec, c, fname in detections:
        by_file.setdefault(fname, []).append((ra, dec, c))
    for i, row in enumerate(truth):
        dets = by_file.get(str(row["file"]), [])
        if not dets:
            continue
        arr = np.array([(d[0], d[1]) for d in dets], dtype=float)
        sep = angular_separation_deg(arr[:, 0], arr[:, 1], float(row["ra"]), float(row["dec"]))
        hits = np.flatnonzero(sep * 3600.0 <= radius_arcsec)
        if len(hits):
            found[i] = True
            cs = [float(c) for j in hits if (c := dets[j][2]) is not None]
            conf[i] = max(cs) if cs else np.nan
    return found, conf


def shared_data_dir(runtime: Runtime) -> Path | None:
    """The real-data folder: settings' ``shared_data_dir``, else ``../shared/data``."""
    configured = runtime.settings.shared_data_dir
    for candidate in ([configured] if configured else []) + [Path.cwd().parent / "shared" / "data"]:
        if candidate is not None and Path(candidate).is_dir():
            return Path(candidate)
    return None


@dataclass
class DemoSummary:
    """What the demo produced."""

    files: list[Path]
    ingested: int
    duplicates: int
    failed: int
    observations: int
    candidates: int = 0
    detections: int = 0
    injected: int = 0
    recovered: int = 0
    recovered_real: int = 0
    false_real: int = 0
    alerts: int = 0
    report: Path | None = None
    observation_ids: list[int] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0


def _demo_detections(runtime: Runtime) -> list[tuple[float, float, float | None, str]]:
    with runtime.db.session() as session:
        rows = session.execute(
            select(Detection.ra, Detection.dec, Detection.confidence, Observation.filename)
            .join(Observation, Detection.observation_id == Observation.id)
            .where(Detection.source == "pipeline")
        ).all()
    return [(float(r), float(d), c, str(f or "")) for r, d, c, f in rows]


def _drb(extra: dict[str, Any] | None) -> float | None:
    """ZTF's deep real-bogus score kept with an alert detection (None if absent)."""
    extra = extra or {}
    value = extra.get("drb", (extra.get("candidate") or {}).get("drb"))
    return None if value is None else float(value)


def _ingest_alerts(runtime: Runtime, folder: Path, console: Console) -> int:
    """Ingest and score the real ZTF alerts in ``folder`` (AstrID's default model)."""
    outcomes = ingest_alerts(runtime, [folder], scorer=load_alert_scorer("default"))
    ok = [o for o in outcomes if o.detection_id is not None]
    scored = [o.confidence for o in ok if o.confidence is not None]
    high = sum(c >= REAL_THRESHOLD for c in scored)
    with runtime.db.session() as session:
        extras = session.scalars(
            select(Detection.extra).where(Detection.id.in_([o.detection_id for o in ok]))
        ).all()
    drb = [float(d) for e in extras if (d := _drb(e)) is not None]
    console.print(
        f"real ZTF alerts: {len(ok)} stored as detections (source=alert) from {folder}; "
        f"{len(scored)} scored by AstrID's model, {high} with P(real) ≥ {REAL_THRESHOLD} "
        f"(ZTF's own drb ≥ {REAL_THRESHOLD}: {sum(d >= REAL_THRESHOLD for d in drb)} of "
        f"{len(drb)}); {sum(o.status == 'failed' for o in outcomes)} failed"
    )
    return len(ok)


def run_demo(
    runtime: Runtime,
    seed: int = 1,
    console: Console | None = None,
    *,
    n_fields: int = 3,
    n_epochs: int = 4,
    report: bool = True,
    alerts: bool = True,
) -> DemoSummary:
    """Simulate, ingest, process and report a small survey (see the module docstring)."""
    started = time.perf_counter()
    console = console or Console()
    settings = runtime.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    dbmod.upgrade(settings.resolved_database_url)
    console.rule("AstrID demo")
    console.print(f"data directory: {settings.data_dir.resolve()}")
    demo_dir = settings.data_dir / "demo"
    survey = simulate_demo_survey(demo_dir / "raw", seed=seed, n_fields=n_fields, n_epochs=n_epochs)
    console.print(
        f"simulated {len(survey.paths)} images of {n_fields} fields ({n_epochs} epochs each) "
        f"with {len(survey.truth)} injected transients"
    )
    outcomes = ingest_paths(runtime, survey.paths, survey="demo")
    counts = {s: sum(o.status == s for o in outcomes) for s in ("ingested", "duplicate", "failed")}
    console.print(
        f"{counts['ingested']} ingested, {counts['duplicate']} already present, "
        f"{counts['failed']} failed"
    )
    with progress_bar(console) as progress:
        task = progress.add_task("processing", total=None)

        def step(obs_id: int, result: StageResult) -> None:
            progress.update(task, advance=1, description=f"{result.stage} #{obs_id}")

        processed = process_pending(runtime, on_stage=step)
    summary = DemoSummary(
        files=survey.paths,
        ingested=counts["ingested"],
        duplicates=counts["duplicate"],
        failed=counts["failed"],
        observations=0,
    )
    _print_observations(runtime, console, survey.paths)
    _print_recovery(runtime, console, survey.truth, summary)
    summary.stage_seconds = _print_timings(runtime, console, processed, summary.observation_ids)
    shared = shared_data_dir(runtime)
    alert_dir = shared / "ztf_alerts" if shared is not None else None
    if alerts and alert_dir is not None and alert_dir.is_dir():
        summary.alerts = _ingest_alerts(runtime, alert_dir, console)
    else:
        console.print("real ZTF alerts: shared data folder not found, skipped")
    if report:
        found, conf = match_truth(survey.truth, _demo_detections(runtime))
        truth = survey.truth.copy()
        truth["recovered"] = found
        truth["confidence"] = conf
        summary.report = write_report(
            runtime,
            demo_dir / "report.html",
            title="AstrID demo survey",
            truth=truth,
            stage_seconds=summary.stage_seconds,
        )
        console.print(f"report: {summary.report.resolve()}")
    _demo_curation(runtime, console)
    _demo_release(runtime, console)
    summary.wall_s = time.perf_counter() - started
    console.print(f"demo finished in {summary.wall_s:.1f} s")
    console.print(
        "look further: `astrid observations list`, `astrid status`, "
        "`astrid process --pending` after `astrid ingest PATH...` for your own FITS files, "
        f"or open {demo_dir / 'report.html'} in a browser"
    )
    return summary


def _print_observations(runtime: Runtime, console: Console, files: list[Path]) -> None:
    names = {p.name for p in files}
    table = RichTable(
        "id",
        "file",
        "mjd",
        "status",
        "fwhm",
        "candidates",
        "detections",
        "real",
        title="observations",
    )
    with runtime.db.session() as session:
        obs_rows = [
            o
            for o in session.scalars(select(Observation).order_by(Observation.id))
            if o.filename in names
        ]
        for o in obs_rows:
            n_c = session.scalar(
                select(func.count()).select_from(Candidate).where(Candidate.observation_id == o.id)
            )
            n_d = session.scalar(
                select(func.count()).select_from(Detection).where(Detection.observation_id == o.id)
            )
            n_r = session.scalar(
                select(func.count())
                .select_from(Detection)
                .where(Detection.observation_id == o.id, Detection.confidence >= REAL_THRESHOLD)
            )

            fwhm = session.scalar(
                select(PreprocessResult.fwhm).where(PreprocessResult.observation_id == o.id)
            )
            status = o.status.value
            if status == "preprocessed":
                status = "preprocessed (reference)"
            elif status == "failed":
                status = f"failed: {o.status_reason}"
            table.add_row(
                str(o.id),
                o.filename or "",
                f"{o.mjd:.1f}" if o.mjd else "",
                status,
                f"{fwhm:.2f}" if fwhm else "",
                str(n_c),
                str(n_d),
                str(n_r),
            )
    console.print(table)


def _print_recovery(runtime: Runtime, console: Console, truth: Table, summary: DemoSummary) -> None:
    dets = _demo_detections(runtime)
    names = {p.name for p in summary.files}
    dets = [d for d in dets if d[3] in names]
    found, conf = match_truth(truth, dets)
    real = found & (np.nan_to_num(conf, nan=-1.0) >= REAL_THRESHOLD)
    with runtime.db.session() as session:
        ids = [
            i
            for i, f in session.execute(select(Observation.id, Observation.filename)).all()
            if f in names
        ]
        summary.observations = len(ids)
        summary.observation_ids = ids
        summary.candidates = int(
            session.scalar(
                select(func.count()).select_from(Candidate).where(Candidate.observation_id.in_(ids))
            )
            or 0
        )
    summary.detections = len(dets)
    summary.injected = len(truth)
    summary.recovered = int(found.sum())
    summary.recovered_real = int(real.sum())
    # Real-scored detections that match no injected transient (cosmic rays, residuals...).
    tr = np.array([(r["ra"], r["dec"]) for r in truth], dtype=float)
    false_real = 0
    for ra, dec, c, fname in dets:
        if c is None or c < REAL_THRESHOLD:
            continue
        sel = np.array([f == fname for f in truth["file"]])
        if not sel.any():
            false_real += 1
            continue
        sep = np.asarray(angular_separation_deg(tr[sel, 0], tr[sel, 1], ra, dec)) * 3600.0
        if float(np.min(sep)) > MATCH_RADIUS_ARCSEC:
            false_real += 1
    summary.false_real = false_real
    snr = np.asarray(truth["ideal_snr"], dtype=float)
    bright = snr >= 10
    console.print(
        f"{summary.observations} observations, {summary.candidates} candidates, "
        f"{summary.detections} detections"
    )
    console.print(
        f"injected transients: {summary.injected}; recovered as detections: "
        f"{summary.recovered} ({summary.recovered / max(summary.injected, 1):.0%}); "
        f"scored real (P ≥ {REAL_THRESHOLD}): {summary.recovered_real}; "
        f"ideal S/N ≥ 10: {int((found & bright).sum())} of {int(bright.sum())} recovered"
    )
    console.print(
        f"detections scored real that match no injection (cosmic rays, residuals): "
        f"{summary.false_real}"
    )


def _print_timings(
    runtime: Runtime, console: Console, processed: ProcessSummary, ids: list[int]
) -> dict[str, float]:
    stored = stage_timings(runtime, ids)
    table = RichTable(
        "stage",
        "runs stored",
        "seconds (stored runs)",
        "this run: done",
        "reused",
        "skipped",
        "failed",
        title="time per stage",
    )
    for stage in STAGE_NAMES:
        c = processed.stage_counts.get(stage, {})
        n, secs = stored.get(stage, (0, 0.0))
        table.add_row(
            stage,
            str(n),
            f"{secs:.2f}",
            *(str(c.get(k, 0)) for k in ("done", "reused", "skipped", "failed")),
        )
    console.print(table)
    return {stage: secs for stage, (_, secs) in stored.items()}


def _demo_curation(runtime: Runtime, console: Console) -> None:
    """Demo users and a few votes (astrid.domain.curation_demo); links to follow."""
    from astrid.domain.curation_demo import DEMO_PASSWORD, seed_demo_curation
    from astrid.domain.votes import ConsensusRule

    with runtime.db.session() as session:
        done = seed_demo_curation(session, ConsensusRule.from_settings(runtime.settings))
    n_consensus = sum(v["consensus"] for v in done["votes"])
    console.print(
        f"curation: users 'curator' and 'expert' (password {DEMO_PASSWORD!r}); "
        f"{len(done['votes'])} detection(s) voted, {n_consensus} reached consensus; "
        "`astrid serve`, then GET /api/v1/scanning/queue"
        + (f" and /api/v1/objects/{done['first_object_id']}" if done["first_object_id"] else "")
    )


def _demo_release(runtime: Runtime, console: Console) -> None:
    """A first catalog release of what the demo votes confirmed (astrid.catalog)."""
    from astrid.catalog.releases import EmptyCatalogError, create_release, release_dict

    try:
        info = release_dict(create_release(runtime, note="astrid demo"))
    except EmptyCatalogError:
        console.print("catalog: nothing confirmed by the demo votes, no release made")
        return
    console.print(
        f"catalog: release {info['version']} ({info['n_entries']} entries, {info['checksum']}); "
        f"`astrid catalog export --format votable --release {info['version']} -o demo.vot`, "
        "GET /api/v1/catalog/releases"
    )
