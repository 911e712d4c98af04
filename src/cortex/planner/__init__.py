"""The planner: goal + targets + roster + cluster -> a deterministic, validated ``Plan``.

``build_plan`` runs the steps in order: routing, decomposition, placement, budgets, schedule, risks.
``write_plan`` writes ``plan.json`` and the Markdown documents rendered from it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cortex.errors import InputError, PlanError
from cortex.models import Cluster, Plan, Roster, Task
from cortex.models.plan import RoutingDecision, Target
from cortex.planner.budgets import allocate
from cortex.planner.decompose import decompose, task_graph
from cortex.planner.fit import NO_MODEL, effective, fit_budgets
from cortex.planner.placement import place_masters, place_workers
from cortex.planner.risks import FAILURE_SCENARIOS, SUCCESS_CRITERIA
from cortex.planner.routing import route
from cortex.planner.schedule import schedule
from cortex.repo import discover_targets

__all__ = ["assemble_plan", "build_plan", "load_plan", "write_plan"]

MAX_GOAL_CHARS = 2000


def _digest(*parts: object) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def build_plan(
    goal: str, targets_dir: Path, roster: Roster, cluster: Cluster, *, model_configured: bool = False
) -> Plan:
    """Plan ``goal`` over the repositories under ``targets_dir``. Same inputs, same plan (and plan id).
    ``model_configured``: whether tasks that need a model will run (else they cost nothing in the plan)."""
    goal = " ".join(goal.split())
    if not goal:
        raise InputError("goal", "the goal is empty", hint='say what to do, e.g. "audit security across the fleet"')
    if len(goal) > MAX_GOAL_CHARS:
        raise InputError("goal", f"the goal is {len(goal)} characters; at most {MAX_GOAL_CHARS} are accepted")
    targets = discover_targets(targets_dir)
    routing = route(goal, roster)
    tasks = decompose(roster, routing.selected, targets)
    return assemble_plan(goal, targets, roster, cluster, routing, tasks, model_configured=model_configured)


def assemble_plan(
    goal: str,
    targets: list[Target],
    roster: Roster,
    cluster: Cluster,
    routing: RoutingDecision,
    tasks: list[Task],
    *,
    model_configured: bool = False,
) -> Plan:
    """Fit, place, budget and schedule ``tasks`` (from decomposition, or a synthetic list in benchmarks)."""
    task_graph(tasks)  # refuse cycles and unknown dependencies before anything else
    funders = {w.name: w.master for w in roster.worker_types}
    used = {funders[t.worker_type] for t in tasks if t.worker_type in funders}
    active = [
        m.name
        for m in roster.masters
        if m.name in routing.selected or m.name == roster.routing.fallback or m.name in used
    ]
    tasks, fit_notes = fit_budgets(roster, active, tasks, model_configured=model_configured)
    graph = task_graph(tasks)
    workers = place_workers(cluster, roster, active)
    staffed = {w.worker_type for w in workers}
    for t in tasks:
        if t.worker_type not in staffed:
            raise PlanError(
                "roster",
                f"task {t.id} needs a {t.worker_type!r} worker and none is planned",
                field=f"worker_types[{t.worker_type}].count",
                hint="set count to 1 or more",
            )
    budget = allocate(roster, active, workers, tasks, model_configured=model_configured)
    costed = [t.model_copy(update={"estimate": effective(t, model_configured)}) for t in tasks]
    timeline = schedule(costed, graph, workers, roster.phases)
    notes = list(fit_notes)
    skipped = [t.id for t in tasks if t.requires_model and not model_configured]
    if skipped:
        notes.append(f"{len(skipped)} task(s) {NO_MODEL}.")
    idle = [m for m in routing.selected if not any(t.master == m for t in tasks)]
    if idle:
        notes.append(f"Selected masters with no playbook task for these targets: {', '.join(idle)}.")
    return Plan(
        id=_digest(
            goal,
            [t.model_dump() for t in targets],
            roster.model_dump(),
            cluster.model_dump(),
            [t.model_dump() for t in tasks],
            model_configured,
        ),
        goal=goal,
        targets=targets,
        cluster=cluster,
        roster=roster,
        routing=routing,
        tasks=tasks,
        masters=place_masters(cluster, active),
        workers=workers,
        budget=budget,
        schedule=timeline,
        retry=roster.retry,
        failure_scenarios=list(FAILURE_SCENARIOS),
        success_criteria=list(SUCCESS_CRITERIA),
        notes=notes,
        model_configured=model_configured,
    )


def write_plan(plan: Plan, out: Path) -> list[Path]:
    """Write ``plan.json`` and the documents into ``out``, each atomically (temp file + rename)."""
    from cortex.files import write_atomic
    from cortex.planner.render import render_documents

    out.mkdir(parents=True, exist_ok=True)
    written = [write_atomic(out / "plan.json", plan.model_dump_json(indent=2) + "\n")]
    for name, text in render_documents(plan).items():
        written.append(write_atomic(out / name, text))
    return written


def load_plan(path: Path) -> Plan:
    """Read a ``plan.json``, re-validating its task graph; errors name the file and field."""
    from pydantic import ValidationError

    from cortex.roster import validation_error

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(str(path), f"cannot read plan: {exc.strerror}", hint="run `cortex plan` first") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            str(path), f"not valid JSON: {exc.msg}", field=f"line {exc.lineno}, column {exc.colno}"
        ) from exc
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        raise validation_error(str(path), exc, data) from exc
    try:
        task_graph(plan.tasks)
    except PlanError as exc:
        raise InputError(str(path), exc.problem, field="tasks") from exc
    return plan
