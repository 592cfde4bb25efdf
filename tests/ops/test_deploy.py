"""The deployment files are checked against the code they deploy (no container engine runs
here): compose services, Dockerfile targets, the `astrid` commands they run, the `ASTRID_*`
settings they set; the Prometheus rules with promtool (syntax and unit tests), and every
metric that the rules and the Grafana dashboard name is one the API really exports."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.main import get_command

from astrid.api import ApiConfig, create_app
from astrid.cli import app as cli_app
from astrid.flows.schedules import run_flow
from astrid.runtime import Runtime
from astrid.settings import Settings
from astrid.store.tables import NotificationDelivery, NotificationRule

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ONE_SHOT = {"migrate", "bucket"}


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _dockerfile_targets(path: Path) -> set[str]:
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", path.read_text(), flags=re.M | re.I))


def _is_astrid_command(argv: list[str]) -> bool:
    """True when ``argv`` (``astrid ...``) names a real command of the CLI."""
    assert argv[0] == "astrid"
    group = get_command(cli_app)
    ctx = group.make_context("astrid", ["--help"], resilient_parsing=True)
    command = group
    for word in argv[1:]:
        if word.startswith("-"):
            break
        sub = command.get_command(ctx, word) if hasattr(command, "get_command") else None
        if sub is None:
            return not hasattr(command, "get_command")  # an argument of a leaf command
        command = sub
    return not hasattr(command, "get_command")


def _commands(service: dict) -> list[list[str]]:  # type: ignore[type-arg]
    out = []
    for key in ("command", "healthcheck"):
        value = service.get(key)
        if key == "healthcheck" and value:
            value = value["test"][1:] if value["test"][0] == "CMD" else None
        if isinstance(value, list) and value and value[0] == "astrid":
            out.append(value)
    return out


def test_compose_services_are_consistent_with_the_code() -> None:
    compose = _compose()
    services = compose["services"]
    targets = _dockerfile_targets(DEPLOY / "Dockerfile")
    assert {"api", "worker", "scheduler"} <= targets
    settings = {f"ASTRID_{name.upper()}" for name in Settings.model_fields}
    for name, service in services.items():
        build = service.get("build")
        if isinstance(build, dict) and build.get("dockerfile") == "deploy/Dockerfile":
            assert build["target"] in targets, name
        elif isinstance(build, dict):
            assert (DEPLOY / build["dockerfile"]).is_file(), name
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        if name not in ONE_SHOT:
            assert "healthcheck" in service, f"{name} has no health check"
        for key in service.get("environment", {}):
            if key.startswith("ASTRID_"):
                assert key in settings, f"{name} sets {key}, which is not a setting"
        for argv in _commands(service):
            assert _is_astrid_command(argv), f"{name} runs unknown command {argv}"
    for stage in ("api", "worker", "scheduler"):
        assert set(services[stage]["depends_on"]) >= {"migrate", "redis"}


def test_dockerfile_commands_and_sources_exist() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for line in re.findall(r"^CMD (\[.*\])$", text, flags=re.M):
        argv = json.loads(line)
        if argv[0] == "astrid":
            assert _is_astrid_command(argv), argv
        else:  # sh -c "... astrid schedule run-due ..."
            for part in re.findall(r"astrid [a-z -]+", argv[-1]):
                assert _is_astrid_command(shlex.split(part)), part
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, flags=re.M):
        assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert "USER astrid" in text  # never run as root


def test_unknown_commands_are_detected() -> None:
    assert not _is_astrid_command(["astrid", "serv"])
    assert _is_astrid_command(["astrid", "schedule", "run-due"])
    assert not _is_astrid_command(["astrid", "schedule"])


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: scripts/install-system-packages.sh installs it")
    return path


def test_alert_rules_are_valid_and_fire_as_intended(promtool: str) -> None:
    check = subprocess.run(
        [promtool, "check", "rules", str(DEPLOY / "monitoring" / "alerts.yml")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=DEPLOY / "monitoring",
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout


def _metric_names(text: str) -> set[str]:
    return {m for m in re.findall(r"\bastrid_[a-z_]+\b", text)}


def test_every_metric_in_the_rules_and_dashboard_is_exported(
    migrated_url: str, redis_broker_url: str, make_runtime: Callable[..., Runtime]
) -> None:
    runtime = make_runtime(migrated_url, broker_url=redis_broker_url)
    run_flow(runtime, "backup", {})  # a failed flow run, so the labelled families have samples
    with runtime.db.session() as s:  # and a webhook delivery that gave up after its retries
        rule = NotificationRule(channel="webhook", target="http://127.0.0.1:9/hook", events=[])
        s.add(rule)
        s.flush()
        s.add(NotificationDelivery(rule_id=rule.id, kind="detection", status="failed", subject="x"))
    app = create_app(runtime, ApiConfig.from_settings(runtime.settings, rate_limit=0))
    client = TestClient(app)
    client.get("/api/v1/health/live")
    body = client.get("/metrics").text
    assert "astrid_store_up 1.0" in body
    assert 'astrid_flow_runs{flow="backup",status="failed"} 1.0' in body
    assert 'astrid_queue_messages{state="waiting"} 0.0' in body  # the real Redis broker
    assert 'astrid_notification_deliveries{channel="webhook",status="failed"} 1.0' in body
    exported = set()
    for name in _metric_names(body):
        exported.add(re.sub(r"_(bucket|sum|count|created)$", "", name))
    named = _metric_names((DEPLOY / "monitoring" / "alerts.yml").read_text())
    named |= _metric_names((DEPLOY / "monitoring" / "grafana-dashboard.json").read_text())
    named = {re.sub(r"_(bucket|sum|count)$", "", n) for n in named}
    missing = named - exported
    assert not missing, f"named in rules/dashboard but not exported: {sorted(missing)}"
