"""Rate limits: per key / user / address, in memory and on the real Redis; 429 + Retry-After."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from astrid.api.ratelimit import MemoryLimiter, RedisLimiter
from tests.api.conftest import Api
from tests.conftest import REDIS_URL


@pytest.fixture
def redis_prefix(redis_server: str) -> Iterator[str]:
    import redis

    prefix = f"astrid:test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(prefix + "*"):
        client.delete(key)


def test_memory_limiter_counts_per_key_and_window() -> None:
    limiter = MemoryLimiter(limit=3, window_s=3600)
    assert [limiter.hit("a").allowed for _ in range(5)] == [True, True, True, False, False]
    assert limiter.hit("b").allowed  # other keys are independent
    refused = limiter.hit("a")
    assert not refused.allowed and refused.remaining == 0 and 1 <= refused.retry_after <= 3600


def test_api_answers_429_with_retry_after_per_caller(make_api) -> None:
    api: Api = make_api(rate_limit=5, rate_window_s=3600)
    viewer, admin = api.as_role("viewer"), api.as_role("admin")
    codes = [api.client.get("/api/v1/auth/me", headers=viewer).status_code for _ in range(7)]
    assert codes == [200] * 5 + [429] * 2
    r = api.client.get("/api/v1/auth/me", headers=viewer)
    assert r.headers["content-type"] == "application/problem+json"
    assert 1 <= int(r.headers["retry-after"]) <= 3600
    # Another user has their own budget; probes are never limited.
    assert api.client.get("/api/v1/auth/me", headers=admin).status_code == 200
    assert all(api.client.get("/health/live").status_code == 200 for _ in range(10))
    # Anonymous callers are limited by address, failed logins included (other names each
    # time, so that the per-account login backoff is not what refuses them).
    codes = [
        api.client.post(
            "/api/v1/auth/token", data={"username": f"x{i}", "password": "y"}
        ).status_code
        for i in range(7)
    ]
    assert codes == [401] * 5 + [429] * 2


def test_redis_limiter_is_shared_between_app_instances(make_api, redis_prefix: str) -> None:
    a: Api = make_api(
        rate_limit=4,
        rate_window_s=3600,
        rate_limit_redis_url=REDIS_URL,
        rate_limit_prefix=redis_prefix,
    )
    b: Api = make_api(
        rate_limit=4,
        rate_window_s=3600,
        rate_limit_redis_url=REDIS_URL,
        rate_limit_prefix=redis_prefix,
    )
    assert isinstance(a.app.state.limiter, RedisLimiter)
    h = a.as_role("curator")
    codes = [c.client.get("/api/v1/auth/me", headers=h).status_code for c in (a, b, a, b, a, b)]
    assert codes == [200, 200, 200, 200, 429, 429]
    r = b.client.get("/api/v1/auth/me", headers=h)
    assert 1 <= int(r.headers["retry-after"]) <= 3600
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(redis_prefix + "*"))
    assert len(keys) == 1 and int(client.get(keys[0])) == 7
    assert 0 < client.pttl(keys[0]) <= 3_600_000


def test_redis_limiter_window_expires(redis_prefix: str) -> None:
    limiter = RedisLimiter(REDIS_URL, limit=2, window_s=1, prefix=redis_prefix)
    import time

    # Start at the beginning of a window so the three hits share it.
    time.sleep(1 - time.time() % 1 + 0.01)
    assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]
    time.sleep(1.05)
    assert limiter.hit("k").allowed
