"""Live state files, rewritten atomically: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cortex.files import write_json

CURRENT = "current-execution.json"
MASTERS = "master-activation.json"
WORKERS = "worker-distribution.json"


def snapshot(coord: Any, status: str) -> dict[str, Any]:
    """The three live documents for a coordinator's current state (``coord`` is a ``Coordinator``)."""
    import time

    from cortex.models.state import ExecutionState
    from cortex.planner.schedule import PHASES

    plan = coord.plan
    counts: dict[str, dict[str, int]] = {}
    for rec in coord.graph.records.values():
        c = counts.setdefault(rec.task.master, {})
        state = "running" if rec.task.id in coord._running else rec.state.value
        c[state] = c.get(state, 0) + 1
    procs = {k: json.loads(v) for k, v in coord._processes.items()}
    current = ExecutionState.model_validate(
        {
            "run_id": coord.run_id,
            "plan_id": plan.id,
            "goal": plan.goal,
            "phase": coord.phase,
            "phase_name": PHASES[coord.phase][1],
            "status": status,
            "started_at": coord.started_at,
            "updated_at": time.time(),
            "pid": os.getpid(),
            "tasks": counts,
            "phase_times": coord.phase_times,
            "retries": coord.graph.retries,
            "reassignments": coord.reassignments,
            "duplicates": coord.graph.duplicates,
            "handoffs": len(coord.handoffs),
            "tokens": {
                k: {f: v[f] for f in ("allocated", "used", "reserved", "remaining", "efficiency")}
                for k, v in coord.token_use.items()
            },
            "workers_alive": {
                node: sum(1 for p in procs.values() if p["node"] == node and p["kind"] == "worker" and p["alive"])
                for node in sorted({w.node for w in plan.workers})
            },
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in coord.checks],
            "state_dir": str(coord.state_dir),
            "report": {k: str(v) for k, v in coord.report_paths.items()},
        }
    ).model_dump(mode="json")
    masters = {
        "run_id": coord.run_id,
        "masters": [
            {
                "master": m.master,
                "node": m.node,
                **{k: procs.get(f"master-{m.master}", {}).get(k) for k in ("pid", "alive", "restarts")},
            }
            for m in plan.masters
        ],
    }
    nodes: dict[str, list[str]] = {}
    for w in plan.workers:
        nodes.setdefault(coord.placement[w.worker_id] or "(no free slot)", []).append(w.worker_id)
    workers = {
        "run_id": coord.run_id,
        "nodes": nodes,
        "failed_nodes": sorted(coord.failed_nodes),
        "moves": coord.moves,
        "workers": [
            {
                "worker_id": w.worker_id,
                "worker_type": w.worker_type,
                "node": coord.placement[w.worker_id],
                "planned_node": w.node,
                "budget": w.budget,
                **{k: procs.get(w.worker_id, {}).get(k) for k in ("pid", "alive", "restarts")},
            }
            for w in plan.workers
        ],
    }
    return {CURRENT: current, MASTERS: masters, WORKERS: workers}


def write_all(state_dir: Path, docs: dict[str, Any]) -> None:
    """Write each live document atomically."""
    for name, data in docs.items():
        write_json(state_dir / name, data)
