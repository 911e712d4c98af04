"""Shared helpers for the benchmarks: the machine description and synthetic plans run through the real engine."""

from __future__ import annotations

import asyncio
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import psutil

from cortex.coord.server import EmbeddedRedis
from cortex.models import Cluster, Plan, Roster
from cortex.models.plan import RoutingDecision
from cortex.models.task import Estimate, Task
from cortex.planner import assemble_plan
from cortex.runtime.coordinator import Coordinator


def machine() -> str:
    """One line describing where the figures were measured."""
    freq = psutil.cpu_freq()
    mhz = f", {freq.max or freq.current:.0f} MHz" if freq else ""
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores{mhz}, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, {platform.system()}"
    )


def bench_plan(tasks: list[Task], workers: int, *, nodes: int = 4) -> Plan:
    """A plan of ``tasks`` for one master with ``workers`` workers of one type over ``nodes`` worker nodes."""
    nodes = max(1, min(nodes, workers))
    per = -(-workers // nodes)
    cluster = Cluster.model_validate(
        {
            "name": "bench",
            "nodes": [
                {"name": "cp1", "role": "control-plane", "cpu": 1, "memory_mib": 1024, "worker_slots": 0},
                *(
                    {"name": f"n{i}", "role": "worker", "cpu": 1, "memory_mib": 1024, "worker_slots": per}
                    for i in range(1, nodes + 1)
                ),
            ],
        }
    )
    roster = Roster.model_validate(
        {
            "masters": [{"name": "coordinator", "role": "bench", "base_budget": 0, "worker_pool": 0}],
            "worker_types": [{"name": "w", "master": "coordinator", "count": workers, "budget": 0}],
        }
    )
    routing = RoutingDecision(
        mode="fallback", selected=["coordinator"], scores=[], single_expert_threshold=1, parallel_threshold=1
    )
    return assemble_plan("benchmark", [], roster, cluster, routing, tasks)


def task(
    task_id: str,
    kind: str = "builtin.noop",
    seconds: float = 0.0,
    deps: list[str] | None = None,
    params: dict[str, Any] | None = None,
) -> Task:
    """A synthetic task for the single benchmark master."""
    return Task(
        id=task_id,
        master="coordinator",
        kind=kind,
        worker_type="w",
        depends_on=deps or [],
        params=params or {},
        estimate=Estimate(seconds=seconds, tokens=0),
    )


def run_plan(plan: Plan, *, appendonly: bool = False) -> dict[str, Any]:
    """Run ``plan`` through the real engine (embedded Redis, supervisors, worker processes); the report data.
    ``appendonly``: the server as ``cortex run`` starts it (append-only file, fsync on every write)."""
    with (
        tempfile.TemporaryDirectory(prefix="cortex-bench-") as state,
        EmbeddedRedis(appendonly=appendonly) as server,
    ):
        result = asyncio.run(Coordinator(plan, server.url, Path(state)).run())
        return result.report.model_dump(mode="json", by_alias=True)
