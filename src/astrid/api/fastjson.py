"""Pre-serialised JSON answers for hot read routes.

FastAPI validates a route's return value against its ``response_model`` and then serialises
it; for a page of 50 rows that is most of the request's CPU. A hot route instead builds plain
dicts (column values straight from a Core select, already of the model's types) and returns
:func:`json_response`: one call into pydantic-core's serialiser, the same one the response
model would use, so the bytes are the same (datetimes as ISO 8601 with ``Z``, enums as their
values, NaN and infinities as ``null``). The route keeps ``response_model=`` for the OpenAPI
schema; FastAPI passes a returned :class:`~starlette.responses.Response` through untouched.
``tests/api/test_detections_fastjson.py`` checks the bytes against the models'.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json
from starlette.responses import Response

__all__ = ["dumps", "json_response", "json_response_bytes"]


def dumps(body: Any) -> bytes:
    """``body`` (dicts, lists, str, numbers, datetimes, enums) as compact JSON bytes."""
    return to_json(body, inf_nan_mode="null")


def json_response(body: Any, status_code: int = 200) -> Response:
    """An ``application/json`` response of ``body`` serialised by :func:`dumps`."""
    return Response(dumps(body), status_code=status_code, media_type="application/json")


def json_response_bytes(body: bytes, status_code: int = 200) -> Response:
    """An ``application/json`` response of ``body``, already serialised by :func:`dumps`."""
    return Response(body, status_code=status_code, media_type="application/json")
