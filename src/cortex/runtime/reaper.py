"""Reclaiming work from dead workers: a queue entry whose consumer's heartbeat lease has expired is claimed
and queued again for a healthy worker of the same type (failure scenario 2)."""

from __future__ import annotations

import redis.asyncio as aredis

from cortex.coord.keys import GROUP_WORKERS, RunKeys
from cortex.runtime.process import HEARTBEAT_TTL_MS


async def reclaim(redis: aredis.Redis, keys: RunKeys, queues: list[str], *, idle_ms: int = HEARTBEAT_TTL_MS) -> int:
    """Requeue entries idle for ``idle_ms`` whose consumer's heartbeat is gone; returns how many were moved."""
    moved = 0
    for queue in queues:
        pending = await redis.xpending_range(queue, GROUP_WORKERS, min="-", max="+", count=1000, idle=idle_ms)
        for entry in pending:
            consumer = entry["consumer"]
            if await redis.exists(keys.heartbeat(consumer)):
                continue  # alive: a long task, not a dead worker
            claimed = await redis.xclaim(queue, GROUP_WORKERS, "reaper", idle_ms, [entry["message_id"]])
            for entry_id, fields in claimed:
                if not fields:
                    continue
                pipe = redis.pipeline(transaction=True)
                pipe.xadd(queue, {**fields, "reassigned_from": consumer})
                pipe.xack(queue, GROUP_WORKERS, entry_id)
                pipe.hdel(keys.running, _task_id(fields))
                await pipe.execute()
                moved += 1
    return moved


def _task_id(fields: dict[str, str]) -> str:
    import json

    return str(json.loads(fields["task"])["id"])
