"""End-to-end pipeline throughput: in process, and on Redis with 1 and 2 worker processes.

Simulates a survey (``--fields`` fields × ``--epochs`` epochs of ``--size``² images, epoch 0
of each field the deep reference), ingests it into a fresh SQLite database + local blob
store per mode, then times the whole pipeline (preprocess → reference → difference →
detect with the default model):

* ``inprocess``: :func:`astrid.pipeline.orchestrate.process_pending` in this process;
* ``redis1`` / ``redis2``: ``astrid worker --processes K`` on the real Redis (a namespace
  of its own), :func:`~astrid.pipeline.queue.batch.enqueue_observations` +
  :func:`~astrid.pipeline.queue.batch.wait_for_batch`. Workers are started and warmed (they
  answered a probe task) before the clock starts; the model is loaded by each worker's
  first detect, inside the timing, as it would be after a deployment.

Reports wall time and CPU time (user + sys of this process and of the worker processes,
which the shared 2-core machine's load does not inflate the way it inflates wall time) →
observations per hour (all observations, references included, and
per differenced observation), and the stored stage-run time per stage (mean seconds per
observation that ran it) with the science timings inside preprocess and difference.

``--steady`` (needs ``--epochs 3``): the issue-13 measure, one new image against an
existing reference. Epochs 0 and 1 of every field (the references, and a first difference
that loads the model) run untimed; the clock and the CPU count (this process, and the
workers' over the timed batch only, from ``/proc``) cover the ingest and processing of
epochs ≥ 2.

``ASTRID_BENCH_PROFILE=path``: the in-process run (what the clock covers) runs under
:mod:`cProfile`, timed in process CPU time (not wall: the shared machine's load does not
inflate it); its stats are written to ``path`` (``python -m pstats path``, snakeviz) and
the top 25 functions by cumulative time are printed. The profiler's overhead inflates the
times of that run: profile and time in separate runs.

Run by hand (results go to docs/pipeline.md, section "Throughput", and docs/benchmarks.md)::

    python benchmarks/pipeline_throughput.py --size 2048 --fields 2 --epochs 2
    python benchmarks/pipeline_throughput.py --size 2048 --fields 4 --epochs 3 --steady \
        --modes inprocess redis2
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from astrid.pipeline.demo import simulate_demo_survey
from astrid.pipeline.orchestrate import ProcessSummary, process_pending, stage_timings
from astrid.pipeline.queue.batch import enqueue_observations, wait_for_batch
from astrid.pipeline.queue.broker import make_broker
from astrid.pipeline.stages.ingest import ingest_paths
from astrid.runtime import Runtime
from astrid.settings import Settings
from astrid.store.db import upgrade
from astrid.store.tables import Difference, PreprocessResult, StageRun


def _runtime(data_dir: Path) -> Runtime:
    runtime = Runtime(Settings(data_dir=data_dir, _env_file=None))  # type: ignore[call-arg]
    upgrade(runtime.settings.resolved_database_url)
    return runtime


def _science_timings(runtime: Runtime, ids: list[int] | None = None) -> dict[str, float]:
    """Mean seconds of the sub-steps recorded by preprocess and difference (of the
    observations ``ids``; all by default)."""
    out: dict[str, list[float]] = {}
    pre = select(PreprocessResult.timings)
    diff = select(Difference.stats)
    if ids is not None:
        pre = pre.where(PreprocessResult.observation_id.in_(ids))
        diff = diff.where(Difference.observation_id.in_(ids))
    with runtime.db.session() as s:
        for t in s.scalars(pre):
            for k, v in (t or {}).items():
                if k != "total_s" and v is not None:
                    out.setdefault(f"preprocess.{k}", []).append(float(v))
        for stats in s.scalars(diff):
            for k, v in ((stats or {}).get("timings") or {}).items():
                out.setdefault(f"difference.{k}", []).append(float(v))
    return {k: float(np.mean(v)) for k, v in sorted(out.items())}


def _warm_workers(env: dict[str, str], broker_url: str, runtime: Runtime, k: int) -> None:
    """Wait until the workers answer: ``k`` probe tasks of 1 s each have succeeded."""
    from astrid.pipeline.queue.actors import enqueue

    broker = make_broker(broker_url)
    tokens = [uuid.uuid4().hex for _ in range(k)]
    for token in tokens:
        enqueue(broker, "probe", token=token, seconds=1.0)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with runtime.db.session() as s:
            n = len(
                s.scalars(
                    select(StageRun.id).where(
                        StageRun.stage == "probe", StageRun.status == "succeeded"
                    )
                ).all()
            )
        if n >= k:
            break
        time.sleep(0.2)
    broker.close()


def _cpu() -> float:
    """User + sys seconds of this process and its waited-for children so far."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _proc_cpu(pid: int) -> float:
    """User + sys seconds of a live process and its live descendants (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def run_mode(
    mode: str, paths: list[Path], root: Path, redis_url: str, warm_paths: list[Path] = ()
) -> dict[str, Any]:
    """Time ``paths`` through the pipeline; ``warm_paths`` (steady state: the references and
    a first differenced epoch, which loads the model) are processed first, untimed, and the
    timing then includes the ingest of ``paths`` ("one new image against an existing
    reference")."""
    data_dir = root / mode
    runtime = _runtime(data_dir)
    steady = bool(warm_paths)
    if steady:
        warm = ingest_paths(runtime, list(warm_paths), survey="bench")
        assert all(o.observation_id for o in warm), warm
    else:
        outcomes = ingest_paths(runtime, paths, survey="bench")
        assert all(o.observation_id for o in outcomes), outcomes
    procs: list[subprocess.Popen[bytes]] = []
    namespace = f"astrid-bench-{uuid.uuid4().hex[:10]}"
    cpu0 = _cpu()
    broker_url = f"{redis_url}?namespace={namespace}&heartbeat_timeout=30000"
    workers_cpu: float | None = None
    self_cpu: float | None = None
    try:
        if mode == "inprocess":
            if getattr(runtime.settings, "pipeline_retain_heap", False):  # as `astrid process`
                from astrid.pipeline.heap import retain_freed_memory

                retain_freed_memory()
            if getattr(runtime.settings, "pipeline_one_blas_thread", False):  # the same
                from astrid.pipeline.threads import one_blas_thread

                one_blas_thread()
            if steady:
                process_pending(runtime)
                from astrid.pipeline.stages.detect import _scorer

                _scorer("default")  # loaded, as in a running process (if no warm-up detected)
                cpu0 = _cpu()
            profile_path = os.environ.get("ASTRID_BENCH_PROFILE")
            # timed in CPU seconds (process time), not wall: the machine's load does not count
            profiler = cProfile.Profile(time.process_time) if profile_path else None
            t0 = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            if steady:
                outcomes = ingest_paths(runtime, paths, survey="bench")
            summary: ProcessSummary = process_pending(runtime)
            if profiler is not None:
                profiler.disable()
            wall = time.perf_counter() - t0
            if profiler is not None and profile_path:
                profiler.dump_stats(profile_path)
                print(f"[{mode}] cProfile of the timed run -> {profile_path}")
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        else:
            k = int(mode.removeprefix("redis"))
            env = {key: v for key, v in os.environ.items() if not key.startswith("ASTRID_")}
            env.update(
                ASTRID_DATA_DIR=str(data_dir),
                ASTRID_DATABASE_URL=runtime.settings.resolved_database_url,
                ASTRID_BROKER_URL=broker_url,
            )
            cmd = [sys.executable, "-m", "astrid", "worker", "--processes", "1"]
            procs = [subprocess.Popen(cmd, env=env) for _ in range(k)]
            _warm_workers(env, broker_url, runtime, k)
            broker = make_broker(broker_url)
            if steady:
                ids = [o.observation_id for o in warm]
                wait_for_batch(runtime, enqueue_observations(runtime, ids, broker=broker),
                               broker=broker, poll_s=0.25)  # fmt: skip
                cpu0 = _cpu()
            w0 = sum(_proc_cpu(p.pid) for p in procs)
            s0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            if steady:
                outcomes = ingest_paths(runtime, paths, survey="bench")
            batch = enqueue_observations(
                runtime, [o.observation_id for o in outcomes], broker=broker
            )
            summary = wait_for_batch(runtime, batch, broker=broker, poll_s=0.25)
            wall = time.perf_counter() - t0
            if steady:
                workers_cpu = sum(_proc_cpu(p.pid) for p in procs) - w0
                s1 = resource.getrusage(resource.RUSAGE_SELF)
                self_cpu = s1.ru_utime + s1.ru_stime - s0.ru_utime - s0.ru_stime
            broker.close()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        if mode != "inprocess":
            import redis

            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(match=f"{namespace}*"))
            if keys:
                client.delete(*keys)
            client.close()
    cpu = _cpu() - cpu0  # redis: includes the workers' start-up and warm-up probes
    if workers_cpu is not None and self_cpu is not None:
        # steady state: this process and the workers over the timed batch only
        cpu = self_cpu + workers_cpu
    timed_ids = [o.observation_id for o in outcomes if o.observation_id] if steady else None
    stages = stage_timings(runtime, timed_ids)
    science = _science_timings(runtime, timed_ids)
    statuses = summary.by_status()
    runtime.close()
    shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "mode": mode,
        "n": len(paths),
        "differenced": statuses.get("completed", 0),
        "statuses": statuses,
        "wall_s": wall,
        "cpu_s": cpu,
        "stages": stages,
        "science": science,
    }


