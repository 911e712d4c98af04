"""The planner: goal + targets + roster + cluster -> a deterministic, validated ``Plan``.

``build_plan`` runs the steps in order: routing, decomposition, placement, budgets, schedule, risks.
``write_plan`` writes ``plan.json`` and the Markdown documents rendered from it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from cortex.errors import InputError, PlanError
from cortex.models import Cluster, Plan, Roster, Task
from cortex.models.history import RunHistory
from cortex.models.plan import ExpectedTask, RoutingDecision, Target
from cortex.planner.budgets import allocate
from cortex.planner.decompose import decompose, task_graph
from cortex.planner.estimates import Learner, previous_run
from cortex.planner.fit import NO_MODEL, effective, fit_budgets
from cortex.planner.placement import place_masters, place_workers
from cortex.planner.reuse import ResultCache, expected_reuse, keyed
from cortex.planner.risks import FAILURE_SCENARIOS, SUCCESS_CRITERIA
from cortex.planner.routing import route
from cortex.planner.schedule import schedule
from cortex.planner.validate import MAX_GOAL_CHARS, check_plan, check_schema_version
from cortex.repo import discover_targets
from cortex.repo.targets import skipped_links

__all__ = ["MAX_GOAL_CHARS", "assemble_plan", "build_plan", "check_plan", "load_plan", "write_plan"]


def build_plan(
    goal: str,
    targets_dir: Path,
    roster: Roster,
    cluster: Cluster,
    *,
    model_configured: bool = False,
    targets: list[Target] | None = None,
    history: Sequence[RunHistory] = (),
    cache: ResultCache | None = None,
) -> Plan:
    """Plan ``goal`` over the repositories under ``targets_dir``, or over ``targets`` when given (a fleet file's,
    checked out by the caller). Same inputs, same plan (and plan id). ``model_configured``: whether tasks that need
    a model will run (else they cost nothing in the plan). ``history``: past runs, newest first, to learn
    estimates from (``estimates``); without it every estimate is the roster's default. ``cache``: the recorded
    results, to key tasks and expect reuse (``reuse``); None: nothing is reused."""
    with _without_cycle_collection():
        return _build(goal, targets_dir, roster, cluster, model_configured, targets, history, cache)


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Planning makes hundreds of thousands of objects and no reference cycles worth collecting: the cyclic
    collector's passes over them took a third of planning 10,000 repositories (9.5 s with it, 6.2 s without).
    Reference counting still frees everything; the collector is back on (if it was on) when planning ends."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _build(
    goal: str,
    targets_dir: Path,
    roster: Roster,
    cluster: Cluster,
    model_configured: bool,
    targets: list[Target] | None,
    history: Sequence[RunHistory],
    cache: ResultCache | None,
) -> Plan:
    goal = " ".join(goal.split())
    if not goal:
        raise InputError("goal", "the goal is empty", hint='say what to do, e.g. "audit security across the fleet"')
    if len(goal) > MAX_GOAL_CHARS:
        raise InputError("goal", f"the goal is {len(goal)} characters; at most {MAX_GOAL_CHARS} are accepted")
    targets = targets if targets is not None else discover_targets(targets_dir)
    routing = route(goal, roster)
    tasks = decompose(roster, routing.selected, targets)
    plan = assemble_plan(
        goal, targets, roster, cluster, routing, tasks, model_configured=model_configured, history=history, cache=cache
    )
    skipped = skipped_links(targets_dir)
    if not skipped:
        return plan
    note = f"Not targets, not followed: symbolic links in {targets_dir}: {'; '.join(skipped)}."
    return plan.model_copy(update={"notes": [*plan.notes, note]}).sealed()


def assemble_plan(
    goal: str,
    targets: list[Target],
    roster: Roster,
    cluster: Cluster,
    routing: RoutingDecision,
    tasks: list[Task],
    *,
    model_configured: bool = False,
    history: Sequence[RunHistory] = (),
    cache: ResultCache | None = None,
) -> Plan:
    """Learn estimates, fit, place, budget and schedule ``tasks`` (from decomposition, or a synthetic list in
    benchmarks)."""
    first = task_graph(tasks)  # refuse cycles and unknown dependencies before anything else
    learner = Learner(history, roster) if history else None
    expected: list[ExpectedTask] = []
    if learner is not None:
        tasks = learner.learn(tasks, targets)
        expected = learner.expected(tasks, targets)
    funders = {w.name: w.master for w in roster.worker_types}
    used = {funders[t.worker_type] for t in tasks if t.worker_type in funders}
    active = [
        m.name
        for m in roster.masters
        if m.name in routing.selected or m.name == roster.routing.fallback or m.name in used
    ]
    fitted, fit_notes = fit_budgets(roster, active, tasks, model_configured=model_configured)
    # fitting only removes tasks (and their edges): the same list back means the same graph, else a part of it
    graph = first if fitted is tasks else first.induced({t.id for t in fitted})
    tasks = fitted
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
    reuse: dict[str, str] = {}
    if cache is not None:
        tasks = keyed(tasks, targets, cache.fingerprint)
        keys = [t.cache_key for t in tasks if t.cache_key]
        reuse = expected_reuse(tasks, graph.order, cache.runs_of(keys)) if keys else {}
    costed = [
        t
        if (e := effective(t, model_configured, t.id in reuse)) is t.estimate
        else t.model_copy(update={"estimate": e})
        for t in tasks
    ]
    expected = [e for e in expected if e.worker_type in staffed and e.after not in reuse]
    timeline = schedule(costed, graph, workers, roster.phases, expected)
    notes = list(fit_notes)
    skipped = [t.id for t in tasks if t.requires_model and not model_configured]
    if skipped:
        notes.append(f"{len(skipped)} task(s) {NO_MODEL}.")
    for target in targets:
        if target.links_outside:
            links = target.links_outside
            shown = "; ".join(links[:5]) + ("; ..." if len(links) > 5 else "")
            notes.append(f"{target.name}: symbolic links leading out of it are not followed: {shown}.")
    working = {t.master for t in tasks}
    idle = [m for m in routing.selected if m not in working]
    if idle:
        notes.append(f"Selected masters with no playbook task for these targets: {', '.join(idle)}.")
    return Plan(
        id="",
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
        expected=expected,
        history_runs=len(history),
        cache_fingerprint=cache.fingerprint if cache is not None else None,
        reuse=reuse,
        previous=previous_run(history, goal, sorted(t.name for t in targets)),
    ).sealed()


def write_plan(plan: Plan, out: Path) -> list[Path]:
    """Write ``plan.json`` and the documents into ``out``, each atomically (temp file + rename)."""
    from cortex.files import write_atomic
    from cortex.planner.render import render_documents

    out.mkdir(parents=True, exist_ok=True)
    written = [write_atomic(out / "plan.json", plan.model_dump_json(indent=2) + "\n")]
    for name, text in render_documents(plan).items():
        written.append(write_atomic(out / name, text))
    return written


def load_plan(path: Path, *, known_kinds: set[str] | None = None) -> Plan:
    """Read a ``plan.json`` and check it can be run as it says (``validate.check_plan``; ``known_kinds``: the task
    kinds this installation handles); errors name the file and field."""
    from pydantic import ValidationError

    from cortex.roster import validation_error
    from cortex.roster.documents import parse_json, read_text

    text = read_text(path, "plan", hint="run `cortex plan` first")
    data = parse_json(text, str(path))
    if not isinstance(data, dict):
        raise InputError(str(path), "expected a JSON object (a plan.json written by `cortex plan`)")
    check_schema_version(data, str(path))
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        raise validation_error(str(path), exc, data) from exc
    check_plan(plan, str(path), known_kinds=known_kinds)
    return plan
