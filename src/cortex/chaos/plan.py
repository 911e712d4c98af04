"""Synthetic plans for chaos runs: many small tasks for two masters, spread over a few worker nodes with room
to take over a failed node's workers."""

from __future__ import annotations

from pydantic import JsonValue

from cortex.models import Cluster, Plan, Roster
from cortex.models.plan import RoutingDecision
from cortex.models.task import Estimate, Task
from cortex.planner import assemble_plan

MASTERS = ("testing", "monitoring")


def chaos_cluster(nodes: int = 3, slots: int = 4) -> Cluster:
    """One control-plane node for the masters and ``nodes`` worker nodes of ``slots`` slots each."""
    return Cluster.model_validate(
        {
            "name": "chaos",
            "nodes": [
                {"name": "cp1", "role": "control-plane", "cpu": 1, "memory_mib": 1024, "worker_slots": 0},
                *(
                    {"name": f"node{i}", "role": "worker", "cpu": 1, "memory_mib": 1024, "worker_slots": slots}
                    for i in range(1, nodes + 1)
                ),
            ],
        }
    )


def chaos_plan(
    tasks: int = 120,
    *,
    kind: str = "chaos.work",
    seconds: float = 0.3,
    workers: int = 6,
    nodes: int = 3,
    slots: int = 4,
    params: dict[str, JsonValue] | None = None,
    budget: int = 0,
    estimate_tokens: int = 0,
    optional_every: int = 0,
) -> Plan:
    """``tasks`` tasks of ``kind`` alternating between two masters; every fifth task from the tenth on depends on
    the task ten before it, so releases after results are exercised too. ``workers`` are split between the two
    masters' worker types. ``budget`` funds each worker and ``estimate_tokens`` is what the plan expects each task
    to use (``chaos.spend``; an underestimate makes the budget run out); ``optional_every`` marks every n-th task
    optional."""
    per_type = {"testing": (workers + 1) // 2, "monitoring": workers // 2}
    roster = Roster.model_validate(
        {
            "masters": [
                {"name": m, "role": f"chaos {m}", "base_budget": 0, "worker_pool": budget * per_type[m]}
                for m in MASTERS
            ],
            "worker_types": [{"name": f"{m}-w", "master": m, "count": per_type[m], "budget": budget} for m in MASTERS],
            "routing": {"fallback": "testing"},
        }
    )
    items = []
    for i in range(tasks):
        master = MASTERS[i % 2]
        items.append(
            Task(
                id=f"chaos-{i:04d}",
                master=master,
                kind=kind,
                worker_type=f"{master}-w",
                depends_on=[f"chaos-{i - 10:04d}"] if i >= 10 and i % 5 == 0 else [],
                params={"seconds": seconds, **(params or {})},
                optional=bool(optional_every) and i % optional_every == 0,
                estimate=Estimate(seconds=seconds, tokens=estimate_tokens),
            )
        )
    routing = RoutingDecision(
        mode="parallel", selected=list(MASTERS), scores=[], single_expert_threshold=1, parallel_threshold=1
    )
    return assemble_plan(f"chaos: {tasks} x {kind}", [], roster, chaos_cluster(nodes, slots), routing, items)
