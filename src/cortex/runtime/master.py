"""A master process: takes the tasks the coordinator released to it and dispatches each to the queue of the
worker type that runs it, announcing the dispatch on its channel."""

from __future__ import annotations

import asyncio
import json

from cortex.coord import events
from cortex.coord.connection import connect
from cortex.coord.keys import GROUP_MASTERS, GROUP_WORKERS, RunKeys, master_channel
from cortex.models.messages import Envelope, MessageType
from cortex.runtime.process import Cursor, ensure_group, heartbeat, stop_on_signals


async def run_master(url: str, run_id: str, name: str, *, batch: int = 200) -> None:
    """Dispatch from the inbox of master ``name`` until SIGTERM. Pending entries are re-read after a restart and
    now and then (``Cursor``), so a dispatch that crashed half-way is done again (the coordinator ignores duplicate
    results)."""
    redis = await connect(url)
    keys = RunKeys(run_id)
    stop = asyncio.Event()
    stop_on_signals(stop)
    inbox = keys.inbox(name)
    await ensure_group(redis, inbox, GROUP_MASTERS)
    beat = asyncio.create_task(heartbeat(redis, keys, f"master-{name}", stop))
    channel = master_channel(name)
    known_queues: set[str] = set()
    cursor = Cursor()
    try:
        while not stop.is_set():
            reply = await redis.xreadgroup(GROUP_MASTERS, name, {inbox: cursor.value}, count=batch, block=500)
            entries = reply[0][1] if reply else []
            cursor.after_read(bool(entries))
            if not entries:
                continue
            pipe = redis.pipeline(transaction=True)  # dispatch and acknowledge together, or neither
            for entry_id, fields in entries:
                task = json.loads(fields["task"])
                queue = keys.queue(task["worker_type"])
                if queue not in known_queues:
                    await ensure_group(redis, queue, GROUP_WORKERS)
                    known_queues.add(queue)
                pipe.xadd(queue, fields)
                pipe.xack(inbox, GROUP_MASTERS, entry_id)
                env = Envelope(
                    run_id=run_id,
                    sender=f"{name}-master",
                    to=task["worker_type"],
                    type=MessageType.task,
                    task_id=task["id"],
                    priority="high" if task.get("priority", 0) > 0 else "normal",
                    context={"event": "dispatched", "attempt": int(fields["attempt"])},
                )
                events.emit(pipe, keys, channel, env)
            await pipe.execute()
    finally:
        stop.set()
        await beat
        await redis.aclose()
