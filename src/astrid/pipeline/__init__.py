"""The data path: ingest sources, pipeline stages and the machinery that runs them.

In the direction of calls (a module imports only those below it)::

    demo.py            ``astrid demo``: simulate a survey, ingest, process, report
    report.py          HTML report of a processed survey (gallery, completeness)
    diagnostics.py     model-load check and a detection smoke test (simulated pair)
    hips.py            ``astrid sky build-hips``: AstrID's own sky HiPS from the references
    queue/worker.py    ``astrid worker``: consume the broker's queue
    queue/presence.py  worker heartbeat rows, task counts, queue pause flags obeyed
    queue/actors.py    Dramatiq actors (bound to the broker lazily), submit / enqueue
    queue/batch.py     queued batches: one message per observation, dependencies, waiting
    queue/broker.py    broker from ASTRID_BROKER_URL (in process / Redis / RabbitMQ), stats
    archives.py        ingest by sky position (SkyView, MAST) → stages.ingest
    alerts.py          ZTF Avro alert packets → detections, scored by AstrID's model
    orchestrate.py     runs the stages in order for one observation or everything pending
    stages/ingest.py       stage 0: a FITS file → blob + observation (the one ingest path)
    stages/preprocess.py   stage 1: quality, masks, variance → PreprocessResult
    stages/reference.py    stage 2: choose the reference image → Reference
    stages/difference.py   stage 3: subtract + extract → Difference, Candidates
    stages/detect.py       stage 4: score, cutouts → Detections, ModelRun, events
    stages/common.py       StageResult, identity hash, status moves
    stages/products.py     FITS blob I/O of stage products (kept in process for the next stage)
    stages/refcache.py     prepared references kept in process for the next new image
    stages/stamps.py       cutouts (FITS + PNG) of detections
    params.py          typed, frozen parameters per stage (PipelineParams)
    runner.py          the stage runner: Stage, run_stage, retries, parking, leases
    heap.py            pipeline processes keep freed memory for the next image
"""
