"""The ``astrid`` command line: thin faces over the domain, pipeline and science layers.

``app`` lives in :mod:`astrid.cli.app`; each module below registers its own commands on it.
"""

from astrid.cli import core as _core  # noqa: F401  (init, db, ingest, observations, demo)
from astrid.cli.app import app, main

__all__ = ["app", "main"]
