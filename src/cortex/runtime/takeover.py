"""Taking a run over from a coordinator that stopped renewing its lease (failure scenario 7).

The leading coordinator keeps everything another one needs in Redis, written under its fencing token: the task
records (with their tasks) and a snapshot of its run-level counters. A coordinator that acquires the lease after it
expired restores both, releases what was waiting (retries, and pending tasks whose dependencies ended), and adopts
the node supervisors: they are not its children, so it stops them through the run's ``stop`` key and waits for
their processes to exit.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import psutil

from cortex.coord.keys import RunKeys
from cortex.errors import RunNotFound
from cortex.models import Plan
from cortex.runtime.records import TaskRecord

if TYPE_CHECKING:
    from cortex.runtime.coordinator import Coordinator

ADOPTED_STOP_TIMEOUT_S = 20.0


async def load_plan(url: str, run_id: str) -> Plan:
    """The plan of run ``run_id`` as stored in Redis at ``url``; ``RunNotFound`` when there is none."""
    from cortex.coord.connection import connect, redact_url

    redis = await connect(url)
    try:
        text = await redis.get(RunKeys(run_id).plan)
    finally:
        await redis.aclose()
    if text is None:
        raise RunNotFound(f"no run {run_id!r} in Redis at {redact_url(url)} (it ended, or never started there)")
    return Plan.model_validate_json(text)


def snapshot(coord: Coordinator) -> dict[str, Any]:
    """The run-level state a coordinator taking over cannot rebuild from the task records."""
    return {
        "started_at": coord.started_at,
        "phase_times": coord.phase_times,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in coord.checks],
        "handoffs": coord.handoffs,
        "reassignments": coord.reassignments,
        "retries": coord.graph.retries,
        "duplicates": coord.graph.duplicates,
        "failed_nodes": sorted(coord.failed_nodes),
        "moves": coord.moves,
        "placement": coord.placement,
    }


async def restore(coord: Coordinator) -> None:
    """Rebuild ``coord`` from what the previous leader stored, and queue what must be released now."""
    from cortex.runtime.coordinator import Check

    raw = await coord.redis.hgetall(coord.keys.tasks)
    out = coord.graph.restore([TaskRecord.from_json(v) for _, v in sorted(raw.items())])
    state = json.loads((await coord.redis.hget(coord.keys.coordinator, "state")) or "{}")
    coord.started_at = state.get("started_at", coord.started_at)
    coord.phase_times = state.get("phase_times", {})
    coord.checks = [Check(**c) for c in state.get("checks", [])]
    coord.handoffs = state.get("handoffs", [])
    coord.reassignments = state.get("reassignments", 0)
    coord.graph.retries = state.get("retries", 0)
    coord.graph.duplicates = state.get("duplicates", 0)
    coord.failed_nodes = set(state.get("failed_nodes", []))
    coord.moves = state.get("moves", [])
    coord.placement.update(state.get("placement", {}))
    coord.placement.update(await coord.redis.hgetall(coord.keys.placement))
    nodes = {k: json.loads(v) for k, v in (await coord.redis.hgetall(coord.keys.nodes)).items()}
    coord.adopted = {
        n: int(d["supervisor_pid"]) for n, d in nodes.items() if d.get("supervisor_pid") and n not in coord.failed_nodes
    }
    coord._handle(out)
    coord._dirty.update(coord.graph.records)  # written again under our token at the first flush
    coord._results_cursor = "0"  # results the previous leader read and never acknowledged come first


async def wait_for_adopted(coord: Coordinator) -> None:
    """Wait until the node supervisors this coordinator did not start (it took the run over) have exited."""
    pids = set(coord.adopted.values())
    deadline = time.monotonic() + ADOPTED_STOP_TIMEOUT_S
    while any(running(p) for p in pids):
        if time.monotonic() > deadline:
            return  # they stop themselves once the run's lease is gone; do not hang the run's end on them
        await asyncio.sleep(0.1)  # they are not our children: there is nothing to wait on but their pids


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
