"""The live view fits 80 columns without losing a column or a node, and shows elapsed time against the plan with an
ETA, the running tasks with worker and time, the latest failures with their reason, and tokens."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from cortex.cli.progress import HEADERS, progress_view
from cortex.models.phase import Phase
from cortex.models.result import Outcome, TaskResult
from cortex.planner import build_plan
from cortex.roster import load_cluster, load_roster
from cortex.runtime import statefiles
from cortex.runtime.runstate import RunState

from .conftest import FLEET


def test_the_live_view_fits_80_columns_and_says_what_is_going_on(tmp_path: Path) -> None:
    plan = build_plan("Run the full catalog toolset across the fleet", FLEET, load_roster(), load_cluster())
    state = RunState.new(plan, "20261201-101500-ab12cd", tmp_path, model_configured=False)
    now = time.time()
    state.started_at = now - 40
    state.enter(Phase.execution, now - 30)
    graph = state.graph
    records = sorted(graph.records.values(), key=lambda r: r.task.id)
    for rec in records[:12]:  # released as the coordinator does; ten end well, one fails, one runs
        graph.mark_released(rec, now - 30)
    for rec in records[:10]:
        graph.apply(_result(rec.task.id, Outcome.succeeded, now - 20), now - 20)
    broken = records[10]
    error = "pytest exited 2: ImportError: cannot import name 'fee' from 'payments.money' " + "x" * 80
    graph.apply(_result(broken.task.id, Outcome.failed, now - 5, error=error, retryable=False), now - 5)
    busy = records[11]
    state.running = {busy.task.id: "test-worker-01"}
    state.claimed_at = {busy.task.id: repr(now - 12)}
    doc = statefiles.snapshot(state, "running")[statefiles.CURRENT]
    console = Console(width=80, record=True, color_system=None)
    console.print(progress_view(doc, now=now))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    header = next(line for line in text.splitlines() if "master" in line and "pend" in line)
    assert all(h in header.split() for h in HEADERS)  # no column cut or dropped
    assert all(t.master[:12] in text for t in plan.tasks)
    nodes = {w.node for w in plan.workers}
    assert all(n in text for n in nodes)  # every node's workers, wrapped if need be
    assert "elapsed 40 s of" in text and "planned" in text and "ETA" in text
    assert f"{busy.task.id}  on test-worker-01  12 s" in text
    assert f"{broken.task.id}: pytest exited 2: ImportError" in text


def _result(task_id: str, outcome: Outcome, at: float, **kw: object) -> TaskResult:
    return TaskResult(task_id=task_id, attempt=1, worker="w", started=at - 1, finished=at, outcome=outcome, **kw)  # type: ignore[arg-type]
