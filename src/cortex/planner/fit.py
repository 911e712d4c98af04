"""Plans that fit their budgets: what a task will cost, and what gives way when a master's work costs more than
its budget.

A task that needs a model costs nothing and takes no time when no model is configured: it will be skipped, and
the plan says so rather than reserving for it. When the work that can run still costs more than a master's
budget, tasks give way in the roster policy's order (optional ones first, then the lowest priority), each named in
the plan's notes with the reason; a task that needed one that gave way gives way too. Planning never refuses a
fleet for being large.
"""

from __future__ import annotations

from cortex.models.roster import Roster
from cortex.models.task import Estimate, Task

NO_MODEL = "need a model and none is configured: they will be skipped, and count as 0 tokens and 0 s here"


_NOTHING = Estimate(seconds=0, tokens=0)


def effective(task: Task, model_configured: bool, reused: bool = False) -> Estimate:
    """What ``task`` is expected to cost in this plan: nothing when it will be skipped (no model) or its recorded
    result reused."""
    if (task.requires_model and not model_configured) or reused:
        return _NOTHING
    return task.estimate


def _without(tasks: list[Task], gone: set[str]) -> list[Task]:
    """``tasks`` minus ``gone``, and minus what needed a task that is gone (transitively); aggregation tasks
    (``needs: completion``) only lose the dependency."""
    changed = True
    while changed:
        changed = False
        for t in tasks:
            if t.id not in gone and t.needs == "success" and any(d in gone for d in t.depends_on):
                gone.add(t.id)
                changed = True
    kept = []
    for t in tasks:
        if t.id in gone:
            continue
        if any(d in gone for d in t.depends_on):  # copied only when it changes: 90,000 copies took a tenth of a plan
            t = t.model_copy(update={"depends_on": [d for d in t.depends_on if d not in gone]})
        kept.append(t)
    return kept


def fit_budgets(
    roster: Roster, masters: list[str], tasks: list[Task], *, model_configured: bool
) -> tuple[list[Task], list[str]]:
    """The tasks that fit every active master's budget, and a note for each one that gave way."""
    notes: list[str] = []
    gone: set[str] = set()
    by_master: dict[str, list[Task]] = {}
    for t in tasks:  # one pass, not one per master
        by_master.setdefault(t.master, []).append(t)
    for name in masters:
        budget = roster.master(name).budget
        mine = by_master.get(name, [])
        cost = sum(effective(t, model_configured).tokens for t in mine)
        if cost <= budget:
            continue
        order = sorted(
            (t for t in mine if effective(t, model_configured).tokens > 0),
            key=lambda t: (not t.optional, t.priority, t.id),
        )
        for t in order:
            if cost <= budget:
                break
            gone.add(t.id)
            cost -= effective(t, model_configured).tokens
            kind = "optional" if t.optional else f"priority {t.priority}"
            notes.append(
                f"{t.id} left out ({kind}, estimated {t.estimate.tokens:,} tokens): the work of {name} was estimated "
                f"over its budget of {budget:,} tokens, and the roster's policy gives way optional tasks first, "
                "then the lowest priority"
            )
    if not gone:
        return tasks, notes
    kept = _without(tasks, set(gone))
    dropped = sorted({t.id for t in tasks} - {t.id for t in kept} - gone)
    notes += [f"{d} left out: it needed a task that was left out" for d in dropped]
    return kept, notes
