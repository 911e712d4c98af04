"""Decomposition: each selected master's playbook over the targets becomes tasks in a validated DAG."""

from __future__ import annotations

from pydantic import TypeAdapter

from cortex.errors import CycleFound, PlanError
from cortex.models.plan import Target
from cortex.models.roster import Master, PlaybookTask, Roster
from cortex.models.task import Estimate, Task
from cortex.planner.dag import Dag

_TASKS = TypeAdapter(list[Task])


def _template_graph(masters: list[Master]) -> Dag:
    """Playbook templates as a graph (edge = runs before); refuses unknown references and cycles."""
    names = sorted(f"{m.name}.{p.name}" for m in masters for p in m.playbook)
    edges = []
    for m in masters:
        for p in m.playbook:
            me = f"{m.name}.{p.name}"
            for dep in p.after:
                if dep == "*":
                    continue
                if dep not in names:
                    raise PlanError(
                        "roster", f"unknown playbook task {dep!r}", field=f"{me}.after", hint="use master.task names"
                    )
                edges.append((dep, me))
    try:
        return Dag(names, edges)
    except CycleFound as exc:
        raise PlanError(
            "roster", f"playbook dependency cycle: {exc}", hint="remove one of these 'after' entries"
        ) from exc


_DEFAULTS = {
    name: f.get_default(call_default_factory=True) for name, f in Task.model_fields.items() if not f.is_required()
}


def _base(master: Master, p: PlaybookTask) -> dict[str, object]:
    """What every instance of playbook task ``p`` shares, but the fields at ``Task``'s defaults: 100,000 tasks
    validate an eighth quicker with the keys left out than given."""
    shared: dict[str, object] = {
        "master": master.name,
        "kind": p.kind,
        "worker_type": p.worker_type,
        "params": p.params,
        "priority": p.priority,
        "optional": p.optional,
        "requires_model": p.requires_model,
        "timeout_s": p.timeout_s,
        "needs": p.needs,
        "estimate": Estimate(seconds=p.estimate_seconds, tokens=p.estimate_tokens),
        "after_all": "*" in p.after,
    }
    return {k: v for k, v in shared.items() if k not in _DEFAULTS or v != _DEFAULTS[k]}


def _instances(master: Master, p: PlaybookTask, targets: list[Target]) -> list[tuple[str, str | None]]:
    """The ids and targets of ``p``'s tasks: one per run, or one per target with its trait."""
    if p.per == "run":
        return [(f"{master.name}.{p.name}", None)]
    return [(f"{master.name}.{p.name}:{t.name}", t.name) for t in targets if p.when is None or p.when in t.traits]


def decompose(roster: Roster, selected: list[str], targets: list[Target]) -> list[Task]:
    """Tasks of the selected masters' playbooks, with dependencies resolved per target. Sorted by id."""
    all_masters = roster.masters
    _template_graph(all_masters)  # validate every playbook, selected or not
    by_template: dict[str, list[tuple[str, str | None]]] = {}
    for m in all_masters:
        if m.name not in selected:
            continue
        for p in m.playbook:
            by_template[f"{m.name}.{p.name}"] = _instances(m, p, targets)
    # instances of each template by target (None: a run-level task): a task's dependencies are found by lookup,
    # not by scanning every instance of the template (which made planning quadratic in the number of targets)
    by_target: dict[str, dict[str | None, list[str]]] = {}
    for template, instances in by_template.items():
        groups = by_target[template] = {}
        for task_id, target in instances:
            groups.setdefault(target, []).append(task_id)
    every = [task_id for ts in by_template.values() for task_id, _ in ts]
    tasks: list[dict[str, object]] = []
    for m in all_masters:
        for p in m.playbook:
            base = _base(m, p)
            for task_id, target in by_template.get(f"{m.name}.{p.name}", []):
                deps: set[str] = set()
                for dep in p.after:
                    if dep == "*":
                        deps.update(every)
                        deps.discard(task_id)
                        continue
                    groups = by_target.get(dep, {})
                    if target is None:
                        deps.update(i for ids in groups.values() for i in ids)
                    else:
                        deps.update(groups.get(target, []))
                        deps.update(groups.get(None, []))
                tasks.append({"id": task_id, "target": target, "depends_on": sorted(deps), **base})
    tasks.sort(key=lambda t: str(t["id"]))
    return _TASKS.validate_python(tasks)  # one call for every task: 100,000 model constructions cost seconds


def task_graph(tasks: list[Task]) -> Dag:
    """The tasks as a DAG (edge = dependency runs first). Refuses unknown dependencies and cycles."""
    ids = {t.id for t in tasks}
    for t in tasks:
        for d in t.depends_on:
            if d not in ids:
                raise PlanError("plan", f"task {t.id!r} depends on unknown task {d!r}", field="tasks")
    try:
        return Dag(sorted(ids), [(d, t.id) for t in tasks for d in t.depends_on])
    except CycleFound as exc:
        raise PlanError("plan", f"task dependency cycle: {exc}", field="tasks") from exc
