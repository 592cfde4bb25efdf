"""AstrID's REST API: a FastAPI app over the domain and pipeline layers.

``create_app(runtime, config)`` (in :mod:`astrid.api.app`) builds the app; ``astrid serve``
runs it under uvicorn. Every route lives under ``/api/v1`` (health and metrics at the root),
declares an access policy, and fails with RFC 9457 ``application/problem+json``.

Modules, from the app down::

    ``app``                  the app factory: middleware, problem handlers, routers
    ``config``               ApiConfig: token lifetimes, identity providers, limits
    ``deps``                 shared dependencies: the runtime and config of the running app
    ``auth``                 roles, principals and the per-route access policies
    ``security``             passwords, API keys, AstrID JWTs, external (OIDC) tokens
    ``ratelimit``            fixed-window rate limits (memory or Redis)
    ``metrics``              Prometheus request counts and latencies at ``/metrics``
    ``request_ids``          request ids on every log line, ``X-Request-ID``, the access log
    ``problems``             RFC 9457 problem+json errors and their handlers
    ``bodies``               JSON bodies the parser cannot take (huge integers, deep nesting)
    ``openapi``              the problem+json answers of each operation in the OpenAPI
    ``pagination``           keyset cursors of every list route
    ``fastjson``             pre-serialised JSON answers of hot read routes
    ``fastquery``            a hot route's query string validated in one pydantic call
    ``hotpath``              the hot detection reads through asyncpg on the event loop
    ``schemas``              request and response bodies (pydantic, the OpenAPI schema)
    ``stream``               Server-Sent Events from the domain-event outbox
    ``routes_auth``          login, refresh, logout, API keys, user administration
    ``routes_health``        liveness and readiness probes
    ``routes_observations``  observations: list, cone search, status, FITS upload, limits
    ``routes_calibration``   master bias/dark/flat frames: register (admin), list
    ``routes_ingest``        ingest by sky position and ZTF alert files
    ``routes_candidates``    candidates extracted from difference images
    ``routes_detections``    detections: filters, statistics, cutouts
    ``routes_pipeline``      pipeline batches, parked failures, retries
    ``routes_models``        the model registry: versions, promotion, rollback, predict
    ``routes_model_ops``     the closed loop (retrain), drift and shadow A/B of a model
    ``routes_scanning``      the scanning queue (filters, orders, cursor)
    ``routes_votes``         votes, undo, bulk votes, curation state, the consensus rule
    ``routes_objects``       sky objects, light curves, comments
    ``routes_review``        expert queue and reviews, discoveries, taxonomy
    ``routes_crossmatch``    triggers: cross-match an object, a discovery's TNS AT report
    ``routes_catalog``       catalog search, releases, streamed exports, analytics
    ``routes_notify``        notification rules, deliveries, unsubscribe
    ``routes_workers``       worker heartbeats, queue depths, pause/resume/purge, retry parked
    ``routes_diagnostics``   health checks, model load and a detection smoke test on demand
    ``schemas_curation``     request and response bodies of the curation routes
    ``curation_common``      dependencies shared by the curation routes
    ``bodyguard``            authenticate before a body is read; per-route streamed size limits
    ``lockout``              per-account login backoff, bounded password hashing
    ``store_metrics``        Prometheus gauges read from the store at scrape time
    ``dashboard``            serves the built web dashboard at ``/``
"""

from astrid.api.app import create_app
from astrid.api.config import ApiConfig

__all__ = ["ApiConfig", "create_app"]
