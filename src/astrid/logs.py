"""Logging set-up: one line per record, as text or JSON, carrying the request and run ids.

Every process (``astrid serve``, ``astrid worker``, the scheduler, any command) calls
:func:`configure_logging` once with the ``ASTRID_LOG_LEVEL`` / ``ASTRID_LOG_FORMAT``
settings. ``json`` writes one JSON object per line (``time``, ``level``, ``logger``,
``message``, ``request_id``, ``run_id`` and any ``extra=`` fields) for a log shipper;
``text`` writes the same fields for a person.

The ids live in context variables, so they follow a request through the API's handlers and
a stage run through its compute, in threads and in asyncio tasks alike:
``with log_context(request_id="…"):`` sets them and restores the previous values after.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal, TextIO

from pythonjsonlogger.json import JsonFormatter

__all__ = [
    "LOG_FORMATS",
    "REQUEST_ID",
    "RUN_ID",
    "ContextFilter",
    "configure_logging",
    "log_context",
]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[str, ...] = ("text", "json")

#: The id of the API request being served (the caller's ``X-Request-ID`` or a new one).
REQUEST_ID: ContextVar[str | None] = ContextVar("astrid_request_id", default=None)
#: The pipeline stage run or flow run being executed (``stage:<id>`` or ``flow:<id>``).
RUN_ID: ContextVar[str | None] = ContextVar("astrid_run_id", default=None)

_TEXT = "%(asctime)s %(levelname)-7s %(name)s [req=%(request_id)s run=%(run_id)s] %(message)s"
_JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(run_id)s"
_RENAME = {"asctime": "time", "levelname": "level", "name": "logger"}


class ContextFilter(logging.Filter):
    """Copies the current request and run ids onto every record (``-`` when unset)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        record.run_id = RUN_ID.get() or "-"
        return True


@contextmanager
def log_context(*, request_id: str | None = None, run_id: str | None = None) -> Iterator[None]:
    """Set the ids given (others keep their value) for the ``with`` block."""
    tokens = []
    if request_id is not None:
        tokens.append((REQUEST_ID, REQUEST_ID.set(request_id)))
    if run_id is not None:
        tokens.append((RUN_ID, RUN_ID.set(run_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class _AstridHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler :func:`configure_logging` installed, so a second call replaces it."""


def configure_logging(
    level: str = "INFO", fmt: str = "text", stream: TextIO | None = None
) -> logging.Handler:
    """Install AstrID's handler on the root logger (replacing an earlier one); return it.

    Parameters
    ----------
    level : str
        A logging level name (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``).
    fmt : {"text", "json"}
        One human-readable line, or one JSON object per line.
    stream : file, optional
        Where lines go (default ``sys.stderr``).

    Raises
    ------
    ValueError
        For an unknown level or format (named in the message).
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: use one of {', '.join(LOG_FORMATS)}")
    handler = _AstridHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter(_JSON_FIELDS, rename_fields=_RENAME))
    else:
        handler.setFormatter(logging.Formatter(_TEXT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _AstridHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # Libraries that log every HTTP call or SQL statement at INFO stay at WARNING.
    for noisy in ("httpx", "httpcore", "botocore", "urllib3", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    return handler