def bench_survey(raw: Path, size: int, fields: int, epochs: int) -> Any:
    """The benchmark's simulated survey (seed 42, 6 transients per epoch), shared with
    ``pipeline_identity.py`` so that both run on the same observations."""
    return simulate_demo_survey(
        raw,
        seed=42,
        shape=(size, size),
        n_fields=fields,
        n_epochs=epochs,
        n_transients=6,
        flux_range=(500.0, 6000.0),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2048, help="image side, pixels")
    parser.add_argument("--fields", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per field (1st = reference)")
    parser.add_argument("--modes", nargs="+", default=["inprocess", "redis1", "redis2"])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--steady",
        action="store_true",
        help="time only epochs >= 2 (ingest included), after epochs 0 and 1 of every field "
        "(the references, and a first difference that loads the model) ran untimed",
    )
    args = parser.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="astrid-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.processor()}")
    t = time.perf_counter()
    survey = bench_survey(root / "raw", args.size, args.fields, args.epochs)
    print(
        f"simulated {len(survey.paths)} observations of {args.size}x{args.size} "
        f"({args.fields} fields x {args.epochs} epochs) in {time.perf_counter() - t:.1f} s"
    )
    timed, warm = list(survey.paths), []
    if args.steady:
        if args.epochs < 3:
            parser.error("--steady needs --epochs 3 or more")
        warm = [p for p in survey.paths if p.stem.endswith(("-e0", "-e1"))]
        timed = [p for p in survey.paths if p not in warm]
        print(f"steady state: {len(warm)} warm-up observations untimed, {len(timed)} timed")
    results = []
    for mode in args.modes:
        print(f"\n[{mode}] load average before: {os.getloadavg()}", flush=True)
        r = run_mode(mode, timed, root, args.redis, warm)
        results.append(r)
        per_hour = 3600.0 * r["n"] / r["wall_s"]
        print(
            f"[{mode}] {r['n']} observations ({r['differenced']} differenced) "
            f"in {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU: {per_hour:.0f} obs/h = "
            f"{24 * per_hour:.0f} obs/day; "
            f"statuses {r['statuses']}",
            flush=True,
        )
        for stage, (n, total) in r["stages"].items():
            print(f"[{mode}]   stage {stage:10s} {n:3d} runs  {total / n:7.2f} s/run")
        for k, v in r["science"].items():
            print(f"[{mode}]     {k:28s} {v:7.2f} s")
        print(f"[{mode}] load average after: {os.getloadavg()}", flush=True)
    print(
        "\n| image | mode | obs | wall (s) | CPU (s) | obs/day (wall) | obs/day (CPU, 2 cores) | "
        + " | ".join(f"{s} s/run" for s in ("preprocess", "reference", "difference", "detect"))
        + " |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        per_hour = 3600.0 * r["n"] / r["wall_s"]
        cells = [
            f"{r['stages'][s][1] / r['stages'][s][0]:.2f}" if s in r["stages"] else "-"
            for s in ("preprocess", "reference", "difference", "detect")
        ]
        per_day_cpu = 2 * 86400.0 * r["n"] / r["cpu_s"]
        print(
            f"| {args.size}² | {r['mode']} | {r['n']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
            f"{24 * per_hour:.0f} | {per_day_cpu:.0f} | " + " | ".join(cells) + " |"
        )
    shutil.rmtree(root / "raw", ignore_errors=True)


if __name__ == "__main__":
    main()
