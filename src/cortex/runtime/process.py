"""What every master and worker process shares: a heartbeat lease, stop on SIGTERM/SIGINT, consumer groups."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import redis.asyncio as aredis
from redis.exceptions import RedisError, ResponseError

from cortex.coord.keys import RunKeys

HEARTBEAT_INTERVAL_S = 1.0
HEARTBEAT_TTL_MS = 4000
"""A process is considered dead once its heartbeat key has not been refreshed for this long."""


async def ensure_group(redis: aredis.Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) unless it exists."""
    with contextlib.suppress(ResponseError):  # BUSYGROUP: it already exists
        await redis.xgroup_create(stream, group, id="0", mkstream=True)


async def heartbeat(redis: aredis.Redis, keys: RunKeys, process_id: str, stop: asyncio.Event) -> None:
    """Refresh the process's lease until ``stop`` is set; the key expires by itself if the process dies."""
    key = keys.heartbeat(process_id)
    while not stop.is_set():
        # A failed beat is not fatal: through a Redis outage the lease simply runs down, as it should.
        with contextlib.suppress(RedisError):
            await redis.set(key, "1", px=HEARTBEAT_TTL_MS)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEARTBEAT_INTERVAL_S)
    with contextlib.suppress(RedisError):
        await redis.delete(key)


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM or SIGINT so the process finishes its current step and exits cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
