"""Render the plan documents from ``plan.json`` only (Jinja2 templates beside this module)."""

from __future__ import annotations

from collections import defaultdict

from jinja2 import Environment, PackageLoader, StrictUndefined

from cortex.models import Plan
from cortex.planner.charts import schedule_gantt, timeline_rows

DOCUMENTS = {
    "ORCHESTRATION-PLAN.md": "orchestration_plan.md.j2",
    "ARCHITECTURE.md": "architecture.md.j2",
    "QUICK-START.md": "quick_start.md.j2",
    "EXECUTIVE-SUMMARY.md": "executive_summary.md.j2",
}


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("cortex.planner", "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # Markdown, not HTML  # noqa: S701
    )
    env.filters["n"] = lambda v: f"{v:,}"
    env.filters["pct"] = lambda v: f"{v * 100:.1f}%"
    env.filters["s"] = lambda v: f"{v:,.1f} s"
    env.filters["mid"] = lambda v: str(v).replace("-", "_").replace(".", "_").replace(":", "__")
    return env


def document_context(plan: Plan) -> dict[str, object]:
    """Values derived from the plan that several templates share."""
    matrix: dict[str, list[str]] = defaultdict(list)
    for w in plan.workers:
        matrix[w.node].append(w.worker_id)
    tasks_by_master: dict[str, list[str]] = defaultdict(list)
    for t in plan.tasks:
        tasks_by_master[t.master].append(t.id)
    step, rows = timeline_rows(plan)
    return {
        "plan": plan,
        "gantt": schedule_gantt(plan),
        "timeline_step": step,
        "timeline": rows,
        "matrix": dict(matrix),
        "tasks_by_master": dict(tasks_by_master),
        "types": sorted({w.worker_type for w in plan.workers}),
        "total_s": plan.schedule.phases[-1].end_s if plan.schedule.phases else 0.0,
    }


def render_documents(plan: Plan) -> dict[str, str]:
    """Every document's file name and text."""
    env = _env()
    ctx = document_context(plan)
    return {name: env.get_template(tpl).render(**ctx) for name, tpl in DOCUMENTS.items()}
