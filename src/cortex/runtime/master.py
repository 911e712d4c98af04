"""A master process: takes the tasks the coordinator released to it and dispatches each to the queue of the
worker type that runs it, announcing the dispatch on its channel. It obeys drain and resume on that channel: a
draining master dispatches nothing, and the tasks released to it wait in its inbox. A task a worker's settle
released (``coord.delivery``) goes straight to its queue and does not pass here, unless the master drains."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import redis.asyncio as aredis

from cortex.coord.batch import Atomic
from cortex.coord.connection import connect
from cortex.coord.keys import GROUP_MASTERS, GROUP_WORKERS, RunKeys, master_channel
from cortex.coord.outage import DEFAULT_OUTAGE_S, REDIS_DOWN, wait_for_redis
from cortex.runtime.control import Control
from cortex.runtime.process import (
    Cursor,
    dispatched,
    ensure_group,
    entry_routing,
    heartbeat,
    lifecycle,
    stop_on_signals,
)


async def _dispatch(
    redis: aredis.Redis,
    keys: RunKeys,
    name: str,
    entries: list[tuple[str, dict[str, str]]],
    known: set[str],
    atomic: Atomic,
) -> None:
    """Move ``entries`` from the inbox to their worker types' queues and acknowledge them, atomically (one script
    call), announced by one message per worker type (a message per task cost more than dispatching it)."""
    commands: list[list[str]] = []
    moved: list[tuple[str, str, int, int]] = []
    for _, fields in entries:
        task_id, worker_type, rank = entry_routing(fields)
        queue = keys.queue(worker_type)
        if queue not in known:
            await ensure_group(redis, queue, GROUP_WORKERS)
            known.add(queue)
        commands.append(["XADD", queue, "*", *itertools.chain.from_iterable(fields.items())])
        moved.append((task_id, worker_type, int(fields["attempt"]), rank))
    commands += dispatched(keys, name, f"{name}-master", moved)
    commands.append(["XACK", keys.inbox(name), GROUP_MASTERS, *(entry_id for entry_id, _ in entries)])
    await atomic.run(commands)


async def run_master(url: str, run_id: str, name: str, *, batch: int = 200, outage_s: float = DEFAULT_OUTAGE_S) -> None:
    """Dispatch from the inbox of master ``name`` until SIGTERM. Pending entries are re-read after a restart and
    now and then (``Cursor``), so a dispatch that crashed half-way is done again (the coordinator ignores duplicate
    results). A Redis outage is waited out (up to ``outage_s``)."""
    redis = await connect(url, wait_s=outage_s)
    keys = RunKeys(run_id)
    stop = asyncio.Event()
    stop_on_signals(stop)
    inbox = keys.inbox(name)
    await ensure_group(redis, inbox, GROUP_MASTERS)
    process_id = f"master-{name}"
    beat = asyncio.create_task(heartbeat(redis, keys, process_id, stop))
    control = Control(redis, keys, process_id)
    follow = asyncio.create_task(control.follow(stop))
    known_queues: set[str] = set()
    atomic = Atomic(redis)
    cursor = Cursor()
    try:
        async with lifecycle(redis, keys, process_id, master_channel(name), {"master": name}):
            while not stop.is_set():
                if control.draining:
                    control.changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(control.changed.wait(), 0.5)
                    continue
                try:
                    reply = await redis.xreadgroup(GROUP_MASTERS, name, {inbox: cursor.value}, count=batch, block=500)
                    entries = reply[0][1] if reply else []
                    cursor.after_read(bool(entries))
                    gone = [entry_id for entry_id, fields in entries if not fields]
                    if gone:  # pending entries the stream no longer holds (trimmed, or lost with a crashed server)
                        await redis.xack(inbox, GROUP_MASTERS, *gone)
                        entries = [(i, f) for i, f in entries if f]
                    if entries and control.draining:
                        cursor.value = "0"  # the drain came while the read waited: dispatch them after a resume
                    elif entries:
                        await _dispatch(redis, keys, name, entries, known_queues, atomic)
                except REDIS_DOWN:
                    await wait_for_redis(redis, outage_s)
                    await ensure_group(redis, inbox, GROUP_MASTERS)
                    known_queues.clear()
                    cursor.value = "0"  # what was read and not dispatched, first
    finally:
        stop.set()
        await beat
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
        await redis.aclose()
