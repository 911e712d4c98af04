"""Decomposition: each selected master's playbook over the targets becomes tasks in a validated DAG."""

from __future__ import annotations

import networkx as nx

from cortex.errors import PlanError
from cortex.models.plan import Target
from cortex.models.roster import Master, PlaybookTask, Roster
from cortex.models.task import Estimate, Task


def _template_graph(masters: list[Master]) -> nx.DiGraph:
    """Playbook templates as a graph (edge = runs before); refuses unknown references and cycles."""
    graph = nx.DiGraph()
    names = {f"{m.name}.{p.name}" for m in masters for p in m.playbook}
    for m in masters:
        for p in m.playbook:
            me = f"{m.name}.{p.name}"
            graph.add_node(me)
            for dep in p.after:
                if dep == "*":
                    continue
                if dep not in names:
                    raise PlanError(
                        "roster",
                        f"unknown playbook task {dep!r}",
                        field=f"{me}.after",
                        hint="use master.task names",
                    )
                graph.add_edge(dep, me)
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return graph
    path = " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])
    raise PlanError("roster", f"playbook dependency cycle: {path}", hint="remove one of these 'after' entries")


def _instances(master: Master, p: PlaybookTask, targets: list[Target]) -> list[Task]:
    base = {
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
    }
    if p.per == "run":
        return [Task(id=f"{master.name}.{p.name}", **base)]
    matching = [t for t in targets if p.when is None or p.when in t.traits]
    return [Task(id=f"{master.name}.{p.name}:{t.name}", target=t.name, **base) for t in matching]


def decompose(roster: Roster, selected: list[str], targets: list[Target]) -> list[Task]:
    """Tasks of the selected masters' playbooks, with dependencies resolved per target. Sorted by id."""
    all_masters = roster.masters
    _template_graph(all_masters)  # validate every playbook, selected or not
    by_template: dict[str, list[Task]] = {}
    for m in all_masters:
        if m.name not in selected:
            continue
        for p in m.playbook:
            by_template[f"{m.name}.{p.name}"] = _instances(m, p, targets)

    tasks: list[Task] = []
    for m in all_masters:
        for p in m.playbook:
            for task in by_template.get(f"{m.name}.{p.name}", []):
                deps: set[str] = set()
                for dep in p.after:
                    if dep == "*":
                        deps |= {t.id for ts in by_template.values() for t in ts if t.id != task.id}
                        continue
                    for d in by_template.get(dep, []):
                        if task.target is None or d.target is None or d.target == task.target:
                            deps.add(d.id)
                tasks.append(task.model_copy(update={"depends_on": sorted(deps)}))
    return sorted(tasks, key=lambda t: t.id)


def task_graph(tasks: list[Task]) -> nx.DiGraph:
    """The tasks as a DiGraph (edge = dependency runs first). Refuses unknown dependencies and cycles."""
    graph = nx.DiGraph()
    ids = {t.id for t in tasks}
    for t in tasks:
        graph.add_node(t.id)
        for d in t.depends_on:
            if d not in ids:
                raise PlanError("plan", f"task {t.id!r} depends on unknown task {d!r}", field="tasks")
            graph.add_edge(d, t.id)
    if not nx.is_directed_acyclic_graph(graph):
        cycle = nx.find_cycle(graph)
        raise PlanError("plan", "task dependency cycle: " + " -> ".join(e[0] for e in cycle), field="tasks")
    return graph
