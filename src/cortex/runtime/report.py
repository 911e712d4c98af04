"""Phase 5: the report (a ``Report``, written as JSON and Markdown) from what ran, and the archive of the run.

Every figure here is measured (task times, ledger, process usage) or copied from the plan and labelled as the
plan's estimate. ``build`` takes the run's state and what phase 5 read from Redis; it reads nothing itself.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from cortex.files import write_atomic, write_json
from cortex.models import Plan
from cortex.models.findings import OsvDatabase
from cortex.models.messages import StreamEvent
from cortex.models.report import (
    CriticalPath,
    Degradation,
    EstimateAccuracy,
    Latency,
    Makespan,
    MasterSummary,
    ModelCalls,
    NodeFailures,
    NodeUsage,
    PhaseTimes,
    Report,
    ReportPaths,
    TaskReport,
    TokenSpend,
)
from cortex.models.state import LedgerAccount
from cortex.planner.estimates import relative_error
from cortex.runtime import pictures
from cortex.runtime.lineage import lineage_graph, lineage_mermaid
from cortex.runtime.records import TaskRecord
from cortex.runtime.runstate import RunState
from cortex.toolset.findings import by_repository


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0-1) by linear interpolation, None for no values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[max(0, min(998, round(q * 1000) - 1))]


def actual_critical_path(records: dict[str, TaskRecord]) -> list[str]:
    """Walk back from the task that finished last through the dependency that finished last."""
    done = {i: r for i, r in records.items() if r.finished_at is not None and r.started_at is not None}
    if not done:
        return []
    cursor: str | None = max(done, key=lambda i: (done[i].finished_at or 0.0, i))
    path = []
    while cursor is not None:
        path.append(cursor)
        deps = [d for d in records[cursor].task.depends_on if d in done]
        cursor = max(deps, key=lambda d: (done[d].finished_at or 0.0, d)) if deps else None
    return path[::-1]


def model_usage(raw: dict[str, str], prices: dict[str, dict[str, float]]) -> dict[str, dict[str, ModelCalls]]:
    """Model calls per master and model (``master|model|field`` counters), with their cost in money when the price
    table has the model (per million input and output tokens); otherwise the cost says it is unknown."""
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for key, value in raw.items():
        master, rest = key.split("|", 1)
        model, what = rest.rsplit("|", 1)
        counts.setdefault(master, {}).setdefault(model, {})[what] = int(value)
    out: dict[str, dict[str, ModelCalls]] = {}
    for master, models in counts.items():
        for model, u in models.items():
            price = prices.get(model)
            cost: float | str = f"unknown: no price for {model} in the price table"
            if price is not None:
                spent = u.get("input", 0) * price["input_per_mtok"] + u.get("output", 0) * price["output_per_mtok"]
                cost = round(spent / 1e6, 6)
            out.setdefault(master, {})[model] = ModelCalls(
                calls=u.get("calls", 0), input=u.get("input", 0), output=u.get("output", 0), cost=cost
            )
    return out


@dataclass
class EndFigures:
    """What phase 5 measured once every process had stopped: ledger accounts, node usage, model calls, budget
    degradations and the reservations of dead holders it released."""

    tokens: dict[str, LedgerAccount]
    nodes: dict[str, NodeUsage]
    models: dict[str, dict[str, ModelCalls]] = field(default_factory=dict)
    degradations: list[Degradation] = field(default_factory=list)
    token_spend: list[TokenSpend] = field(default_factory=list)
    orphan_reservations: int = 0
    executions: dict[str, int] = field(default_factory=dict)
    """Task id -> how many times a worker started it."""
    lost_fixes: list[str] = field(default_factory=list)
    """Fixes a task reported whose branch does not hold the commit it named: ``task: why``."""


def accuracy(plan: Plan, tasks: list[TaskReport]) -> EstimateAccuracy:
    """How the plan's task estimates compared with the run."""
    compared = [t for t in tasks if t.estimate_error is not None]
    by_basis: dict[str, int] = {}
    for t in compared:
        by_basis[t.estimate_basis] = by_basis.get(t.estimate_basis, 0) + 1
    ran = {t.id for t in tasks}
    return EstimateAccuracy(
        tasks_compared=len(compared),
        task_median_error=round(statistics.median(abs(t.estimate_error or 0.0) for t in compared), 4)
        if compared
        else None,
        by_basis=dict(sorted(by_basis.items())),
        learned_from_runs=plan.history_runs,
        expected=len(plan.expected),
        expected_admitted=sum(1 for e in plan.expected if e.id in ran),
    )


