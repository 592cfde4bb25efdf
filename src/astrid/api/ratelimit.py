"""Fixed-window rate limits per API key, user or client address.

``MemoryLimiter`` keeps counters in the process (one server, tests); ``RedisLimiter`` keeps
them in Redis (``INCR`` + ``PEXPIRE`` in one transaction) so every API replica shares them.
A refused request gets 429 with ``Retry-After`` = seconds until its window ends.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Decision", "Limiter", "MemoryLimiter", "RedisLimiter", "make_limiter"]


@dataclass(frozen=True)
class Decision:
    """Outcome of one hit: allowed or not, what is left, and when to retry (seconds)."""

    allowed: bool
    remaining: int
    retry_after: int


class Limiter(Protocol):
    limit: int
    window_s: int

    def hit(self, key: str) -> Decision: ...


class MemoryLimiter:
    """In-process counters (thread-safe)."""

    def __init__(self, limit: int, window_s: int) -> None:
        self.limit = limit
        self.window_s = window_s
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, int]] = {}

    def hit(self, key: str) -> Decision:
        now = time.time()
        window = int(now // self.window_s)
        with self._lock:
            start, count = self._counts.get(key, (window, 0))
            if start != window:
                start, count = window, 0
            count += 1
            self._counts[key] = (start, count)
            if len(self._counts) > 100_000:  # drop old windows
                self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
        retry = max(1, math.ceil((window + 1) * self.window_s - now))
        return Decision(count <= self.limit, max(0, self.limit - count), retry)


class RedisLimiter:
    """Counters shared through Redis."""

    def __init__(self, url: str, limit: int, window_s: int, prefix: str = "astrid:rl:") -> None:
        import redis  # optional dependency (the ``redis`` extra)

        self.limit = limit
        self.window_s = window_s
        self.prefix = prefix
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def hit(self, key: str) -> Decision:
        window = int(time.time() // self.window_s)
        name = f"{self.prefix}{key}:{window}"
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(name)
        pipe.pexpire(name, self.window_s * 1000, nx=True)
        pipe.pttl(name)
        count, _, ttl_ms = pipe.execute()
        retry = max(1, math.ceil(int(ttl_ms) / 1000)) if int(ttl_ms) > 0 else self.window_s
        return Decision(int(count) <= self.limit, max(0, self.limit - int(count)), retry)


def make_limiter(
    limit: int, window_s: int, redis_url: str | None, prefix: str = "astrid:rl:"
) -> Limiter | None:
    """The limiter the config asks for (None when ``limit`` is 0)."""
    if limit <= 0:
        return None
    if redis_url:
        return RedisLimiter(redis_url, limit, window_s, prefix)
    return MemoryLimiter(limit, window_s)
