"""Reclaiming work from dead workers: a queue entry whose consumer's heartbeat lease has expired is queued again
for a healthy worker of the same type (failure scenario 2). The requeue and the worker's own settle race through
one ``XACK`` (see ``coord.delivery``), so a worker that was only paused cannot settle the entry a second time."""

from __future__ import annotations

import json

import redis.asyncio as aredis

from cortex.coord.delivery import Delivery
from cortex.coord.keys import GROUP_WORKERS, RunKeys
from cortex.runtime.process import HEARTBEAT_TTL_MS


async def reclaim(
    redis: aredis.Redis, keys: RunKeys, queues: list[str], *, idle_ms: int = HEARTBEAT_TTL_MS
) -> list[tuple[str, str]]:
    """Requeue entries idle for ``idle_ms`` whose consumer's heartbeat is gone; returns (task id, dead consumer)
    of each entry moved."""
    delivery = Delivery(redis, keys)
    moved: list[tuple[str, str]] = []
    for queue in queues:
        pending = await redis.xpending_range(queue, GROUP_WORKERS, min="-", max="+", count=1000, idle=idle_ms)
        for entry in pending:
            consumer = entry["consumer"]
            if await redis.exists(keys.heartbeat(consumer)):
                continue  # alive: a long task, not a dead worker
            entry_id = entry["message_id"]
            fields = await redis.xrange(queue, entry_id, entry_id)
            if await delivery.requeue(queue, entry_id, consumer):
                task_id = str(json.loads(fields[0][1]["task"])["id"]) if fields else "?"
                moved.append((task_id, consumer))
                if fields:
                    await redis.hdel(keys.running, task_id)
                    await redis.hdel(keys.claimed_at, task_id)
    return moved
