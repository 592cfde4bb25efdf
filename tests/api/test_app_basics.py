"""Health probes, OpenAPI, and the one error format (problem+json naming the field)."""

from __future__ import annotations

from tests.api.conftest import Api


def _is_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("https://")
    return body


def test_health_live_and_ready_check_real_dependencies(api: Api) -> None:
    assert api.client.get("/health/live").json() == {"status": "ok"}
    assert api.client.get("/health/ready").json() == {"status": "ok"}  # anonymous: status only
    ready = api.client.get("/health/ready", headers=api.as_role("admin"))
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["storage"]["status"] == "ok"
    assert checks["broker"]["status"] == "not configured"
    assert checks["mlflow"]["status"] == "not configured"


def test_ready_is_503_when_the_broker_is_unreachable(make_api, runtime) -> None:
    runtime.settings.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        api = make_api()
        ready = api.client.get("/health/ready", headers=api.as_role("admin"))
    finally:
        runtime.settings.broker_url = None
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"]["status"].startswith("error")
    assert body["checks"]["database"]["status"] == "ok"


def test_openapi_and_docs_are_served(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert "/api/v1/observations" in spec["paths"]
    assert "/api/v1/stream/events" in spec["paths"]
    assert api.client.get("/docs").status_code == 200


def test_unknown_route_and_method_are_problems(api: Api) -> None:
    _is_problem(api.client.get("/api/v1/nothing-here"), 404)
    _is_problem(api.client.delete("/health/live"), 405)


def test_bad_input_names_the_field(api: Api) -> None:
    h = api.as_role("admin")
    body = _is_problem(
        api.client.get("/api/v1/observations/cone?ra=400&dec=0&radius=1", headers=h), 422
    )
    assert [e["field"] for e in body["errors"]] == ["query.ra"]
    body = _is_problem(
        api.client.get("/api/v1/observations/cone?ra=10&dec=-91&radius=abc", headers=h), 422
    )
    assert {e["field"] for e in body["errors"]} == {"query.dec", "query.radius"}
    body = _is_problem(api.client.get("/api/v1/observations/abc", headers=h), 422)
    assert body["errors"][0]["field"] == "path.observation_id"
    # Malformed JSON and wrong types in a body.
    bad_json = api.client.post(
        "/api/v1/observations/validate",
        content=b'{"ra": 10, "dec": ',
        headers={**h, "Content-Type": "application/json"},
    )
    assert _is_problem(bad_json, 422)["errors"][0]["field"].startswith("body")
    wrong = api.client.post(
        "/api/v1/observations/validate", json={"ra": "north", "dec": 1}, headers=h
    )
    assert [e["field"] for e in _is_problem(wrong, 422)["errors"]] == ["body.ra"]
    # A bad cursor.
    body = _is_problem(api.client.get("/api/v1/detections?cursor=%27%3B--", headers=h), 400)
    assert body["errors"][0]["field"] == "query.cursor"


def test_sql_ish_filter_strings_are_just_values(api: Api) -> None:
    h = api.as_role("viewer")
    r = api.client.get("/api/v1/observations", params={"survey": "x' OR '1'='1"}, headers=h)
    assert r.status_code == 200 and r.json()["items"] == []
    r = api.client.get(
        "/api/v1/detections", params={"label": "real'; DROP TABLE detections;--"}, headers=h
    )
    assert r.status_code == 200 and r.json()["items"] == []
    r = api.client.get("/api/v1/detections", params={"status": "pending' OR 1=1"}, headers=h)
    assert _is_problem(r, 422)["errors"][0]["field"] == "query.status"
    assert api.client.get("/api/v1/detections/statistics", headers=h).json()["total"] == 0


def test_metrics_count_requests_by_route_template(api: Api) -> None:
    api.client.get("/health/live")
    api.client.get("/api/v1/observations/7", headers=api.as_role("viewer"))
    text = api.client.get("/metrics").text
    assert 'astrid_http_requests_total{method="GET",route="/health/live",status="200"} 1.0' in text
    assert 'route="/api/v1/observations/{observation_id}",status="404"} 1.0' in text


def test_database_pool_settings_are_honoured(postgres_url: str, make_runtime) -> None:
    from astrid.api import ApiConfig, create_app
    from astrid.store.db import upgrade

    upgrade(postgres_url)
    runtime = make_runtime(postgres_url, db_pool_size=3, db_max_overflow=2, db_pool_timeout=4.5)
    app = create_app(runtime, ApiConfig(rate_limit=0))
    pool = app.state.runtime.db.engine.pool
    assert pool.size() == 3
    assert pool._max_overflow == 2 and pool._timeout == 4.5


def test_nul_characters_are_refused_not_crashed(api: Api) -> None:
    h = api.as_role("viewer")
    body = _is_problem(api.client.get("/api/v1/observations?survey=a%00b", headers=h), 422)
    assert body["errors"][0]["field"] == "query.survey"
    login = api.client.post("/api/v1/auth/token", data={"username": "a\x00", "password": "p"})
    assert login.status_code in (401, 422)
    assert login.headers["content-type"] == "application/problem+json"


def test_astrid_serve_runs_the_api(tmp_path) -> None:
    """`astrid serve` in a real process answers on loopback; unmigrated → one clear error."""
    import subprocess
    import sys

    import httpx

    from astrid.store.db import upgrade
    from tests.api.conftest import free_port, serve_env, wait_ready

    env = serve_env(tmp_path)
    cmd = [sys.executable, "-m", "astrid", "serve", "--port"]
    bare = subprocess.run(
        [*cmd, str(free_port())], env=env, capture_output=True, text=True, timeout=60
    )
    assert bare.returncode == 2 and "astrid init" in bare.stderr
    upgrade(f"sqlite:///{tmp_path / 'astrid.db'}")
    port = free_port()
    proc = subprocess.Popen(
        [*cmd, str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        ready = wait_ready(proc, port, patience_s=120)
        assert ready.status_code == 200 and ready.json() == {"status": "ok"}  # anonymous
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/observations", timeout=5)
        assert r.status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_ready_pings_a_namespaced_redis_broker(make_api, runtime, redis_server: str) -> None:
    """AstrID's broker options (namespace, heartbeat_timeout) are not passed to the client."""
    runtime.settings.broker_url = f"{redis_server}?namespace=t-ready&heartbeat_timeout=1500"
    try:
        api = make_api()
        ready = api.client.get("/health/ready", headers=api.as_role("admin"))
    finally:
        runtime.settings.broker_url = None
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["broker"]["status"] == "ok"


def test_rate_limits_use_a_namespaced_redis_broker(redis_server: str) -> None:
    from astrid.api.config import ApiConfig
    from astrid.settings import Settings

    url = f"{redis_server}?namespace=t-rl&heartbeat_timeout=1500&maintenance_chance=10"
    settings = Settings(broker_url=url, _env_file=None)  # type: ignore[call-arg]
    assert ApiConfig.from_settings(settings).rate_limit_redis_url == redis_server
