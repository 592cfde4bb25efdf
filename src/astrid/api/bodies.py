"""JSON request bodies that the parser itself cannot take, refused naming the field.

Python's ``json`` refuses integers of more than 4,300 digits (``int`` conversion limit) and
nesting deeper than its recursion limit; FastAPI turns both into a bare 400 "error parsing
the body". :class:`JsonBodyGuard` reads a JSON body first (bounded by the body-size limit
outside it), finds the offending value and answers 422 problem+json with its field
(``body.values.3``), or passes the body on untouched.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from astrid.api.problems import problem_response

__all__ = ["MAX_JSON_DEPTH", "JsonBodyGuard", "json_body_error"]

#: Deepest JSON nesting accepted; no AstrID body is deeper than 4.
MAX_JSON_DEPTH = 32
_MAX_DIGITS = sys.get_int_max_str_digits() or 4300
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]')


class _TooLong:
    def __init__(self, digits: int) -> None:
        self.digits = digits


def _field(path: list[Any]) -> str:
    return ".".join(["body", *(str(p) for p in path)])


def _deep_path(body: bytes) -> list[Any] | None:
    """The path to the first value nested deeper than :data:`MAX_JSON_DEPTH`, if any."""
    stack: list[list[Any]] = []  # [kind, key or index, expecting a key]
    for match in _TOKEN.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            if len(stack) >= MAX_JSON_DEPTH:
                return [entry[1] for entry in stack]
            stack.append([token, 0 if token == b"[" else "", token == b"{"])
        elif token in (b"]", b"}"):
            if stack:
                stack.pop()
        elif not stack:
            continue
        elif token == b",":
            top = stack[-1]
            if top[0] == b"[":
                top[1] += 1
            else:
                top[2] = True
        elif token == b":":
            stack[-1][2] = False
        elif stack[-1][0] == b"{" and stack[-1][2]:
            try:
                stack[-1][1] = json.loads(token)
            except ValueError:
                stack[-1][1] = "?"
    return None


def _long_int_path(value: Any, path: list[Any]) -> tuple[list[Any], int] | None:
    if isinstance(value, _TooLong):
        return path, value.digits
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        found = _long_int_path(item, [*path, key])
        if found is not None:
            return found
    return None


def _parse_int(text: str) -> int | _TooLong:
    digits = len(text.lstrip("-"))
    return _TooLong(digits) if digits > _MAX_DIGITS else int(text)


def json_body_error(body: bytes) -> tuple[str, str] | None:
    """``(field, message)`` when ``body`` nests too deep or holds an unparseable integer."""
    deep = _deep_path(body)
    if deep is not None:
        return _field(deep[:4]), f"nested deeper than {MAX_JSON_DEPTH} levels"
    try:
        parsed = json.loads(body, parse_int=_parse_int)
    except (ValueError, RecursionError):
        return None  # FastAPI reports ordinary syntax errors with their position
    found = _long_int_path(parsed, [])
    if found is not None:
        path, digits = found
        return _field(path), f"integer of {digits} digits (at most {_MAX_DIGITS})"
    return None


class JsonBodyGuard:
    """ASGI middleware: check JSON bodies with :func:`json_body_error` before the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        problem = json_body_error(b"".join(chunks))
        if problem is not None:
            field, text = problem
            response = problem_response(
                None,
                422,
                f"invalid input in: {field}",
                kind="validation",
                errors=[{"field": field, "message": text}],
            )
            await response(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers") or []:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False
