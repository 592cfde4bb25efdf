"""Per-account login backoff (shared through the database by every API process) and the
bound on concurrent password hashing, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from astrid.api.lockout import LoginGuard
from tests.api.conftest import PASSWORD, Api, LiveServer

LOGIN = "/api/v1/auth/token"


def _login(api: Api, password: str, username: str = "curator-user") -> httpx.Response:
    return api.client.post(LOGIN, data={"username": username, "password": password})


def test_backoff_refuses_the_right_password_until_it_expires(make_api) -> None:
    # 2 s, 4 s: long enough that a slow argon2 on a loaded machine cannot outlast them.
    api = make_api(login_free_failures=2, login_backoff_base_s=2.0, login_backoff_max_s=60)
    other = make_api(login_free_failures=2, login_backoff_base_s=2.0)  # a second "process"
    assert [_login(api, "wrong password").status_code for _ in range(2)] == [401, 401]
    assert _login(api, PASSWORD).status_code == 200  # below the free failures: no backoff
    for _ in range(3):  # the third consecutive failure starts a 2 s block
        assert _login(api, "wrong password").status_code == 401
    blocked = _login(api, PASSWORD)
    assert blocked.status_code == 429 and blocked.headers["Retry-After"] == "2"
    assert blocked.headers["content-type"] == "application/problem+json"
    assert _login(other, PASSWORD).status_code == 429  # shared by every API process
    time.sleep(2.1)
    assert _login(api, "wrong password").status_code == 401  # fourth failure: 4 s
    again = _login(other, PASSWORD)
    assert again.status_code == 429 and again.headers["Retry-After"] == "4"
    time.sleep(4.1)
    assert _login(api, PASSWORD).status_code == 200  # after the backoff the password works
    assert _login(api, "wrong password").status_code == 401  # the count starts again
    assert _login(api, PASSWORD).status_code == 200
    # Unknown names are throttled alike (the answers do not reveal which names exist).
    for _ in range(3):
        assert _login(api, "wrong password", "nobody-here").status_code == 401
    assert _login(api, "wrong password", "nobody-here").status_code == 429


def test_backoff_grows_exponentially_to_its_cap(api: Api) -> None:
    guard = LoginGuard(api.config)
    free = api.config.login_free_failures
    delays = [guard.backoff_s(free + k) for k in range(0, 14)]
    assert delays[:5] == [0.0, 1.0, 2.0, 4.0, 8.0]
    assert delays[-1] == api.config.login_backoff_max_s == 900.0


def test_concurrent_password_hashing_is_bounded(make_api) -> None:
    api = make_api(max_concurrent_logins=1)
    api.app.state.login_guard = LoginGuard(api.config, wait_s=0.05)
    with LiveServer(api.app) as server, httpx.Client(base_url=server.url, timeout=60) as client:

        def attempt(i: int) -> httpx.Response:
            return client.post(LOGIN, data={"username": f"user{i}", "password": "x" * 12})

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(attempt, range(8)))
    codes = sorted(r.status_code for r in answers)
    assert set(codes) <= {401, 503} and 503 in codes and 401 in codes, codes
    busy = next(r for r in answers if r.status_code == 503)
    assert busy.headers["Retry-After"] == "1" and "too many logins" in busy.json()["detail"]
