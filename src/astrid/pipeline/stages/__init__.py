"""The pipeline's stages, one module each, in data-flow order.

:mod:`.ingest` (a file → observation; its storing step :mod:`.ingest_store`),
:mod:`.preprocess`, :mod:`.reference`,
:mod:`.difference` (+ extract, and :mod:`.limits`: per-difference detection limits),
:mod:`.detect` (score, cutouts, detections); shared pieces in :mod:`.common` (result type,
identity hash, status moves), :mod:`.products` (FITS blobs, and those kept in process for
the next stage), :mod:`.refcache` (prepared references kept in process) and :mod:`.stamps`
(cutouts).
:mod:`astrid.pipeline.orchestrate` runs them in order.
"""
