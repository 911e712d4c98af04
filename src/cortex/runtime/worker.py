"""A worker process: claims tasks from its type's queue stream, runs them, reports results.

Delivery is at least once: after a restart the worker first re-reads the entries it had claimed and not
acknowledged; the coordinator records only the first result of each task attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aredis

from cortex.coord.connection import connect
from cortex.coord.delivery import Delivery
from cortex.coord.keys import GROUP_WORKERS, RunKeys
from cortex.errors import TaskFailed, TaskSkipped
from cortex.models.task import Task
from cortex.runtime.process import Cursor, ensure_group, heartbeat, stop_on_signals
from cortex.toolset.registry import TaskContext, handler_for


async def execute(
    redis: aredis.Redis,
    keys: RunKeys,
    worker_id: str,
    fields: dict[str, str],
    extra: dict[str, Any] | None = None,
    effects: list[list[str]] | None = None,
) -> dict[str, Any]:
    """Run one task message; the result fields for the results stream (never raises for task errors). The
    handler's Redis effects are appended to ``effects`` when it succeeds."""
    task = Task.model_validate_json(fields["task"])
    attempt = int(fields["attempt"])
    started = time.time()
    result: dict[str, Any] = {
        "task_id": task.id,
        "attempt": attempt,
        "worker": worker_id,
        "started": started,
        "released_ts": fields.get("released_ts", "0"),
        "retryable": "1",
    }
    handler = handler_for(task.kind)
    target = fields.get("target_path") or None
    try:
        if handler is None:
            raise TaskFailed(f"no handler for task kind {task.kind!r}", retryable=False)
        ctx = TaskContext(
            task=task,
            attempt=attempt,
            target_path=Path(target) if target else None,
            run_id=keys.run_id,
            worker_id=worker_id,
            redis=redis,
            keys=keys,
            extra=extra or {},
        )
        async with asyncio.timeout(task.timeout_s):
            output = await handler(ctx)
        result.update(ok="1", output=json.dumps(output, default=str), error="")
        if effects is not None:
            effects.extend(ctx.effects)
    except TaskSkipped as exc:
        result.update(ok="skip", output="{}", error=str(exc), retryable="0")
    except TaskFailed as exc:
        result.update(ok="0", output="{}", error=str(exc), retryable="1" if exc.retryable else "0")
    except TimeoutError:
        result.update(ok="0", output="{}", error=f"timed out after {task.timeout_s:.0f} s")
    except Exception as exc:  # a handler bug fails its task, never the worker
        tail = traceback.format_exception_only(exc)[-1].strip()
        result.update(ok="0", output="{}", error=f"{type(exc).__name__} in handler: {tail}")
    result["finished"] = time.time()
    return result


QUICK_TASK_S = 0.005
"""Tasks faster than this let the worker prefetch more; a slower one drops prefetch back to 1."""
MAX_PREFETCH = 32
SLOW_FLUSH_S = 0.01
"""Results are sent at once after a task that took longer than this, so no finished work waits on a batch."""


@dataclass
class WorkerServices:
    """Services a worker offers its tasks, built at the process edge from settings."""

    catalog_url: str | None = None
    catalog_token: str | None = None
    state_dir: Path = Path(".cortex")
    osv_path: Path | None = None
    osv_api: str | None = None
    model: str | None = None
    """``provider:model`` for tasks that need one (a master's own model in the roster wins)."""
    env: dict[str, str] = field(default_factory=dict)
    """Provider keys and endpoints (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``...): read here, at the process edge."""

    @classmethod
    def from_settings(cls) -> WorkerServices:
        """From ``CORTEX_*`` variables (what the supervisor passes down)."""
        from cortex.config import Settings

        s = Settings()
        return cls(
            catalog_url=s.catalog_url,
            catalog_token=s.catalog_token,
            state_dir=s.state_dir,
            osv_path=s.osv_path,
            osv_api=s.osv_api,
            model=s.model,
            env=dict(os.environ),
        )


async def run_worker(
    url: str,
    run_id: str,
    worker_id: str,
    worker_type: str,
    *,
    prefetch: int = 1,
    services: WorkerServices | None = None,
) -> None:
    """Serve the queue of ``worker_type`` as consumer ``worker_id`` until SIGTERM.

    Prefetch adapts: while tasks finish in under ``QUICK_TASK_S`` the worker claims up to ``MAX_PREFETCH``
    entries per read and reports their results in one pipeline; one slow task drops it back to ``prefetch``, so
    long tasks are never hoarded by one worker while others idle.
    """
    redis = await connect(url)
    keys = RunKeys(run_id)
    stop = asyncio.Event()
    stop_on_signals(stop)
    queue = keys.queue(worker_type)
    services = services or WorkerServices()
    extra: dict[str, Any] = {
        "osv_path": services.osv_path,
        "osv_api": services.osv_api,
        "state_dir": services.state_dir,
        "model": services.model,
        "env": services.env,
    }
    if services.catalog_url:
        from cortex.catalog.client import CatalogClient

        # one cache and write queue per worker: no two processes append to the same file
        cache = services.state_dir / "catalog-cache" / worker_id
        extra["catalog"] = CatalogClient(services.catalog_url, cache, token=services.catalog_token)
    await ensure_group(redis, queue, GROUP_WORKERS)
    delivery = Delivery(redis, keys)
    beat = asyncio.create_task(heartbeat(redis, keys, worker_id, stop))
    cursor = Cursor()  # our own unacknowledged entries first (after a restart), then new ones
    count = prefetch
    try:
        while not stop.is_set():
            redelivered = cursor.pending
            reply = await redis.xreadgroup(GROUP_WORKERS, worker_id, {queue: cursor.value}, count=count, block=500)
            entries = reply[0][1] if reply else []
            cursor.after_read(bool(entries))
            if not entries:
                continue
            ids = {entry_id: json.loads(fields["task"])["id"] for entry_id, fields in entries}
            await redis.hset(keys.running, mapping=dict.fromkeys(ids.values(), worker_id))
            pipe = redis.pipeline(transaction=False)  # each settle is atomic by itself (a Lua script)
            quick = True
            for entry_id, fields in entries:
                effects: list[list[str]] = []
                result = await execute(redis, keys, worker_id, fields, extra, effects)
                if redelivered:  # delivered before, to an incarnation that died or a reply that was lost
                    result["redelivered"] = "1"
                await delivery.settle(pipe, queue, entry_id, result, effects)
                took = result["finished"] - result["started"]
                quick = quick and took < QUICK_TASK_S
                if took >= SLOW_FLUSH_S:
                    await pipe.execute()
            await pipe.execute()
            count = min(MAX_PREFETCH, count * 2) if quick else prefetch
    finally:
        stop.set()
        await beat
        if "catalog" in extra:
            with contextlib.suppress(Exception):  # last chance for writes queued while the API was down
                await asyncio.wait_for(extra["catalog"].replay(), 3)
            await extra["catalog"].aclose()
        await redis.aclose()
