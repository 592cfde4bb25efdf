"""Structured logs: JSON lines carry the request id (API) and the run id (stages, flows)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from astrid.logs import configure_logging, log_context
from astrid.pipeline.runner import Stage, StageContext, run_stage
from astrid.runtime import Runtime
from tests.api.conftest import Api


@pytest.fixture
def json_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """AstrID's JSON handler on the root logger, writing into a buffer; the parsed lines."""
    buffer = io.StringIO()
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    handler = configure_logging("INFO", "json", stream=buffer)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]

    yield lines
    root.removeHandler(handler)
    root.handlers[:] = before[0]
    root.setLevel(before[1])


def test_json_lines_carry_ids_and_extra_fields(json_lines: Callable[[], list[dict]]) -> None:
    log = logging.getLogger("astrid.test")
    log.info("outside")
    with log_context(request_id="req-1"), log_context(run_id="stage:7"):
        log.warning("inside %d", 42, extra={"observation_id": 3})
    log.info("after")
    outside, inside, after = json_lines()
    assert inside["message"] == "inside 42" and inside["level"] == "WARNING"
    assert inside["logger"] == "astrid.test" and inside["observation_id"] == 3
    assert (inside["request_id"], inside["run_id"]) == ("req-1", "stage:7")
    assert outside["request_id"] == after["request_id"] == "-"  # restored after the block
    assert "time" in inside


def test_bad_level_or_format_is_named() -> None:
    with pytest.raises(ValueError, match="log level 'LOUD'"):
        configure_logging("LOUD", "json")
    with pytest.raises(ValueError, match="log format 'xml'"):
        configure_logging("INFO", "xml")


def test_api_request_id_is_echoed_and_on_every_line(
    api: Api, json_lines: Callable[[], list[dict]]
) -> None:
    given = api.client.get(
        "/api/v1/observations", headers={**api.as_role("viewer"), "X-Request-ID": "trace-abc.1"}
    )
    assert given.status_code == 200 and given.headers["x-request-id"] == "trace-abc.1"
    fresh = api.client.get("/api/v1/observations", headers=api.as_role("viewer"))
    new_id = fresh.headers["x-request-id"]
    assert len(new_id) == 32 and int(new_id, 16) >= 0
    # A header that is not a sane token (spaces, too long) is replaced, not echoed.
    odd = api.client.get(
        "/api/v1/observations", headers={**api.as_role("viewer"), "X-Request-ID": "a b" * 40}
    )
    assert odd.headers["x-request-id"] != "a b" * 40 and len(odd.headers["x-request-id"]) == 32
    access = [line for line in json_lines() if line["logger"] == "astrid.api.access"]
    by_id = {line["request_id"]: line for line in access}
    assert set(by_id) >= {"trace-abc.1", new_id}
    line = by_id["trace-abc.1"]
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/v1/observations", 200)
    assert line["duration_ms"] >= 0.0
    refused = api.client.get("/api/v1/observations", headers={"X-Request-ID": "anon-1"})
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "anon-1"
    assert any(
        a["request_id"] == "anon-1" and a["status"] == 401
        for a in json_lines()
        if a["logger"] == "astrid.api.access"
    )


def test_stage_log_lines_carry_the_stage_run_id(
    runtime: Runtime, json_lines: Callable[[], list[dict]]
) -> None:
    def compute(ctx: StageContext) -> int:
        logging.getLogger("astrid.test.stage").info("computing %s", ctx.params["x"])
        return 1

    stage: Stage[int] = Stage("logged", "1", compute, lambda session, ctx, value: {"v": value})
    outcome = run_stage(runtime, stage, params={"x": 5}, input_hash="h")
    assert outcome.ok
    (line,) = [x for x in json_lines() if x["logger"] == "astrid.test.stage"]
    assert line["message"] == "computing 5"
    assert line["run_id"] == f"stage:{outcome.run_id}"
