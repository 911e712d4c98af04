"""Reclaiming work from dead workers against a real Redis stream."""

from __future__ import annotations

import json

import redis.asyncio as aredis

from cortex.coord.keys import GROUP_WORKERS, RunKeys
from cortex.models.result import Outcome, TaskResult
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

    assert await reclaim(redis, keys, [queue], idle_ms=0) == [("t1", "dead-worker")]

    pending = await redis.xpending_range(queue, GROUP_WORKERS, min="-", max="+", count=10)
    assert [p["consumer"] for p in pending] == ["live-worker"]
    again = await redis.xreadgroup(GROUP_WORKERS, "healthy", {queue: ">"}, count=10)
    fields = again[0][1][0][1]
    assert json.loads(fields["task"])["id"] == "t1" and fields["reassigned_from"] == "dead-worker"
    assert await redis.hgetall(keys.running) == {"t2": "live-worker"}
    await redis.set(keys.heartbeat("healthy"), "1")
    assert await reclaim(redis, keys, [queue], idle_ms=0) == []  # nothing twice


async def test_a_paused_worker_cannot_settle_what_was_requeued_and_effects_apply_once(redis: aredis.Redis) -> None:
    from cortex.coord.delivery import Delivery

    keys = RunKeys("r")
    queue = keys.queue("scan")
    await ensure_group(redis, queue, GROUP_WORKERS)
    await redis.xadd(queue, {"task": json.dumps({"id": "t1"}), "attempt": "1"})
    first = (await redis.xreadgroup(GROUP_WORKERS, "paused", {queue: ">"}, count=1))[0][1][0][0]
    delivery = Delivery(redis, keys)
    effect = [["HINCRBY", "effects", "t1", "1"]]
    result = TaskResult(task_id="t1", attempt=1, worker="w", started=1, finished=2, outcome=Outcome.succeeded)

    assert await reclaim(redis, keys, [queue], idle_ms=0) == [("t1", "paused")]  # the paused worker has no heartbeat
    # it wakes up to settle its copy: refused
    assert (await delivery.settle([(queue, first, result, effect)])).done == [0]
    assert await redis.xlen(keys.results) == 0 and await redis.hget("effects", "t1") is None

    second = (await redis.xreadgroup(GROUP_WORKERS, "healthy", {queue: ">"}, count=1))[0][1][0][0]
    await redis.hset(keys.running, "t1", "healthy")
    await redis.hset(keys.claimed_at, "t1", "1.5")
    assert (await delivery.settle([(queue, second, result, effect)])).done == [2]  # settled, effects applied
    assert not await redis.hexists(keys.running, "t1") and not await redis.hexists(keys.claimed_at, "t1")
    assert await redis.hget("effects", "t1") == "1"
    assert (await redis.xrange(keys.results))[0][1]["effects_applied"] == "1"

    await redis.xadd(queue, {"task": json.dumps({"id": "t1"}), "attempt": "2"})  # delivered again, e.g. a retry
    third = (await redis.xreadgroup(GROUP_WORKERS, "healthy", {queue: ">"}, count=1))[0][1][0][0]
    # its result is reported, its effects are not applied twice
    assert (await delivery.settle([(queue, third, result.model_copy(update={"attempt": 2}), effect)])).done == [1]
    assert await redis.hget("effects", "t1") == "1" and await redis.xlen(keys.results) == 2
    assert await reclaim(redis, keys, [queue], idle_ms=0) == []

    await redis.script_flush()  # a server that lost its scripts (restarted from its append-only file)
    for task_id in ("t2", "t3"):
        await redis.xadd(queue, {"task": json.dumps({"id": task_id}), "attempt": "1"})
    batch = [e for e, _ in (await redis.xreadgroup(GROUP_WORKERS, "healthy", {queue: ">"}, count=2))[0][1]]
    done = [result.model_copy(update={"task_id": t}) for t in ("t2", "t3")]
    assert (await delivery.settle([(queue, e, r, effect) for e, r in zip(batch, done, strict=True)])).done == [2, 2]
    assert await redis.xlen(keys.results) == 4
    assert (await redis.xpending(queue, GROUP_WORKERS))["pending"] == 0  # both acknowledged
    # one call settles a batch, each entry on its own terms: one settled before, one failed, one first to succeed
    await redis.xadd(queue, {"task": json.dumps({"id": "t4"}), "attempt": "1"})
    await redis.xadd(queue, {"task": json.dumps({"id": "t5"}), "attempt": "1"})
    four, five = [e for e, _ in (await redis.xreadgroup(GROUP_WORKERS, "healthy", {queue: ">"}, count=2))[0][1]]
    failed = result.model_copy(update={"task_id": "t4", "outcome": Outcome.failed})
    mixed = [(queue, batch[0], done[0], effect), (queue, four, failed, [["HINCRBY", "effects", "t4", "1"]])]
    mixed.append((queue, five, result.model_copy(update={"task_id": "t5"}), [["HINCRBY", "effects", "t5", "1"]]))
    assert (await delivery.settle(mixed)).done == [0, 1, 2]
    assert await redis.hget("effects", "t4") is None and await redis.hget("effects", "t5") == "1"
    assert [f["result"] for _, f in (await redis.xrange(keys.results))[4:]] == [
        failed.model_dump_json(),
        mixed[2][2].model_dump_json(),
    ]


