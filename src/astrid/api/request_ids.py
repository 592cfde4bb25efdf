"""Request ids and the access log: one structured line per request.

Each request gets an id — the caller's ``X-Request-ID`` when it is a sane token (a proxy's
or a client's, so one id follows a request across hosts), else a new one — that is set for
every log line written while serving it (:data:`astrid.logs.REQUEST_ID`) and echoed in the
response's ``X-Request-ID`` header. The access line (logger ``astrid.api.access``) carries
method, path, status and duration in milliseconds as fields, which the JSON log format keeps.
Plain ASGI, so streamed responses (SSE) pass through untouched.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from astrid.logs import log_context

__all__ = ["REQUEST_ID_HEADER", "RequestIdMiddleware"]

REQUEST_ID_HEADER = "x-request-id"
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
access_log = logging.getLogger("astrid.api.access")


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SANE.match(text) else None
    return None


class RequestIdMiddleware:
    """Sets the request id for the request's log lines, echoes it, writes the access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                if access_log.isEnabledFor(logging.INFO):
                    elapsed_ms = round((time.perf_counter() - start) * 1000, 2)
                    access_log.info(
                        "%s %s %d %.1f ms",
                        scope["method"],
                        scope["path"],
                        status,
                        elapsed_ms,
                        extra={
                            "method": scope["method"],
                            "path": scope["path"],
                            "status": status,
                            "duration_ms": elapsed_ms,
                            "client": (scope.get("client") or ("-",))[0],
                        },
                    )
