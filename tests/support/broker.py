"""A Redis client for the broker the tests run against."""

from __future__ import annotations

from typing import Any


def redis_client(url: str, **options: object) -> Any:
    """A redis-py client for a broker URL, the embedded one's `redis+socket://` included."""
    import redis

    return redis.Redis.from_url(url.replace("redis+socket:", "unix:", 1), **options)
