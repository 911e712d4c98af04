"""Reclaiming work from dead workers against a real Redis stream."""

from __future__ import annotations

import json

import redis.asyncio as aredis

from cortex.coord.keys import GROUP_WORKERS, RunKeys
from cortex.runtime.process import ensure_group
from cortex.runtime.reaper import reclaim


async def test_entries_of_a_dead_worker_are_requeued_and_a_live_workers_are_not(redis: aredis.Redis) -> None:
    keys = RunKeys("r")
    queue = keys.queue("scan")
    await ensure_group(redis, queue, GROUP_WORKERS)
    for task_id in ("t1", "t2"):
        await redis.xadd(queue, {"task": json.dumps({"id": task_id}), "attempt": "1"})
    await redis.xreadgroup(GROUP_WORKERS, "dead-worker", {queue: ">"}, count=1)
    await redis.xreadgroup(GROUP_WORKERS, "live-worker", {queue: ">"}, count=1)
    await redis.set(keys.heartbeat("live-worker"), "1")
    await redis.hset(keys.running, mapping={"t1": "dead-worker", "t2": "live-worker"})

    assert await reclaim(redis, keys, [queue], idle_ms=0) == 1

    pending = await redis.xpending_range(queue, GROUP_WORKERS, min="-", max="+", count=10)
    assert [p["consumer"] for p in pending] == ["live-worker"]
    again = await redis.xreadgroup(GROUP_WORKERS, "healthy", {queue: ">"}, count=10)
    fields = again[0][1][0][1]
    assert json.loads(fields["task"])["id"] == "t1" and fields["reassigned_from"] == "dead-worker"
    assert await redis.hgetall(keys.running) == {"t2": "live-worker"}
    await redis.set(keys.heartbeat("healthy"), "1")
    assert await reclaim(redis, keys, [queue], idle_ms=0) == 0  # nothing twice


async def test_a_paused_worker_cannot_settle_what_was_requeued_and_effects_apply_once(redis: aredis.Redis) -> None:
    from cortex.coord.delivery import Delivery

    keys = RunKeys("r")
    queue = keys.queue("scan")
    await ensure_group(redis, queue, GROUP_WORKERS)
    await redis.xadd(queue, {"task": json.dumps({"id": "t1"}), "attempt": "1"})
    first = (await redis.xreadgroup(GROUP_WORKERS, "paused", {queue: ">"}, count=1))[0][1][0][0]
    delivery = Delivery(redis, keys)
    effect = [["HINCRBY", "effects", "t1", "1"]]
    result = {"task_id": "t1", "attempt": 1, "ok": "1"}

    assert await reclaim(redis, keys, [queue], idle_ms=0) == 1  # the paused worker has no heartbeat
    pipe = redis.pipeline(transaction=False)
    await delivery.settle(pipe, queue, first, result, effect)  # it wakes up and settles its copy: refused
    assert await pipe.execute() == [0]
    assert await redis.xlen(keys.results) == 0 and await redis.hget("effects", "t1") is None

    second = (await redis.xreadgroup(GROUP_WORKERS, "healthy", {queue: ">"}, count=1))[0][1][0][0]
    await delivery.settle(pipe, queue, second, result, effect)
    assert await pipe.execute() == [2]  # settled, effects applied
    assert await redis.hget("effects", "t1") == "1"
    assert (await redis.xrange(keys.results))[0][1]["effects_applied"] == "1"

    await redis.xadd(queue, {"task": json.dumps({"id": "t1"}), "attempt": "2"})  # delivered again, e.g. a retry
    third = (await redis.xreadgroup(GROUP_WORKERS, "healthy", {queue: ">"}, count=1))[0][1][0][0]
    await delivery.settle(pipe, queue, third, {**result, "attempt": 2}, effect)
    assert await pipe.execute() == [1]  # its result is reported, its effects are not applied twice
    assert await redis.hget("effects", "t1") == "1" and await redis.xlen(keys.results) == 2
    assert await reclaim(redis, keys, [queue], idle_ms=0) == 0
