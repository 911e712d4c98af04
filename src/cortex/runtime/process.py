"""What every master and worker process shares: a heartbeat lease, its lifecycle on its channel, stop on
SIGTERM/SIGINT, consumer groups."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator

import redis.asyncio as aredis
from pydantic import JsonValue
from redis.exceptions import RedisError, ResponseError

from cortex.coord import events
from cortex.coord.keys import RunKeys, master_channel
from cortex.models.messages import Envelope, MessageType

HEARTBEAT_INTERVAL_S = 1.0
HEARTBEAT_TTL_MS = 4000
"""A process is considered dead once its heartbeat key has not been refreshed for this long."""


PENDING_RECHECK_S = 2.0
"""How often a consumer re-reads its own pending entries. Normally there are none: everything it read, it settled
before reading again. But when Redis crashes after delivering a read and before the reply arrives, the client's
retry reads on, and the delivered entries wait in the consumer's pending list, unknown to it and, since the
consumer's heartbeat is alive, untouched by the reaper."""


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Leave every object that exists now (the plan, the task records, the modules) out of the cyclic garbage
    collector's scans while the block runs; objects made inside it are collected as usual. A full collection over
    a 10,000-task run's records took a third of the coordinator's time per task. Objects of the block's start
    that become cyclic garbage are collected after it."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class Cursor:
    """Where a stream consumer reads next: its own pending entries (``"0"``) at start and every
    ``PENDING_RECHECK_S``, new ones (``">"``) otherwise."""

    def __init__(self) -> None:
        self.value = "0"
        self._checked = time.monotonic()

    def after_read(self, got_entries: bool) -> None:
        """Move on after a read that returned entries or not."""
        now = time.monotonic()
        if self.value == "0" and not got_entries:
            self.value, self._checked = ">", now
        elif self.value == ">" and now - self._checked > PENDING_RECHECK_S:
            self.value = "0"

    @property
    def pending(self) -> bool:
        """The next read is of the consumer's own pending entries."""
        return self.value == "0"


def dispatched(keys: RunKeys, master: str, sender: str, tasks: list[tuple[str, str, int, int]]) -> list[list[str]]:
    """The ``dispatched`` events for ``tasks`` (task id, worker type, attempt, priority) moved to their queues for
    ``master``, one message per worker type on the master's channel (a message per task cost more than dispatching
    it). ``sender``: the master, or the worker whose settle released them."""
    by_type: dict[str, list[dict[str, str | int]]] = {}
    for task_id, worker_type, attempt, rank in tasks:
        priority = "high" if rank > 0 else "normal"
        by_type.setdefault(worker_type, []).append({"task_id": task_id, "attempt": attempt, "priority": priority})
    commands: list[list[str]] = []
    for worker_type, listed in by_type.items():
        env = Envelope(
            run_id=keys.run_id,
            sender=sender,
            to=worker_type,
            type=MessageType.task,
            task_id=str(listed[0]["task_id"]) if len(listed) == 1 else None,
            priority="high" if any(t["priority"] == "high" for t in listed) else "normal",
            context={"event": "dispatched", "tasks": listed},
        )
        commands += events.as_commands(keys, master_channel(master), env)
    return commands


def entry_routing(fields: dict[str, str]) -> tuple[str, str, int]:
    """A task entry's task id, worker type and priority, read without validating the task: from the fields the
    coordinator adds to every entry, or from the task's JSON in an entry an older coordinator released."""
    if "worker_type" in fields:
        return fields["task_id"], fields["worker_type"], int(fields.get("priority", "0"))
    task = json.loads(fields["task"])
    return str(task["id"]), str(task["worker_type"]), int(task.get("priority", 0))


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


@contextlib.asynccontextmanager
async def lifecycle(
    redis: aredis.Redis, keys: RunKeys, process_id: str, channel: str, about: dict[str, JsonValue]
) -> AsyncIterator[None]:
    """Announce on ``channel`` that the process registered (with its pid and ``about``) and, on the way out, that
    it stopped. The heartbeat lease is what liveness is judged by; these messages are for people following the run
    (a process killed by a signal sends no ``stopped``)."""

    async def say(event: str) -> None:
        env = Envelope(
            run_id=keys.run_id,
            sender=process_id,
            to="all",
            type=MessageType.heartbeat,
            context={"event": event, "process": process_id, "pid": os.getpid(), **about},
        )
        # an announcement is never worth failing or holding up the process over
        with contextlib.suppress(RedisError, TimeoutError):
            await asyncio.wait_for(events.publish(redis, keys, channel, env), 2.0)

    await say("registered")
    try:
        yield
    finally:
        await say("stopped")


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM or SIGINT so the process finishes its current step and exits cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
