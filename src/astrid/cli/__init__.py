"""The ``astrid`` command line: thin faces over the domain, pipeline and science layers.

``app`` lives in :mod:`astrid.cli.app`; each module below registers its own commands on it.
"""

# Command modules register themselves on ``app`` when imported; the order is the help order.
from astrid.cli import core as _core  # noqa: F401, I001  (init, db, ingest, observations, demo)
from astrid.cli import pipeline as _pipeline  # noqa: F401  (ingest-position, ingest-alerts, worker, status)
from astrid.cli import process as _process  # noqa: F401  (process)
from astrid.cli import science as _science  # noqa: F401  (subtract, detect)
from astrid.cli import model as _model  # noqa: F401  (train, models, score-alerts)
from astrid.cli import api as _api  # noqa: F401  (serve, users, api-keys)
from astrid.cli import catalog as _catalog  # noqa: F401  (catalog ..., notify ...)
from astrid.cli import curation as _curation  # noqa: F401  (objects, curation)
from astrid.cli import ops as _ops  # noqa: F401  (backup, restore, schedule)
from astrid.cli import sky as _sky  # noqa: F401  (sky build-hips)
from astrid.cli.app import app, main

__all__ = ["app", "main"]