async def test_a_worker_takes_up_entries_delivered_to_it_whose_reply_was_lost(redis: aredis.Redis, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Redis can crash after delivering a read and before its reply arrives: the entries then wait in the
    worker's pending list, unknown to it. The worker re-reads that list now and then, and runs them."""
    import asyncio
    import os
    import subprocess
    import sys
    import time

    from cortex.models.task import Estimate, Task

    keys = RunKeys("lost-reply")
    queue = keys.queue("scan")
    await ensure_group(redis, queue, GROUP_WORKERS)

    def entry(task_id: str) -> dict[str, str]:
        task = Task(
            id=task_id, master="m", kind="builtin.noop", worker_type="scan", estimate=Estimate(seconds=0, tokens=0)
        )
        return {"task": task.model_dump_json(), "attempt": "1"}

    async def settled(task_id: str, within_s: float) -> bool:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:  # the worker is another process: poll its results stream
            if any(
                TaskResult.model_validate_json(f["result"]).task_id == task_id
                for _, f in await redis.xrange(keys.results)
            ):
                return True
            await asyncio.sleep(0.05)
        return False

    url = redis.connection_pool.connection_kwargs["path"]
    env = {**os.environ, "CORTEX_REDIS_URL": f"unix://{url}", "CORTEX_STATE_DIR": str(tmp_path)}
    argv = [sys.executable, "-m", "cortex", "worker", "--run", keys.run_id, "--id", "w1", "--type", "scan"]
    await redis.hset(keys.placement, "w1", "n1")  # a worker the run placed (one it did not is refused)
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)  # noqa: ASYNC220  (waited on in finally)
    try:
        await redis.xadd(queue, entry("first"))
        assert await settled("first", 30)  # the worker is up and reading new entries
        pipe = redis.pipeline(transaction=True)  # added and delivered to w1 at once; the reply never reaches it
        pipe.xadd(queue, entry("lost"))
        pipe.xreadgroup(GROUP_WORKERS, "w1", {queue: ">"}, count=1)
        stolen = (await pipe.execute())[1]
        assert stolen and json.loads(stolen[0][1][0][1]["task"])["id"] == "lost"
        assert await settled("lost", 20)
        results = [TaskResult.model_validate_json(f["result"]) for _, f in await redis.xrange(keys.results)]
        lost = next(r for r in results if r.task_id == "lost")
        assert lost.outcome is Outcome.succeeded and lost.redelivered
    finally:
        proc.terminate()
        proc.wait(timeout=20)
