"""The run's keys before any process starts (end of phase 0): the plan, what node agents need, the run's place in
the index, the streams' consumer groups and the token ledger's accounts."""

from __future__ import annotations

import redis.asyncio as aredis

from cortex.coord.keys import GROUP_COORDINATOR, GROUP_MASTERS, RUNS, RunKeys
from cortex.coord.ledger import Ledger
from cortex.runtime import runindex
from cortex.runtime.options import RunOptions
from cortex.runtime.process import ensure_group
from cortex.runtime.runstate import RunState


async def prepare(redis: aredis.Redis, keys: RunKeys, state: RunState, pool: str, o: RunOptions) -> None:
    """Store the plan and the agents' settings (no secret: nodes have their own), index the run, create the
    consumer groups and allocate the ledger (run, masters, workers)."""
    plan = state.plan
    await redis.set(keys.plan, plan.model_dump_json())
    settings = {"pool": pool, "model": o.model or "", "catalog_url": o.catalog_url or ""}
    await redis.hset(keys.settings, mapping=settings)
    await redis.zadd(RUNS, {state.run_id: state.started_at})
    await runindex.publish_plan(redis, state.run_id, plan.model_dump_json())
    for m in plan.masters:
        await ensure_group(redis, keys.inbox(m.master), GROUP_MASTERS)
    await ensure_group(redis, keys.results, GROUP_COORDINATOR)
    alloc = {"run": plan.budget.total}
    for line in plan.budget.lines:
        alloc[f"master:{line.master}"] = line.base + line.worker_pool
        alloc.update({f"worker:{w}": b for w, b in line.workers.items()})
    await Ledger(redis, keys).allocate(alloc)
