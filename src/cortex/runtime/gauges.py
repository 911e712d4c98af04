"""The run's gauges, refreshed by the coordinator every half second: ledger figures per master and worker, tasks
by current state, queue depth, masters and workers alive, progress. Counters (tasks ended, retries, handoffs) are
counted where the events happen (``dispatch``)."""

from __future__ import annotations

import time

import redis.asyncio as aredis

from cortex.coord.keys import RunKeys
from cortex.coord.ledger import Ledger
from cortex.models.task import TaskState
from cortex.observability.metrics import RunMetrics
from cortex.runtime.runstate import RunState


def start(metrics: RunMetrics, state: RunState) -> None:
    """What is known once: the run, when it started, what the plan expects."""
    metrics.run_info.labels(state.run_id, state.plan.id).set(1)
    metrics.started.set(state.started_at)
    metrics.planned_makespan.set(state.plan.schedule.makespan_s)
    metrics.redis_up.set(1)


async def refresh(metrics: RunMetrics, state: RunState, redis: aredis.Redis, keys: RunKeys, quiet_s: float) -> None:
    """Every gauge from the run's state and its ledger; ``quiet_s``: seconds since a task last ended or was
    released."""
    plan = state.plan
    masters = ["run", *(f"master:{line.master}" for line in plan.budget.lines)]
    accounts = await Ledger(redis, keys).accounts(masters + [f"worker:{w.worker_id}" for w in plan.workers])
    for level in masters:
        use = accounts[level].use()
        name = level.removeprefix("master:")
        state.token_use[name] = use
        if level != "run":
            metrics.tokens_used.labels(name).set(use.used)
            metrics.tokens_remaining.labels(name).set(use.remaining)
            metrics.tokens_allocated.labels(name).set(use.allocated)
            metrics.token_efficiency.labels(name).set(use.efficiency)
    for w in plan.workers:
        metrics.worker_tokens_used.labels(w.worker_id).set(accounts[f"worker:{w.worker_id}"].used)
    current: dict[tuple[str, str], int] = {(m.master, s.value): 0 for m in plan.masters for s in TaskState}
    for master, by_state in state.graph.tally(state.running).items():
        for name, n in by_state.items():
            current[(master, name)] = n
    for (master, name), n in current.items():
        metrics.tasks_current.labels(master, name).set(n)
    depth = state.graph.released_by_type()
    for worker_type in {w.worker_type for w in plan.workers}:
        metrics.queue_depth.labels(worker_type).set(depth.get(worker_type, 0))
    procs = state.processes.values()
    for node in {w.node for w in plan.workers} | {n for n in state.placement.values() if n}:
        metrics.workers_alive.labels(node).set(
            sum(1 for p in procs if p.node == node and p.alive and p.kind == "worker")
        )
    metrics.masters_alive.set(sum(1 for p in procs if p.alive and p.kind == "master"))
    metrics.last_progress.set(time.time() - quiet_s)
    for event, n in (await redis.hgetall(keys.conflicts)).items():
        metrics.conflicts.labels(event).set(int(n))
