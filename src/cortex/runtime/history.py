"""Estimate history: what each finished run measured, kept for the planner to learn from.

At the end of a run (not one that broke) the coordinator writes a ``RunHistory``: every task that succeeded with
its measured duration and tokens and what its target measured, and the plan's makespan against the run's. It goes
to ``<state dir>/history/<run>.json`` on the coordinator's host and into Redis (``keys.HISTORY``), where plans
made on any host read it (cluster mode). ``load`` reads the latest runs, newest first.
"""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aredis
from pydantic import ValidationError

from cortex.coord.keys import HISTORY, HISTORY_KEEP, HISTORY_ORDER
from cortex.files import write_atomic
from cortex.models import Plan
from cortex.models.history import RunHistory, TaskSample
from cortex.models.report import Report

READ_RUNS = 30
"""Runs a plan learns from: the latest. Older measurements matter less than what the fleet is now."""


def from_report(report: Report, plan: Plan) -> RunHistory:
    """The samples of a finished run: every task that succeeded, with its tokens from the run's token log."""
    measures = {t.name: t.measures for t in plan.targets}
    tokens: dict[str, int] = {}
    for spend in report.token_spend:
        if spend.task:
            tokens[spend.task] = tokens.get(spend.task, 0) + spend.tokens
    admitted_by = {h.task: h.source_task for h in report.handoffs if h.task and h.decision == "admitted"}
    samples = [
        TaskSample(
            id=t.id,
            kind=t.kind,
            master=t.master,
            worker_type=t.worker_type,
            target=t.target,
            origin=t.origin,
            source_task=admitted_by.get(t.id),
            duration_s=t.duration_s,
            tokens=tokens.get(t.id, 0),
            estimate_s=t.estimate_s,
            measures=measures.get(t.target or ""),
        )
        for t in report.tasks
        if t.state.value == "succeeded" and t.duration_s is not None and not t.reused_from  # reused: nothing ran
    ]
    return RunHistory(
        run_id=report.run_id,
        plan_id=report.plan_id,
        goal=report.goal,
        fleet=sorted(t.name for t in plan.targets),
        status=report.status,
        finished_at=report.finished_at,
        estimated_makespan_s=report.makespan.estimated_s,
        measured_makespan_s=report.makespan.measured_s,
        tasks=samples,
    )


def _local(state_dir: Path) -> Path:
    return state_dir / "history"


async def record(redis: aredis.Redis, state_dir: Path, run: RunHistory) -> None:
    """Keep ``run`` on this host and in Redis (the ``HISTORY_KEEP`` latest runs stay there)."""
    text = run.model_dump_json()
    write_atomic(_local(state_dir) / f"{run.run_id}.json", text + "\n")
    pipe = redis.pipeline(transaction=True)
    pipe.hset(HISTORY, run.run_id, text)
    pipe.zadd(HISTORY_ORDER, {run.run_id: run.finished_at})
    await pipe.execute()
    await keep_latest(redis, HISTORY_ORDER, HISTORY, HISTORY_KEEP)


async def keep_latest(redis: aredis.Redis, order: str, entries: str, keep: int) -> None:
    """Drop from the hash ``entries`` and the sorted set ``order`` all but the ``keep`` latest members."""
    old = await redis.zrange(order, 0, -keep - 1)
    if old:
        pipe = redis.pipeline(transaction=True)
        pipe.zrem(order, *old)
        pipe.hdel(entries, *old)
        await pipe.execute()


def load_local(state_dir: Path, limit: int = READ_RUNS) -> tuple[list[RunHistory], list[str]]:
    """The latest ``limit`` runs recorded under ``state_dir``, newest first, and a warning per unreadable file
    (one damaged record hides none of the others)."""
    runs, problems = [], []
    for path in sorted(_local(state_dir).glob("*.json")):
        try:
            runs.append(RunHistory.model_validate_json(path.read_bytes()))
        except (OSError, ValidationError, ValueError) as exc:
            problems.append(f"{path}: not a readable run history ({type(exc).__name__}); left out")
    runs.sort(key=lambda r: r.finished_at, reverse=True)
    return runs[:limit], problems


async def load_redis(redis: aredis.Redis, limit: int = READ_RUNS) -> tuple[list[RunHistory], list[str]]:
    """The latest ``limit`` runs recorded in Redis, newest first, and a warning per unreadable entry."""
    ids = await redis.zrevrange(HISTORY_ORDER, 0, limit - 1)
    if not ids:
        return [], []
    runs, problems = [], []
    for run_id, raw in zip(ids, await redis.hmget(HISTORY, ids), strict=True):
        if raw is None:
            continue
        try:
            runs.append(RunHistory.model_validate_json(raw))
        except (ValidationError, ValueError) as exc:
            problems.append(f"{HISTORY}[{run_id}]: not a readable run history ({type(exc).__name__}); left out")
    return runs, problems
