"""Nested token budgets: run > master (base + worker pool) > worker, with each master's reserve."""

from __future__ import annotations

from cortex.errors import PlanError
from cortex.models.plan import Budget, BudgetLine, WorkerAssignment
from cortex.models.roster import Roster
from cortex.models.task import Task
from cortex.planner.fit import effective


def allocate(
    roster: Roster, masters: list[str], workers: list[WorkerAssignment], tasks: list[Task], *, model_configured: bool
) -> Budget:
    """Allocate each active master its base and pool; workers draw from their master's pool. The expected usage
    counts what will run (``fit.effective``); ``fit.fit_budgets`` made the tasks fit before.

    Refuses a roster whose workers' budgets exceed their master's pool: such a plan could not keep its promise.
    """
    lines: list[BudgetLine] = []
    usage: dict[str, int] = {}  # by master, in one pass over the tasks (a pass per master before)
    for t in tasks:
        usage[t.master] = usage.get(t.master, 0) + effective(t, model_configured).tokens
    for name in masters:
        m = roster.master(name)
        mine = {w.worker_id: w.budget for w in workers if w.master == name}
        drawn = sum(mine.values())
        if drawn > m.worker_pool:
            raise PlanError(
                "roster",
                f"workers of {name} need {drawn:,} tokens but its worker_pool is {m.worker_pool:,}",
                field=f"masters[{name}].worker_pool",
                hint="raise worker_pool, lower the worker types' budget, or run fewer workers",
            )
        lines.append(
            BudgetLine(
                master=name,
                base=m.base_budget,
                worker_pool=m.worker_pool,
                workers=mine,
                reserve=m.worker_pool - drawn,
                expected_usage=usage.get(name, 0),
            )
        )
    total = sum(line.base + line.worker_pool for line in lines)
    expected = sum(line.expected_usage for line in lines)
    return Budget(
        total=total,
        lines=lines,
        expected_usage=expected,
        efficiency=round(expected / total, 4) if total else 0.0,
        target=roster.expected_usage_target,
    )
