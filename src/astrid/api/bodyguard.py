"""Request bodies are read only from callers allowed to send them, and only up to a limit.

:class:`BodyGuard` is a pure ASGI middleware (it wraps ``receive``, so it sees chunked bodies
as they stream in, which a ``Content-Length`` check cannot):

* a route that needs credentials is authenticated **before a byte of its body is read**
  (anonymous or bad credentials: 401; an upload route below the uploader's role: 403), so an
  anonymous upload is never spooled to disk;
* the bytes are counted as they arrive and reading stops at the route's limit (upload
  routes: ``max_upload_bytes``; ``POST /models/{name}/predict``: ``max_predict_bytes``; every
  other route: ``max_body_bytes``), answered 413
  problem+json whatever the app was doing with the body.

Public routes with a body (login, refresh, logout) are not authenticated here; their small
limit bounds what an anonymous caller can make the server read.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import UploadFile
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from astrid.api.auth import authenticate_request, client_address, rate_limit, role_rank
from astrid.api.config import ApiConfig
from astrid.api.problems import Problem, problem_response
from astrid.api.security import AuthError

__all__ = ["BodyGuard", "BodyTooLargeError", "read_upload"]

_NO_BODY = frozenset(("GET", "HEAD", "OPTIONS", "DELETE", "TRACE"))
UPLOAD_ROLE = "curator"


def read_upload(file: UploadFile, name: str, limit: int) -> bytes:
    """The bytes of an uploaded ``file`` (``name``: as the answer names it), at most ``limit``.

    The guard already stops a body past the route's limit; this keeps a route's own limit
    when the two differ. Raises a 413 :class:`~astrid.api.problems.Problem` beyond it.
    """
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise Problem(
            413,
            f"{name} is larger than {limit} bytes",
            errors=[{"field": "file", "message": "file too large"}],
        )
    return data


class BodyTooLargeError(Exception):
    """Raised into the app when the body passes its limit (the guard answers 413)."""


def _credentials(request: Request) -> tuple[HTTPAuthorizationCredentials | None, str | None]:
    bearer = None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        bearer = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token.strip())
    return bearer, request.headers.get("x-api-key")


class BodyGuard:
    """Authenticate before the body, then count its bytes against the route's limit."""

    def __init__(self, app: ASGIApp, config: ApiConfig, prefix: str = "") -> None:
        self.app = app
        self.config = config
        self.uploads = frozenset(prefix + p for p in config.upload_paths)
        self.public = frozenset(prefix + p for p in config.public_body_paths)
        self.predict = re.compile(re.escape(prefix) + r"/models/[A-Za-z0-9._-]+/predict/?")

    def limit_for(self, path: str) -> int:
        """Largest body accepted on ``path``, in bytes (multipart overhead allowed)."""
        if path.rstrip("/") in self.uploads:
            return self.config.max_upload_bytes + 64 * 1024
        if self.predict.fullmatch(path):
            return self.config.max_predict_bytes
        return self.config.max_body_bytes

    async def _refusal(self, scope: Scope) -> Any:
        """The 401/403/429 problem for a caller who may not send this body, else None."""
        request = Request(scope)
        if request.app is None or request.url.path.rstrip("/") in self.public:
            return None
        bearer, api_key = _credentials(request)
        try:
            principal = await run_in_threadpool(authenticate_request, request, bearer, api_key)
        except AuthError as exc:
            principal, detail = None, str(exc)
        except Problem as exc:  # e.g. conflicting credentials
            return problem_response(
                request, exc.status, exc.detail, kind=exc.kind, headers=exc.headers
            )
        else:
            detail = "this route needs credentials (bearer token or X-API-Key)"
        if principal is None:
            try:  # failed authentications count against the address, as in the routes
                rate_limit(request, f"ip:{client_address(request)}")
            except Problem as exc:
                return problem_response(
                    request, exc.status, exc.detail, kind=exc.kind, headers=exc.headers
                )
            return problem_response(
                request,
                401,
                detail,
                kind="not-authenticated",
                headers={"WWW-Authenticate": "Bearer", "Connection": "close"},
            )
        if request.url.path.rstrip("/") in self.uploads and role_rank(
            principal.role or ""
        ) < role_rank(UPLOAD_ROLE):
            return problem_response(
                request,
                403,
                f"this route needs the {UPLOAD_ROLE!r} role or higher",
                kind="forbidden",
                headers={"Connection": "close"},
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method", "GET") in _NO_BODY:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = self.limit_for(path)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        refusal = await self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send, limit)
            return
        state = {"received": 0, "over": False, "started": False}

        async def counted_receive() -> Message:
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["over"] = True
                    raise BodyTooLargeError(f"request body is larger than {limit} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            if state["over"] and not state["started"]:
                return  # the app's answer to a cut body is replaced by the 413 below
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLargeError:
            pass
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["started"]:
            await self._too_large(scope, receive, send, limit)

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(
            None,
            413,
            f"request body is larger than {limit} bytes",
            errors=[{"field": "body", "message": "too large"}],
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