def build(state: RunState, aggregate: dict[str, MasterSummary], end: EndFigures, status: str) -> Report:
    """The report of the run as it stands."""
    plan, records = state.plan, state.graph.records
    now = time.time()
    by_master: dict[str, dict[str, int]] = {}
    for rec in records.values():
        counts = by_master.setdefault(rec.task.master, {})
        counts[rec.state.value] = counts.get(rec.state.value, 0) + 1
    names = list(state.phase_times)
    measured = {
        name: round((state.phase_times[names[i + 1]] if i + 1 < len(names) else now) - state.phase_times[name], 3)
        for i, name in enumerate(names)
    }
    latencies = [x for r in records.values() for x in r.dispatch_latency_s]
    procs = state.processes
    tasks = [r.to_report() for r in sorted(records.values(), key=lambda r: r.task.id)]
    for t in tasks:
        t.executions = end.executions.get(t.id, 0)
    criteria = {
        "all-required-succeeded": state.all_required_succeeded,
        "no-lost-tasks": all(r.state.terminal for r in records.values()) and not end.lost_fixes,
        "within-budget": all(t.used <= t.allocated for t in end.tokens.values()),
        "ledger-settled": all(t.reserved == 0 and t.overrun == 0 for t in end.tokens.values()),
        "masters-activated": all(f"master-{m.master}" in procs for m in plan.masters),
        "workers-placed": all(
            w.worker_id in procs and procs[w.worker_id].node == state.placement[w.worker_id] for w in plan.workers
        ),
    }
    return Report(
        run_id=state.run_id,
        plan_id=plan.id,
        goal=plan.goal,
        status=status,
        started_at=state.started_at,
        finished_at=now,
        duration_s=round(now - state.started_at, 3),
        checks=state.checks,
        phases=PhaseTimes(
            measured_s=measured, estimated_s={p.name: round(p.end_s - p.start_s, 3) for p in plan.schedule.phases}
        ),
        makespan=Makespan(
            measured_s=measured.get("execution"),
            estimated_s=plan.schedule.makespan_s,
            lower_bound_s=plan.schedule.lower_bound_s,
            error=relative_error(plan.schedule.makespan_s, measured.get("execution") or 0.0),
        ),
        estimates=accuracy(plan, tasks),
        reused={t.id: t.reused_from for t in tasks if t.reused_from},
        critical_path=CriticalPath(planned=plan.schedule.critical_path, taken=actual_critical_path(records)),
        dispatch_latency_s=Latency(
            p50=percentile(latencies, 0.5), p99=percentile(latencies, 0.99), samples=len(latencies)
        ),
        tasks_by_master=by_master,
        tasks=tasks,
        executions=sum(t.executions for t in tasks),
        lost_fixes=end.lost_fixes,
        outages=state.outages,
        stalls=state.stalls,
        notes=state.notes,
        retries=state.graph.retries,
        reassignments=state.reassignments,
        node_failures=NodeFailures(nodes=sorted(state.failed_nodes), moves=state.moves),
        duplicates_ignored=state.graph.duplicates,
        handoffs=state.handoffs,
        tokens=end.tokens,
        models=end.models,
        degradations=end.degradations,
        token_spend=end.token_spend,
        orphan_reservations_released=end.orphan_reservations,
        nodes=end.nodes,
        logs=_logs(state, end.nodes),
        processes=procs,
        results=aggregate,
        success_criteria=criteria,
        findings=by_repository(r.to_report() for r in records.values()),
        databases=_databases(records),
        lineage=lineage_graph(records, {w.worker_id: w.node for w in plan.workers}),
    )


