"""Workloads for the chaos harness (``cortex chaos``): tasks whose effects can be counted afterwards, so a run
under injected faults can be checked for lost and duplicated work. They are synthetic on purpose (the harness
measures the engine, not a tool) and say so in their names.

- ``chaos.work``: waits ``params.seconds``, counts each execution, and applies one effect through the exactly-once
  settle (``TaskContext.effect``).
- ``chaos.contend``: increments a shared file under a fenced lock (failure scenario 8); idempotent per task.
- ``chaos.spend``: reserves and commits ``params.tokens`` in the run's ledger (failure scenario 6).
- ``chaos.catalog``: records one asset in the catalog through the caching client (failure scenario 5).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cortex.coord.keys import PREFIX
from cortex.coord.ledger import Ledger
from cortex.errors import BudgetExceeded, TaskFailed, TaskSkipped
from cortex.files import write_atomic
from cortex.toolset.context import Output, TaskContext, task_kind


@dataclass(frozen=True)
class ChaosKeys:
    """Counters of a chaos run. Outside the run's own prefix, so they outlive the run's cleanup for checking."""

    run_id: str

    @property
    def executions(self) -> str:
        """Hash task id -> how many times a worker started it."""
        return f"{PREFIX}:chaos:{self.run_id}:executions"

    @property
    def effects(self) -> str:
        """Hash task id -> how many times its effect was applied (1 is right; 0 is lost, 2+ duplicated)."""
        return f"{PREFIX}:chaos:{self.run_id}:effects"


@task_kind("chaos.work")
async def work(ctx: TaskContext) -> Output:
    """Wait ``params.seconds``; count the execution now and the effect at settle."""
    keys = ChaosKeys(ctx.run_id)
    await ctx.redis.hincrby(keys.executions, ctx.task.id, 1)
    await asyncio.sleep(float(ctx.task.params.get("seconds", 0.2)))
    ctx.effect("HINCRBY", keys.effects, ctx.task.id, "1")
    return {"worker": ctx.worker_id}


def _shared_file(ctx: TaskContext) -> Path:
    root = ctx.services.state_dir.resolve() / "chaos"
    path = (root / str(ctx.task.params.get("file", "counter.json"))).resolve()
    if not path.is_relative_to(root):
        raise TaskFailed(f"params.file must stay under {root}", retryable=False)
    return path


@task_kind("chaos.contend")
async def contend(ctx: TaskContext) -> Output:
    """Add this task to a shared counter file under a fenced lock. The write is refused when a newer holder has
    the lock (this one's lease expired, e.g. while it held it for ``params.hold_s``)."""
    path = _shared_file(ctx)
    lock = ctx.lock(f"file:{path}", ttl_ms=int(ctx.task.params.get("lease_ms", 5000)))
    await lock.acquire(timeout_s=float(ctx.task.params.get("wait_s", 60)))
    try:
        doc = _read_counter(path)
        if ctx.task.id not in doc["applied"]:  # idempotent: a re-run of the same task adds nothing
            doc["applied"].append(ctx.task.id)
            doc["value"] += 1
        await asyncio.sleep(float(ctx.task.params.get("hold_s", 0)))
        if not await lock.still_held():
            raise TaskFailed(f"lock on {path.name} expired and was taken (token {lock.token}); write refused")
        write_atomic(path, json.dumps({**doc, "token": lock.token}))
    finally:
        await lock.release()
    return {"value": doc["value"], "token": lock.token}


def _read_counter(path: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return {"value": 0, "applied": [], "token": 0}
    return doc


@task_kind("chaos.spend")
async def spend(ctx: TaskContext) -> Output:
    """Reserve ``params.tokens`` at run, master and worker level, hold them ``params.seconds``, commit them. A
    refused reservation skips an optional task and fails a required one (never retried): never an overrun."""
    tokens = int(ctx.task.params.get("tokens", 100))
    ledger = Ledger(ctx.redis, ctx.keys)
    rid = f"{ctx.task.id}#{ctx.attempt}@{ctx.worker_id}:{uuid.uuid4().hex[:8]}"  # unique: a redelivery reserves anew
    try:
        await ledger.reserve(rid, tokens, master=ctx.task.master, worker=ctx.worker_id)
    except BudgetExceeded as exc:
        if ctx.task.optional:
            raise TaskSkipped(f"budget exhausted, optional task skipped: {exc}") from exc
        raise TaskFailed(f"budget exhausted: {exc}", retryable=False) from exc
    used = 0
    try:
        await asyncio.sleep(float(ctx.task.params.get("seconds", 0.05)))
        used = tokens
    finally:
        await ledger.commit(rid, used, master=ctx.task.master, worker=ctx.worker_id)
    return {"tokens": used}


@task_kind("chaos.catalog")
async def catalog_write(ctx: TaskContext) -> Output:
    """Record asset ``chaos:<task>`` and read ``params.read`` back; says whether the write was sent or queued and
    whether the read was fresh, stale (from the cache, the API being down) or unavailable."""
    from cortex.errors import CatalogUnavailable
    from cortex.models.assets import Asset

    client = ctx.services.catalog
    if client is None:
        raise TaskFailed("no catalog configured (CORTEX_CATALOG_URL)", retryable=False)
    await asyncio.sleep(float(ctx.task.params.get("seconds", 0)))
    slug = ctx.task.id.replace(":", "-").lower()
    asset = Asset(id=f"chaos:{slug}", type="chaos-item", name=ctx.task.id, metadata={"run": ctx.run_id})
    sent = await client.upsert(asset)
    try:
        read = await client.get(str(ctx.task.params.get("read", asset.id)))
    except CatalogUnavailable:
        return {"write": sent, "read": "unavailable"}  # API down and this worker never read it before
    return {"write": sent, "read": "stale" if read.stale else "fresh", "read_found": read.value is not None}
