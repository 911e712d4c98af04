"""The report's pictures (Mermaid, drawn by any Markdown viewer that knows it): what happened as a Gantt beside what
was planned, the token burn-down from every model call, the load of each node, and the lineage per target (one
readable graph per repository instead of one for the whole run). Every figure is a measurement of this run, or
the plan's estimate where the title says so."""

from __future__ import annotations

from cortex.models import Plan
from cortex.models.report import LineageGraph, Report
from cortex.planner.charts import Bar, gantt, xychart
from cortex.runtime.lineage import lineage_mermaid

BURN_POINTS = 12


def run_gantt(report: Report, plan: Plan) -> str | None:
    """Each task as planned (grey, ``done``) and as it ran (red when it failed), by the worker that ran it, in
    seconds from the first release."""
    released = [t.released_at for t in report.tasks if t.released_at is not None]
    if not released:
        return None
    t0 = min(released)
    planned = {e.task_id: e for e in plan.schedule.entries}
    sections: dict[str, list[Bar]] = {}
    ran = [t for t in report.tasks if t.worker and t.started_at is not None and t.finished_at is not None]
    for t in sorted(ran, key=lambda t: (t.worker or "", t.started_at or 0.0)):
        assert t.worker is not None and t.started_at is not None and t.finished_at is not None
        bars = sections.setdefault(t.worker, [])
        if t.id in planned:
            bars.append(Bar(f"{t.id} (plan)", planned[t.id].start_s, planned[t.id].end_s, "done"))
        bars.append(Bar(t.id, t.started_at - t0, t.finished_at - t0, "crit" if t.state.value == "failed" else "active"))
    if not sections:
        return None
    return gantt("Each task as planned (grey, an estimate) and as it ran (measured; failed in red)", sections)


def burn_down(report: Report) -> str | None:
    """Tokens left of the run's budget over the run, from the time of every model call; None without calls."""
    spends = sorted(report.token_spend, key=lambda s: s.at)
    run = report.tokens.get("run")
    if not spends or run is None:
        return None
    span = max(1e-9, report.finished_at - report.started_at)
    xs = [report.started_at + span * i / (BURN_POINTS - 1) for i in range(BURN_POINTS)]
    left = [float(run.allocated - sum(s.tokens for s in spends if s.at <= x)) for x in xs]
    labels = [f"{x - report.started_at:.0f} s" for x in xs]
    return xychart("Tokens left of the run's budget (measured at each model call)", labels, "tokens", line=left)


def node_load(report: Report) -> str | None:
    """CPU seconds each node's processes used (tool subprocesses included), and seconds its workers spent on
    tasks; None when no node reported."""
    nodes = sorted(report.nodes)
    if not nodes:
        return None
    where = {p.id: p.node for p in report.processes.values()}
    busy = {n: 0.0 for n in nodes}
    for t in report.tasks:
        node = where.get(t.worker or "")
        if node in busy and t.duration_s:
            busy[node] += t.duration_s
    cpu = xychart("CPU seconds by node (measured)", nodes, "CPU seconds", bars=[report.nodes[n].cpu_s for n in nodes])
    tasks = xychart("Seconds of task work by node (measured)", nodes, "seconds", bars=[busy[n] for n in nodes])
    return cpu + "```\n\n```mermaid\n" + tasks


def lineage_by_target(graph: LineageGraph) -> dict[str, str]:
    """Target name -> the Mermaid lineage of the tasks that examined it (the rest of the run left out)."""
    out = {}
    targets = sorted({e.to.removeprefix("target:") for e in graph.edges if e.relation == "examined"})
    for target in targets:
        tasks = {e.source for e in graph.edges if e.relation == "examined" and e.to == f"target:{target}"}
        edges = [e for e in graph.edges if e.source in tasks or e.to in tasks]
        names = {e.source for e in edges} | {e.to for e in edges}
        sub = LineageGraph(nodes=[n for n in graph.nodes if n.id in names], edges=edges)
        out[target] = lineage_mermaid(sub)
    return out