def _logs(state: RunState, nodes: dict[str, NodeUsage]) -> dict[str, str]:
    """Where the run's structured logs are: the coordinator's file, and each node's directory (on that host)."""
    out = {"coordinator": str(state.state_dir.resolve() / "runs" / state.run_id / "logs" / "coordinator.jsonl")}
    for name, usage in sorted(nodes.items()):
        if usage.logs:
            out[name] = f"{usage.host}:{usage.logs}" if usage.host else usage.logs
    return out


def _databases(records: dict[str, TaskRecord]) -> list[OsvDatabase]:
    """The vulnerability databases the audits of this run used, each once."""
    seen: dict[str, OsvDatabase] = {}
    for rec in records.values():
        db = rec.output.get("database") if rec.task.kind == "security.dependency-audit" else None
        if isinstance(db, dict):
            parsed = OsvDatabase.model_validate(db)
            seen.setdefault(f"{parsed.source}|{parsed.online}", parsed)
    return [seen[k] for k in sorted(seen)]


def render_markdown(report: Report, plan: Plan) -> str:
    """``report.md``'s text for ``report`` of a run of ``plan``."""
    return _markdown(report.model_dump(mode="json", by_alias=True), plan, report)


def _markdown(data: dict[str, Any], plan: Plan, report: Report) -> str:
    env = Environment(
        loader=PackageLoader("cortex.runtime", "templates"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701  (renders Markdown, not HTML)
    )
    env.filters["n"] = lambda v: f"{v:,}"
    env.filters["s"] = lambda v: "n/a" if v is None else f"{v:,.3f} s"
    try:
        charts = {
            "gantt": pictures.run_gantt(report, plan),
            "burn": pictures.burn_down(report),
            "load": pictures.node_load(report),
        }
        return env.get_template("report.md.j2").render(r=data, plan=plan, charts=charts)
    except Exception as exc:  # a rendering bug must not cost the run its report and archive
        return (
            f"# Cortex execution report `{data['run_id']}`\n\nRendering failed ({type(exc).__name__}: {exc}); "
            f"every figure is in `report.json`.\n"
        )


def write(
    report: Report,
    plan: Plan,
    run_dir: Path,
    state_dir: Path,
    event_log: list[StreamEvent],
    state_docs: dict[str, Any],
) -> ReportPaths:
    """Write report.md/report.json into ``run_dir`` and archive plan, state, events and report (written into
    ``CORTEX-EXEC-<id>.partial`` and renamed: the archive appears whole or not at all)."""
    archive = state_dir / "archives" / f"CORTEX-EXEC-{report.run_id}"
    paths = ReportPaths(
        report_md=str(run_dir / "report.md"), report_json=str(run_dir / "report.json"), archive=str(archive)
    )
    report.paths = paths
    data = report.model_dump(mode="json", by_alias=True)
    report_json = write_json(run_dir / "report.json", data)  # first: it is the record; the Markdown is a view
    report_md = write_atomic(run_dir / "report.md", _markdown(data, plan, report))
    staging = archive.with_name(archive.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write_atomic(staging / "plan.json", plan.model_dump_json(indent=2) + "\n")
    for name, doc in state_docs.items():
        write_json(staging / name, doc)
    lines = (json.dumps(e.model_dump(mode="json", by_alias=True), sort_keys=True) + "\n" for e in event_log)
    write_atomic(staging / "events.jsonl", "".join(lines))
    write_json(staging / "lineage.json", data["lineage"])
    write_atomic(staging / "lineage.mmd", lineage_mermaid(report.lineage))
    for target, text in pictures.lineage_by_target(report.lineage).items():  # one readable graph per repository
        write_atomic(staging / "lineage" / (re.sub(r"[^A-Za-z0-9._-]", "_", target) + ".mmd"), text)
    shutil.copyfile(report_md, staging / "report.md")
    shutil.copyfile(report_json, staging / "report.json")
    staging.rename(archive)
    return paths
