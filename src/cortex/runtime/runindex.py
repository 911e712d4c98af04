"""The run index: what ``cortex status``, ``history``, ``report`` and ``watch`` read from Redis, so they work on
any host that has ``CORTEX_REDIS_URL``, not only where the coordinator writes its files.

The leading coordinator writes its live state document (``current-execution.json``'s content) at each refresh,
and the report (JSON and Markdown) at the end; the entry outlives the run's own keys for ``RUN_INDEX_TTL_S``.
``cortex:runs`` orders runs by start time.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aredis

from cortex.coord.keys import RUN_INDEX_TTL_S, RUNS, leader_resource, lock_key, run_index
from cortex.errors import RunNotFound
from cortex.models.state import ExecutionState

STALE_S = 15.0
"""A ``running`` state not refreshed for this long, with nobody holding the run's lease, is an interrupted run."""


async def publish_plan(redis: aredis.Redis, run_id: str, plan_json: str) -> None:
    """Keep the run's plan with its index entry (the web view draws it after the run's keys are gone)."""
    await redis.hset(run_index(run_id), "plan", plan_json)


async def plan(redis: aredis.Redis, run_id: str) -> str | None:
    """The plan JSON of an indexed run."""
    text = await redis.hget(run_index(run_id), "plan")
    return None if text is None else str(text)


async def publish_state(redis: aredis.Redis, run_id: str, current: dict[str, Any]) -> None:
    """Write the live state document of a run."""
    await redis.hset(run_index(run_id), "current", json.dumps(current))


async def publish_report(redis: aredis.Redis, run_id: str, current: dict[str, Any], report_json: str, md: str) -> None:
    """Write the final state and the report of a run; the entry expires after ``RUN_INDEX_TTL_S``."""
    pipe = redis.pipeline(transaction=True)
    key = run_index(run_id)
    pipe.hset(key, mapping={"current": json.dumps(current), "report_json": report_json, "report_md": md})
    pipe.expire(key, RUN_INDEX_TTL_S)
    await pipe.execute()


async def current(redis: aredis.Redis, run_id: str | None) -> ExecutionState:
    """The state document of ``run_id`` (default: the latest run in the index), its status corrected when the run
    is marked running but nobody leads it and it has not been refreshed for ``STALE_S``."""
    if run_id is None:
        ids = [i for i in await redis.zrevrange(RUNS, 0, 50) if await redis.hexists(run_index(i), "current")]
        if not ids:
            raise RunNotFound("no run recorded in this Redis: start one with `cortex run`")
        run_id = str(ids[0])
    raw = await redis.hget(run_index(run_id), "current")
    if raw is None:
        raise RunNotFound(f"no run {run_id!r} in this Redis's run index (finished runs stay 30 days)")
    state = ExecutionState.model_validate_json(raw)
    stale = time.time() - state.updated_at > STALE_S
    if state.status == "running" and stale and not await redis.exists(lock_key(leader_resource(run_id))):
        state.status = "interrupted (no coordinator leads it)"
    return state


async def history(redis: aredis.Redis, limit: int = 100) -> list[ExecutionState]:
    """The state documents of the latest ``limit`` runs in the index, newest first."""
    out = []
    for run_id in await redis.zrevrange(RUNS, 0, limit - 1):
        raw = await redis.hget(run_index(run_id), "current")
        if raw is not None:
            out.append(ExecutionState.model_validate_json(raw))
    return out


async def report(redis: aredis.Redis, run_id: str, field: str) -> str:
    """The report of a finished run (``report_json`` or ``report_md``)."""
    text = await redis.hget(run_index(run_id), field)
    if text is None:
        raise RunNotFound(f"no report of run {run_id!r} in this Redis (not finished, or older than 30 days)")
    return str(text)
