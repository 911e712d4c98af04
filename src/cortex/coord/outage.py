"""Riding out a Redis outage: every long-lived process (coordinator, masters, workers) waits for Redis to answer
again, up to a bound (``CORTEX_REDIS_OUTAGE_S``, default 300 s), and then carries on where it was.

The client's own retries (``connection.client``) cover a blip of a few seconds; a longer outage surfaces as a
connection error in a process's loop, which catches it, calls ``wait_for_redis`` and resumes, re-reading whatever
it had read and not settled.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cortex.errors import RedisUnavailable

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
"""What a command raises while Redis is unreachable or restarting (a loading server included)."""

DEFAULT_OUTAGE_S = 300.0


async def wait_for_redis(redis: aredis.Redis, limit_s: float, *, since: float | None = None) -> float:
    """Return once Redis answers PING (how long the outage lasted, from ``since``, a ``time.monotonic()`` value);
    ``RedisUnavailable`` once ``limit_s`` have passed since the outage began."""
    began = time.monotonic() if since is None else since
    delay = 0.1
    while True:
        try:
            await redis.ping()
            return time.monotonic() - began
        except REDIS_DOWN as exc:
            if time.monotonic() - began > limit_s:
                raise RedisUnavailable(
                    f"Redis unreachable for more than {limit_s:.0f} s (CORTEX_REDIS_OUTAGE_S): {exc}"
                ) from None
        await asyncio.sleep(delay)  # backoff while the server is away: there is nothing to be told by
        delay = min(delay * 2, 2.0)
