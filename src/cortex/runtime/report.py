"""Phase 5: the report (JSON and Markdown) from what ran, and the archive of the execution.

Every figure here is measured (task times, ledger, process usage) or copied from the plan and labelled as the
plan's estimate.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from cortex.files import write_atomic, write_json
from cortex.models import Plan
from cortex.models.task import TaskState

if TYPE_CHECKING:
    from cortex.runtime.coordinator import Coordinator


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0-1) by linear interpolation, None for no values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[max(0, min(998, round(q * 1000) - 1))]


def actual_critical_path(records: dict[str, Any]) -> list[str]:
    """Walk back from the task that finished last through the dependency that finished last."""
    done = {i: r for i, r in records.items() if r.finished_at is not None and r.started_at is not None}
    if not done:
        return []
    cursor: str | None = max(done, key=lambda i: (done[i].finished_at, i))
    path = []
    while cursor is not None:
        path.append(cursor)
        deps = [d for d in records[cursor].task.depends_on if d in done]
        cursor = max(deps, key=lambda d: (done[d].finished_at, d)) if deps else None
    return path[::-1]


def lineage_graph(records: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """What produced what in this run: master -> task -> worker, task -> target, task -> findings and assets,
    and the dependencies between tasks. Only tasks that succeeded contribute outputs."""
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, str]] = []
    node_of = {w.worker_id: w.node for w in plan.workers}

    def node(nid: str, kind: str, **attrs: Any) -> str:
        nodes.setdefault(nid, {"id": nid, "kind": kind, **attrs})
        return nid

    for rec in sorted(records.values(), key=lambda r: r.task.id):
        t = node(f"task:{rec.task.id}", "task", state=rec.state.value, task_kind=rec.task.kind)
        edges.append({"from": node(f"master:{rec.task.master}", "master"), "to": t, "relation": "owns"})
        if rec.task.target:
            edges.append({"from": t, "to": node(f"target:{rec.task.target}", "target"), "relation": "examined"})
        if rec.worker:
            w = node(f"worker:{rec.worker}", "worker", node=node_of.get(rec.worker, ""))
            edges.append({"from": t, "to": w, "relation": "ran_on"})
        edges += [{"from": f"task:{d}", "to": t, "relation": "before"} for d in rec.task.depends_on]
        out = rec.output if rec.state.value == "succeeded" else {}
        for f in out.get("findings", []):
            where = f.get("file", f.get("package", f.get("where", "")))
            fid = node(
                f"finding:{rec.task.target}:{f.get('tool', 'cicd')}:{f.get('id', f.get('rule'))}:{where}",
                "finding",
                severity=f.get("severity"),
            )
            edges.append({"from": t, "to": fid, "relation": "found"})
        for kind, count in out.get("assets", {}).items():
            edges.append(
                {
                    "from": t,
                    "to": node(f"assets:{rec.task.target}:{kind}", "assets", count=count),
                    "relation": "discovered",
                }
            )
    return {"nodes": list(nodes.values()), "edges": edges}


def lineage_mermaid(graph: dict[str, Any]) -> str:
    """The lineage graph as a Mermaid flowchart; findings are drawn as one count per task."""

    def mid(text: str) -> str:
        return "n" + hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:10]

    lines = ["flowchart LR"]
    found: dict[str, int] = {}
    for e in graph["edges"]:
        if e["relation"] == "found":
            found[e["from"]] = found.get(e["from"], 0) + 1
        elif e["relation"] != "discovered":
            lines.append(f'  {mid(e["from"])}["{e["from"]}"] -->|{e["relation"]}| {mid(e["to"])}["{e["to"]}"]')
    for task, n in sorted(found.items()):
        lines.append(f'  {mid(task)} -->|found| {mid(task + "#findings")}(["{n} finding(s)"])')
    return "\n".join(lines) + "\n"


def model_usage(raw: dict[str, str], prices: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Model calls per master and model (``master|model|field`` counters), with their cost in money when the price
    table has the model (per million input and output tokens); otherwise the cost says it is unknown."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key, value in raw.items():
        master, rest = key.split("|", 1)
        model, what = rest.rsplit("|", 1)
        out.setdefault(master, {}).setdefault(model, {})[what] = int(value)
    for models in out.values():
        for model, u in models.items():
            price = prices.get(model)
            if price is None:
                u["cost"] = f"unknown: no price for {model} in the price table"
            else:
                cost = u.get("input", 0) * price["input_per_mtok"] + u.get("output", 0) * price["output_per_mtok"]
                u["cost"] = round(cost / 1e6, 6)
    return out


def build(
    coord: Coordinator, aggregate: dict[str, Any], nodes: dict[str, Any], tokens: dict[str, Any], status: str
) -> dict[str, Any]:
    """The report data."""
    plan = coord.plan
    records = coord.graph.records
    now = time.time()
    by_master: dict[str, dict[str, int]] = {}
    for rec in records.values():
        by_master.setdefault(rec.task.master, {}).setdefault(rec.state.value, 0)
        by_master[rec.task.master][rec.state.value] += 1
    phase_names = list(coord.phase_times)
    measured = {}
    for i, name in enumerate(phase_names):
        end = coord.phase_times[phase_names[i + 1]] if i + 1 < len(phase_names) else now
        measured[name] = round(end - coord.phase_times[name], 3)
    estimated = {p.name: round(p.end_s - p.start_s, 3) for p in plan.schedule.phases}
    latencies = [x for r in records.values() for x in r.dispatch_latency_s]
    procs = {k: json.loads(v) for k, v in coord._processes.items()}
    criteria = {
        "all-required-succeeded": all(
            r.state is TaskState.succeeded for r in records.values() if not r.task.optional and r.task.origin == "plan"
        ),
        "no-lost-tasks": all(r.state.terminal for r in records.values()),
        "within-budget": all(t["used"] <= t["allocated"] for t in tokens.values()),
        "ledger-settled": all(t["reserved"] == 0 and t.get("overrun", 0) == 0 for t in tokens.values()),
        "masters-activated": all(f"master-{m.master}" in procs for m in plan.masters),
        "workers-placed": all(
            procs.get(w.worker_id, {}).get("node") == coord.placement[w.worker_id] for w in plan.workers
        ),
    }
    return {
        "run_id": coord.run_id,
        "plan_id": plan.id,
        "goal": plan.goal,
        "status": status,
        "started_at": coord.started_at,
        "finished_at": now,
        "duration_s": round(now - coord.started_at, 3),
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in coord.checks],
        "phases": {"measured_s": measured, "estimated_s": estimated},
        "makespan": {
            "measured_s": measured.get("execution"),
            "estimated_s": plan.schedule.makespan_s,
            "lower_bound_s": plan.schedule.lower_bound_s,
        },
        "critical_path": {"planned": plan.schedule.critical_path, "taken": actual_critical_path(records)},
        "dispatch_latency_s": {
            "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99),
            "samples": len(latencies),
        },
        "tasks_by_master": by_master,
        "tasks": [r.to_dict() for r in sorted(records.values(), key=lambda r: r.task.id)],
        "retries": coord.graph.retries,
        "reassignments": coord.reassignments,
        "node_failures": {"nodes": sorted(coord.failed_nodes), "moves": coord.moves},
        "duplicates_ignored": coord.graph.duplicates,
        "handoffs": coord.handoffs,
        "tokens": tokens,
        "models": coord.model_usage,
        "degradations": coord.degradations,
        "orphan_reservations_released": coord.orphan_reservations,
        "nodes": nodes,
        "processes": procs,
        "results": aggregate,
        "success_criteria": criteria,
        "lineage": lineage_graph(records, plan),
    }


def write(
    data: dict[str, Any],
    plan: Plan,
    run_dir: Path,
    state_dir: Path,
    event_log: list[dict[str, Any]],
    state_docs: dict[str, Any],
) -> dict[str, Path]:
    """Write report.md/report.json into ``run_dir`` and archive plan, state, events and report."""
    env = Environment(
        loader=PackageLoader("cortex.runtime", "templates"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701  (renders Markdown, not HTML)
    )
    env.filters["n"] = lambda v: f"{v:,}"
    env.filters["s"] = lambda v: "n/a" if v is None else f"{v:,.3f} s"
    archive = state_dir / "archives" / f"CORTEX-EXEC-{data['run_id']}"
    data["paths"] = {
        "report_md": str(run_dir / "report.md"),
        "report_json": str(run_dir / "report.json"),
        "archive": str(archive),
    }
    report_json = write_json(run_dir / "report.json", data)  # first: it is the record; the Markdown is a view
    try:
        md = env.get_template("report.md.j2").render(r=data, plan=plan)
    except Exception as exc:  # a rendering bug must not cost the run its report and archive
        md = (
            f"# Cortex execution report `{data['run_id']}`\n\nRendering failed ({type(exc).__name__}: {exc}); "
            f"every figure is in `report.json`.\n"
        )
    report_md = write_atomic(run_dir / "report.md", md)
    staging = archive.with_name(archive.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write_atomic(staging / "plan.json", plan.model_dump_json(indent=2) + "\n")
    for name, doc in state_docs.items():
        write_json(staging / name, doc)
    write_atomic(staging / "events.jsonl", "".join(json.dumps(e, sort_keys=True) + "\n" for e in event_log))
    write_json(staging / "lineage.json", data["lineage"])
    write_atomic(staging / "lineage.mmd", lineage_mermaid(data["lineage"]))
    shutil.copyfile(report_md, staging / "report.md")
    shutil.copyfile(report_json, staging / "report.json")
    staging.rename(archive)  # the archive appears whole or not at all
    return {"report_md": report_md, "report_json": report_json, "archive": archive}
