"""Connecting to Redis: bounded retries at connect time, automatic retries with backoff afterwards."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cortex.errors import RedisUnavailable

MIN_VERSION = (6, 2)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe for logs, state files and reports."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def client(url: str, *, retries: int = 8) -> aredis.Redis:
    """An asyncio client whose commands retry through short outages (exponential backoff, capped at 2 s)."""
    return aredis.Redis.from_url(
        url,
        decode_responses=True,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=10,
    )


async def connect(url: str, *, attempts: int = 5, first_delay_s: float = 0.2) -> aredis.Redis:
    """A client that has answered PING and runs a supported server version, or ``RedisUnavailable``."""
    delay = first_delay_s
    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        conn = client(url, retries=0)
        try:
            await conn.ping()
            info = await conn.info("server")
            version = tuple(int(x) for x in str(info.get("redis_version", "0.0")).split(".")[:2])
            if version < MIN_VERSION:
                await conn.aclose()
                raise RedisUnavailable(
                    f"Redis at {redact_url(url)} is version {info.get('redis_version')}; Cortex needs 6.2 or newer"
                )
            await conn.aclose()
            return client(url)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            last = exc
            await conn.aclose()
            if attempt < attempts:
                await asyncio.sleep(delay)  # backoff between connection attempts
                delay = min(delay * 2, 5.0)
    raise RedisUnavailable(
        f"cannot reach Redis at {redact_url(url)} after {attempts} attempts: {last}; "
        "check CORTEX_REDIS_URL, or unset it to use the embedded server"
    )
