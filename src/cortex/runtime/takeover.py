"""Taking a run over from a coordinator that stopped renewing its lease (failure scenario 7).

The leading coordinator keeps everything another one needs in Redis, written under its fencing token: the task
records (with their tasks) and a ``LeaderSnapshot`` of its run-level counters. A coordinator that acquires the
lease after it expired restores both and releases what was waiting (retries, and pending tasks whose dependencies
ended); it adopts the node supervisors (``Nodes.adopt``), which are not its children.
"""

from __future__ import annotations

import redis.asyncio as aredis

from cortex.coord.connection import connect, redact_url
from cortex.coord.keys import RunKeys
from cortex.errors import RunNotFound
from cortex.models import Plan
from cortex.runtime.graphrun import Changes
from cortex.runtime.records import TaskRecord
from cortex.runtime.runstate import LeaderSnapshot, RunState


async def load_plan(url: str, run_id: str, *, attempts: int = 5) -> Plan:
    """The plan of run ``run_id`` as stored in Redis at ``url`` (tried ``attempts`` times); ``RunNotFound`` when
    there is none."""
    redis = await connect(url, attempts=attempts)
    try:
        text = await redis.get(RunKeys(run_id).plan)
    finally:
        await redis.aclose()
    if text is None:
        raise RunNotFound(f"no run {run_id!r} in Redis at {redact_url(url)} (it ended, or never started there)")
    return Plan.model_validate_json(text)


async def restore(state: RunState, redis: aredis.Redis, keys: RunKeys) -> Changes:
    """Rebuild ``state`` from what the previous leader stored; returns what must be released now."""
    raw = await redis.hgetall(keys.tasks)
    changes = state.graph.restore([TaskRecord.from_json(v) for _, v in sorted(raw.items())])
    stored = await redis.hget(keys.coordinator, "state")
    if stored:
        state.restore(LeaderSnapshot.model_validate_json(stored))
    state.placement.update(await redis.hgetall(keys.placement))
    return changes
