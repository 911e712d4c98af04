"""Live state files, rewritten atomically from the run's state: a reader sees the old file or the new one, never
half of one. ``current-execution.json`` is what ``cortex status`` reads; the other two show where masters and
workers run."""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic_core import to_json

from cortex.files import write_atomic
from cortex.models.state import ExecutionState, FailureNote, RunningTask, TaskCounts
from cortex.runtime.runstate import RunState

CURRENT = "current-execution.json"
MASTERS = "master-activation.json"
WORKERS = "worker-distribution.json"


def snapshot(state: RunState, status: str, *, finished: bool = False) -> dict[str, dict[str, Any]]:
    """The three live documents for the run as it stands."""
    plan = state.plan
    counts = state.graph.tally(state.running)
    procs = state.processes
    now = time.time()
    current = ExecutionState(
        run_id=state.run_id,
        plan_id=plan.id,
        goal=plan.goal,
        phase=int(state.phase),
        phase_name=state.phase.name,
        status=status,
        started_at=state.started_at,
        updated_at=now,
        finished_at=now if finished else None,
        pid=os.getpid(),
        redis=state.redis_display,
        tasks={m: TaskCounts(**c) for m, c in counts.items()},
        phase_times=state.phase_times,
        retries=state.graph.retries,
        reassignments=state.reassignments,
        duplicates=state.graph.duplicates,
        handoffs=len(state.handoffs),
        tokens=state.token_use,
        workers_alive={
            node: sum(1 for p in procs.values() if p.node == node and p.kind == "worker" and p.alive)
            for node in sorted({w.node for w in plan.workers})
        },
        checks=state.checks,
        state_dir=str(state.state_dir),
        report=state.report_paths,
        estimated_s=plan.schedule.phases[-1].end_s if plan.schedule.phases else plan.schedule.makespan_s,
        running_tasks=_running(state),
        failures=_failures(state),
    ).model_dump(mode="json")

    def proc(pid: str) -> dict[str, Any]:
        p = procs.get(pid)
        return {"pid": p.pid if p else None, "alive": p.alive if p else None, "restarts": p.restarts if p else None}

    masters = {
        "run_id": state.run_id,
        "masters": [{"master": m.master, "node": m.node, **proc(f"master-{m.master}")} for m in plan.masters],
    }
    nodes: dict[str, list[str]] = {}
    for w in plan.workers:
        nodes.setdefault(state.placement[w.worker_id] or "(no free slot)", []).append(w.worker_id)
    workers = {
        "run_id": state.run_id,
        "nodes": nodes,
        "failed_nodes": sorted(state.failed_nodes),
        "moves": [m.model_dump(mode="json", by_alias=True) for m in state.moves],
        "workers": [
            {
                "worker_id": w.worker_id,
                "worker_type": w.worker_type,
                "node": state.placement[w.worker_id],
                "planned_node": w.node,
                "budget": w.budget,
                **proc(w.worker_id),
            }
            for w in plan.workers
        ],
    }
    return {CURRENT: current, MASTERS: masters, WORKERS: workers}


def _running(state: RunState) -> list[RunningTask]:
    """Tasks workers hold now, longest first."""
    held = []
    for task, worker in state.running.items():
        raw = state.claimed_at.get(task)
        held.append(RunningTask(task=task, worker=worker, since=float(raw) if raw else None))
    return sorted(held, key=lambda r: (r.since is None, r.since or 0.0, r.task))[:20]


def _failures(state: RunState) -> list[FailureNote]:
    """The latest failed attempts, newest first: each record's errors in order, the last one at its end time."""
    notes = []
    for rec in (state.graph.records[i] for i in state.graph.erred):
        for i, error in enumerate(rec.errors):
            at = rec.finished_at if i == len(rec.errors) - 1 else None
            notes.append(FailureNote(task=rec.task.id, error=error, at=at))
    return sorted(notes, key=lambda n: n.at or 0.0, reverse=True)[:10]


def write_all(state_dir: Path, docs: dict[str, dict[str, Any]]) -> None:
    """Write each live document atomically, indented. Encoded by pydantic-core: ``json.dumps`` with an indent runs
    in pure Python, and on the writer's thread it held the interpreter lock for up to 5 ms at a time, a pause of
    the coordinator's loop (the slowest chain hops were those right after a refresh)."""
    for name, data in docs.items():
        write_atomic(state_dir / name, to_json(data, indent=2, fallback=str).decode() + "\n")


class Writer:
    """Writes the live documents from one thread of its own. A background write (the coordinator's refresh) is
    not waited for: writing three files took 1.5-7 ms, a delay for every task released meanwhile; a refresh whose
    previous write is still running skips the files. A foreground write waits, after any write in flight (one
    thread: never overtaken by an older snapshot)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cortex-state-files")
        self._writing: Future[None] | None = None

    def write(self, docs: dict[str, dict[str, Any]], *, background: bool = False) -> None:
        """Write ``docs`` (``snapshot``'s) now, or in the background."""
        done = self._writing
        if done is not None and done.done():
            self._writing = None
            done.result()  # a background write that failed (a full disk) fails the next write, not silently
        if not background:
            self._thread.submit(write_all, self.state_dir, docs).result()
        elif self._writing is None:
            self._writing = self._thread.submit(write_all, self.state_dir, docs)

    def close(self) -> None:
        """Wait for a write in flight and stop the thread."""
        self._thread.shutdown(wait=True)
