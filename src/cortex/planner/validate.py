"""What ``cortex run`` checks of a plan before it starts anything: that this Cortex can read it, that it is what
``cortex plan`` wrote (its id is the digest of its content), that everything it names exists, that the graph is
a graph, that the budgets add up and the placement fits the nodes, and that it is of a sane size.

A plan is the contract between planning and running: an edited one is refused rather than half-trusted.
Each failure is an ``InputError`` naming the file and the field.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from cortex.errors import InputError, PlanError
from cortex.models import Plan
from cortex.models.plan import PLAN_SCHEMA_VERSION
from cortex.planner.decompose import task_graph

MAX_GOAL_CHARS = 2000
MAX_TASKS = 200_000
MAX_WORKERS = 10_000


def check_schema_version(data: dict[str, object], source: str) -> None:
    """Refuse a plan written for another schema version, before reading the rest of it."""
    version = data.get("schema_version", PLAN_SCHEMA_VERSION)
    if version != PLAN_SCHEMA_VERSION:
        raise InputError(
            source,
            f"schema version {version!r} is not the one this Cortex reads ({PLAN_SCHEMA_VERSION})",
            field="schema_version",
            hint="plan again with this version of Cortex",
        )


def _repeated(items: Iterable[str]) -> list[str]:
    return sorted(k for k, n in Counter(items).items() if n > 1)


def check_plan(plan: Plan, source: str, *, known_kinds: set[str] | None = None) -> None:
    """Refuse ``plan`` (read from ``source``) unless it can be run as it says; ``known_kinds``, when given, are the
    task kinds this installation has handlers for."""

    bad = _Refusal(source)
    if plan.id != plan.content_id():
        raise bad(
            "id",
            f"the plan's id {plan.id!r} is not the digest of its content ({plan.content_id()!r}): it was edited "
            "after planning",
            "plan again (edit the roster, cluster or goal instead of plan.json)",
        )
    if len(plan.goal) > MAX_GOAL_CHARS or not plan.goal.strip():
        raise bad("goal", f"the goal must have 1 to {MAX_GOAL_CHARS} characters, not {len(plan.goal)}")
    if len(plan.tasks) > MAX_TASKS or len(plan.workers) > MAX_WORKERS:
        sizes = f"{len(plan.tasks):,} tasks and {len(plan.workers):,} workers"
        raise bad("tasks", f"{sizes}; at most {MAX_TASKS:,} and {MAX_WORKERS:,} are run")
    _check_names(plan, bad)
    _check_tasks(plan, bad, known_kinds)
    _check_placement(plan, bad)
    _check_budget(plan, bad)


def _check_names(plan: Plan, bad: _Refusal) -> None:
    for what, names in (
        ("tasks", [t.id for t in plan.tasks]),
        ("targets", [t.name for t in plan.targets]),
        ("workers", [w.worker_id for w in plan.workers]),
        ("masters", [m.master for m in plan.masters]),
    ):
        repeated = _repeated(names)
        if repeated:
            raise bad(what, f"repeated: {', '.join(repeated[:5])}", "each must be unique")


def _check_tasks(plan: Plan, bad: _Refusal, known_kinds: set[str] | None) -> None:
    masters = {m.name for m in plan.roster.masters}
    placed = {m.master for m in plan.masters}
    types = {w.name for w in plan.roster.worker_types}
    staffed = {w.worker_type for w in plan.workers}
    targets = {t.name for t in plan.targets}
    for t in plan.tasks:
        field = f"tasks[{t.id}]"
        if t.master not in masters or t.master not in placed:
            raise bad(f"{field}.master", f"master {t.master!r} is not in the roster or has no placement")
        if t.worker_type not in types:
            raise bad(f"{field}.worker_type", f"worker type {t.worker_type!r} is not in the roster")
        if t.worker_type not in staffed:
            raise bad(f"{field}.worker_type", f"no worker of type {t.worker_type!r} is planned")
        if known_kinds is not None and t.kind not in known_kinds:
            raise bad(f"{field}.kind", f"no handler for task kind {t.kind!r} in this installation")
        if t.target is not None and t.target not in targets:
            raise bad(f"{field}.target", f"target {t.target!r} is not one of the plan's targets")
    try:
        task_graph(plan.tasks)
    except PlanError as exc:
        raise bad("tasks", exc.problem) from None


def _check_placement(plan: Plan, bad: _Refusal) -> None:
    nodes = {n.name: n for n in plan.cluster.nodes}
    roster_masters = {m.name for m in plan.roster.masters}
    funders = {w.name: w.master for w in plan.roster.worker_types}
    for m in plan.masters:
        if m.master not in roster_masters:
            raise bad(f"masters[{m.master}]", f"master {m.master!r} is not in the roster")
        if m.node not in nodes:
            raise bad(f"masters[{m.master}].node", f"node {m.node!r} is not in the cluster")
    load = Counter(w.node for w in plan.workers)
    for w in plan.workers:
        field = f"workers[{w.worker_id}]"
        if w.node not in nodes or nodes[w.node].role.value != "worker":
            raise bad(f"{field}.node", f"node {w.node!r} is not a worker node of the cluster")
        if funders.get(w.worker_type) != w.master:
            raise bad(f"{field}.worker_type", f"worker type {w.worker_type!r} is not one of master {w.master!r}")
        if w.budget < 0:
            raise bad(f"{field}.budget", "a budget cannot be negative")
    for node, count in sorted(load.items()):
        if count > nodes[node].worker_slots:
            raise bad(f"cluster.nodes[{node}]", f"{count} workers placed on {nodes[node].worker_slots} slots")


def _check_budget(plan: Plan, bad: _Refusal) -> None:
    budget = plan.budget
    if _repeated(line.master for line in budget.lines):
        raise bad("budget.lines", "a master has two budget lines")
    workers = {w.worker_id: w for w in plan.workers}
    for line in budget.lines:
        field = f"budget.lines[{line.master}]"
        amounts = [line.base, line.worker_pool, line.reserve, line.expected_usage, *line.workers.values()]
        if any(a < 0 for a in amounts):
            raise bad(field, "a budget cannot be negative")
        if sum(line.workers.values()) + line.reserve != line.worker_pool:
            raise bad(field, "its workers' budgets and reserve do not add up to its worker pool")
        for worker_id, amount in line.workers.items():
            w = workers.get(worker_id)
            if w is None or w.master != line.master or w.budget != amount:
                raise bad(f"{field}.workers[{worker_id}]", "does not match the worker's assignment")
    funded = {w for line in budget.lines for w in line.workers}
    unfunded = sorted(set(workers) - funded)
    if unfunded:
        raise bad("workers", f"no budget line funds {', '.join(unfunded[:5])}")
    if budget.total != sum(line.base + line.worker_pool for line in budget.lines):
        raise bad("budget.total", "is not the sum of the masters' base budgets and worker pools")


class _Refusal:
    """The ``InputError`` of one field of the plan file."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, field: str, problem: str, hint: str | None = None) -> InputError:
        return InputError(self.source, problem, field=field, hint=hint)
