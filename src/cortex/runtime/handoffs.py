"""Admitting a handoff: one master's task hands work to another master. The rules, free of I/O.

A handoff becomes a task when the receiving master is active in the plan, a worker of the named type is staffed,
and the receiver's budget covers the estimates of all its tasks plus this one. Two handoffs that name the same
task (same kind, target and key: the same package to bump, the same branch to review) are a conflict: the first
one won, the later one is recorded as a duplicate and not admitted.
"""

from __future__ import annotations

from cortex.models import Plan
from cortex.models.handoff import Handoff, HandoffDecision
from cortex.models.task import Estimate, Task
from cortex.planner.reuse import cache_key
from cortex.runtime.records import TaskRecord


def task_id_of(h: Handoff, source: TaskRecord) -> str:
    """The id of the task a handoff becomes: ``kind:target[:key]``."""
    return f"{h.kind}:{source.task.target or 'run'}" + (f":{h.key}" if h.key else "")


def decide(
    plan: Plan, records: dict[str, TaskRecord], earlier: list[HandoffDecision], source: TaskRecord, h: Handoff
) -> tuple[HandoffDecision, Task | None]:
    """The decision on handoff ``h`` from ``source``, and the task to admit when it is admitted."""
    task_id = task_id_of(h, source)
    line = next((b for b in plan.budget.lines if b.master == h.to), None)
    staffed = any(w.worker_type == h.worker_type for w in plan.workers)
    committed = sum(r.task.estimate.tokens for r in records.values() if r.task.master == h.to)
    first = next((d for d in earlier if d.task == task_id and d.admitted), None)
    if line is None or not staffed:
        decision = f"rejected: {h.to} is not active in this plan or has no {h.worker_type} worker"
    elif first is not None or task_id in records:
        by = first.source_task if first is not None else "the plan"
        decision = f"duplicate: {task_id} was already admitted from {by}; the first handoff won"
    elif committed + h.estimate_tokens > line.base + line.worker_pool:
        decision = (
            f"rejected: {h.to} budget {line.base + line.worker_pool:,} cannot cover {committed + h.estimate_tokens:,}"
        )
    else:
        decision = "admitted"
    record = HandoffDecision(
        sender=source.task.master,
        to=h.to,
        task=task_id,
        source_task=source.task.id,
        reason=h.reason,
        decision=decision,
    )
    if not record.admitted:
        return record, None
    expected = plan.expected_task(task_id)
    target = next((t for t in plan.targets if t.name == source.task.target), None)
    task = Task(
        id=task_id,
        master=h.to,
        kind=h.kind,
        worker_type=h.worker_type,
        target=source.task.target,
        params=dict(h.params),
        requires_model=h.requires_model,
        # the plan's learned estimate when a past run's handoff admitted the same task (``Plan.expected``)
        estimate=expected.estimate if expected else Estimate(seconds=h.estimate_seconds, tokens=h.estimate_tokens),
        origin=f"handoff:{source.task.master}",
    )
    if plan.cache_fingerprint is not None:  # a handoff task's result is reused like a planned one's
        task = task.model_copy(update={"cache_key": cache_key(task, target, plan.cache_fingerprint)})
    return record, task
