"""One error format for every failure: RFC 9457 ``application/problem+json``.

Every error leaves the API as ``{"type", "title", "status", "detail", "instance"}`` plus, for
bad input, ``errors``: a list of ``{"field", "message"}`` naming each offending field
(``query.ra``, ``body.status``, ``file``). AstridError subclasses map to 4xx by class; anything
unexpected is logged and becomes a bare 500 problem (no traceback leaves the server).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from astrid.domain.observations import InvalidCoordinatesError, NotFoundError
from astrid.domain.status import IllegalTransitionError
from astrid.errors import AstridError
from astrid.model.registry import RegistryUnavailableError
from astrid.science.fitsio import FitsError
from astrid.store.db import DatabaseUnavailableError, is_unavailable

__all__ = [
    "DATABASE_RETRY_AFTER_S",
    "PROBLEM_JSON",
    "Problem",
    "install_problem_handlers",
    "problem_response",
]

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
#: Seconds a client is asked to wait (``Retry-After``) while the database is unreachable.
DATABASE_RETRY_AFTER_S = 5
TYPE_BASE = "https://astrid.dev/problems/"

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class Problem(Exception):
    """Raise in a route to answer with a problem document.

    Parameters
    ----------
    status : int
        HTTP status.
    detail : str
        What went wrong, for a human.
    kind : str, optional
        Short slug appended to the problem ``type`` URI (default from the status).
    errors : sequence of dict, optional
        ``{"field": ..., "message": ...}`` entries naming bad input.
    headers : dict, optional
        Extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        errors: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.errors = list(errors) if errors else None
        self.headers = headers


def problem_response(
    request: Request | None,
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    errors: Sequence[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Build the ``application/problem+json`` response."""
    title = _TITLES.get(status, "Error")
    body: dict[str, Any] = {
        "type": TYPE_BASE + (kind or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    if errors:
        body["errors"] = list(errors)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _field(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc) or "request"


# Domain errors → HTTP status (most specific first).
_ASTRID_STATUS: list[tuple[type[AstridError], int, str]] = [
    (NotFoundError, 404, "not-found"),
    (IllegalTransitionError, 409, "illegal-transition"),
    (InvalidCoordinatesError, 422, "invalid-coordinates"),
    (FitsError, 422, "invalid-fits"),
    (RegistryUnavailableError, 503, "registry-unavailable"),
]


def install_problem_handlers(app: FastAPI) -> None:
    """Register handlers so that every failure is a problem document."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            request, exc.status, exc.detail, kind=exc.kind, errors=exc.errors, headers=exc.headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return problem_response(
            request, exc.status_code, detail, headers=dict(exc.headers) if exc.headers else None
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        return problem_response(
            request, 422, f"invalid input in: {fields}", kind="validation", errors=errors
        )

    @app.exception_handler(AstridError)
    async def _astrid(request: Request, exc: AstridError) -> JSONResponse:
        for cls, status, kind in _ASTRID_STATUS:
            if isinstance(exc, cls):
                return problem_response(request, status, str(exc), kind=kind)
        return problem_response(request, 400, str(exc), kind="bad-request")

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        return problem_response(
            request, 409, "the change conflicts with existing data (duplicate?)", kind="conflict"
        )

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        # e.g. NUL characters or out-of-range numbers the database cannot store: bad input.
        log.info("database refused a value on %s: %s", request.url.path, exc.orig)
        return problem_response(
            request, 422, "a value in the request cannot be stored or compared", kind="validation"
        )

    def _database_down(request: Request, exc: Exception) -> JSONResponse:
        # The driver's message names the host; it goes to the log, not to the client.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(
            request,
            503,
            "the database is unavailable; retry later",
            kind="database-unavailable",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
        )

    @app.exception_handler(DatabaseUnavailableError)
    async def _unavailable(request: Request, exc: DatabaseUnavailableError) -> JSONResponse:
        return _database_down(request, exc)

    @app.exception_handler(PoolTimeoutError)
    async def _pool_timeout(request: Request, exc: PoolTimeoutError) -> JSONResponse:
        return _database_down(request, exc)

    @app.exception_handler(DBAPIError)
    async def _dbapi(request: Request, exc: DBAPIError) -> JSONResponse:
        if is_unavailable(exc):
            return _database_down(request, exc)
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(request, 500, "the server failed to handle this request")
