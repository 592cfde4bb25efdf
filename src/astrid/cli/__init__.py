"""The ``astrid`` command line: thin faces over the domain, pipeline and science layers.

``app`` lives in :mod:`astrid.cli.app`; each module below registers its own commands on it,
imported when typer first builds the command tree (``astrid detect`` and ``astrid subtract``
import :mod:`astrid.cli.science` alone; see :data:`astrid.cli.app.COMMAND_MODULES`):
:mod:`~astrid.cli.core`, :mod:`~astrid.cli.pipeline`, :mod:`~astrid.cli.process`,
:mod:`~astrid.cli.calibration`, :mod:`~astrid.cli.science`, :mod:`~astrid.cli.model`,
:mod:`~astrid.cli.model_ops`, :mod:`~astrid.cli.api`, :mod:`~astrid.cli.catalog`,
:mod:`~astrid.cli.curation`, :mod:`~astrid.cli.ops`, :mod:`~astrid.cli.sky`.
"""

from astrid.cli.app import app, main

__all__ = ["app", "main"]
