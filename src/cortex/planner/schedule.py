"""Scheduling: list scheduling of the task DAG on the placed worker slots, critical path and lower bound.

Every figure here is an estimate computed from task estimates; the report sets the measured run beside it.
"""

from __future__ import annotations

import heapq
import math

from cortex.models.phase import Phase
from cortex.models.plan import (
    ExpectedTask,
    PhaseWindow,
    Schedule,
    ScheduledTask,
    TimelineMinute,
    WorkerAssignment,
)
from cortex.models.roster import PhaseEstimates
from cortex.models.task import Task
from cortex.planner.dag import Dag


def critical_path(tasks: list[Task], graph: Dag) -> tuple[list[str], float]:
    """The longest chain of estimated durations through the DAG, and its length (ties broken by task id)."""
    return _critical_path(_bottom_levels(_durations(tasks), graph), graph)


def _critical_path(level: dict[str, float], graph: Dag) -> tuple[list[str], float]:
    """The chain from the bottom levels list scheduling uses (``_bottom_levels``): from the task with no
    dependency that has the longest way to the end, each time to the successor with the longest (the smallest
    id on a tie). A forward pass of its own cost as much again."""
    starts = [n for n in graph.order if not graph.preds[n]]
    if not starts:
        return [], 0.0
    node = min(starts, key=lambda n: (-level[n], n))
    path = [node]
    while after := graph.succs[node]:
        node = min(after, key=lambda n: (-level[n], n))
        path.append(node)
    return path, round(level[path[0]], 3)


def _durations(tasks: list[Task]) -> dict[str, float]:
    """Each task's estimated seconds, by id (the loops read a table: attribute reads of 100,000 models cost more)."""
    return {t.id: t.estimate.seconds for t in tasks}


def _bottom_levels(duration: dict[str, float], graph: Dag) -> dict[str, float]:
    """Longest estimated time from the start of each task to the end of the DAG (``duration``: each task's
    estimated seconds): the list-scheduling priority."""
    level: dict[str, float] = {}
    succs = graph.succs
    for node in reversed(graph.order):
        after = succs[node]  # (a list, not a generator: most tasks have one or two successors)
        level[node] = duration[node] + (max([level[s] for s in after]) if after else 0.0)
    return level


def list_schedule(
    tasks: list[Task], graph: Dag, workers: list[WorkerAssignment], expected: frozenset[str] = frozenset()
) -> list[ScheduledTask]:
    """Simulate the runtime's dispatch: when a worker of the right type is free, it takes the ready task with the
    highest priority, then the longest remaining path (HLFET). Tasks with no worker of their type are left out."""
    duration = _durations(tasks)
    return _list_schedule(tasks, duration, _bottom_levels(duration, graph), graph, workers, expected)


def _list_schedule(
    tasks: list[Task],
    duration: dict[str, float],
    level: dict[str, float],
    graph: Dag,
    workers: list[WorkerAssignment],
    expected: frozenset[str],
) -> list[ScheduledTask]:
    # the loop works on positions in the dispatch order (priority, then longest remaining path, then id), not on
    # ids: a ready task is (ready at, position), compared as a float and an int, and every table is a list
    ids = [i for _, _, i in sorted([(-t.priority, -level[t.id], t.id) for t in tasks])]
    at_pos = {task_id: n for n, task_id in enumerate(ids)}
    kind = {t.id: t.worker_type for t in tasks}
    seconds = [duration[i] for i in ids]
    waiting = [len(graph.preds[i]) for i in ids]
    ready_at = [0.0] * len(ids)
    # per worker type: the workers free by the current time (ids, a heap) and the busy ones (free at, id). Tasks
    # come off the ready heap in time order, so a busy worker once free stays free: each choice costs a heap
    # operation, not a scan of the type's workers
    idle_of: dict[str, list[str]] = {}
    busy_of: dict[str, list[tuple[float, str]]] = {}
    for w in workers:
        idle_of.setdefault(w.worker_type, []).append(w.worker_id)
        busy_of.setdefault(w.worker_type, [])
    for heap in idle_of.values():
        heapq.heapify(heap)
    idle = [idle_of.get(kind[i]) for i in ids]  # each position's type's heaps (None: no worker of its type)
    busy = [busy_of.get(kind[i]) for i in ids]
    placed: list[tuple[float, str, str, float, bool]] = []  # tuples sort by (start, task id) as they are
    # what is ready at the start (already in dispatch order), and a heap of what becomes ready later; each turn
    # takes the lesser head (100,000 pops from a heap of every task cost more than sorting them)
    first = [p for p, n in enumerate(waiting) if n == 0]
    ready: list[tuple[float, int]] = []
    pop, push, succs = heapq.heappop, heapq.heappush, graph.succs  # the loop runs once per task: 100,000 times
    n, i = len(first), 0
    while i < n or ready:
        if ready and (i == n or ready[0] < (0.0, first[i])):
            at, pos = pop(ready)
        else:
            at, pos = 0.0, first[i]
            i += 1
        free, taken = idle[pos], busy[pos]
        if free is None or taken is None:
            continue  # no worker of its type
        while taken and taken[0][0] <= at:
            push(free, pop(taken)[1])
        # the free worker with the lowest id, else the one free soonest (lowest id on a tie)
        start, worker = (at, pop(free)) if free else pop(taken)
        end = start + seconds[pos]
        push(taken, (end, worker))
        task_id = ids[pos]
        placed.append((round(start, 3), task_id, worker, round(end, 3), task_id in expected))
        for succ_id in succs[task_id]:
            succ = at_pos[succ_id]
            if end > ready_at[succ]:
                ready_at[succ] = end
            left = waiting[succ] = waiting[succ] - 1
            if left == 0:
                push(ready, (ready_at[succ], succ))
    placed.sort()
    return [ScheduledTask(task_id, worker, start, end, expected_) for start, task_id, worker, end, expected_ in placed]


def _phases(est: PhaseEstimates, makespan: float) -> list[PhaseWindow]:
    lengths = [est.preflight, est.activation, est.distribution, makespan, est.aggregation, est.reporting]
    windows, at = [], 0.0
    for phase, length in zip(Phase, lengths, strict=True):
        windows.append(
            PhaseWindow(
                index=int(phase),
                name=phase.name,
                start_s=round(at, 3),
                end_s=round(at + length, 3),
                description=phase.description,
            )
        )
        at += length
    return windows


def _timeline(entries: list[ScheduledTask], phases: list[PhaseWindow]) -> list[TimelineMinute]:
    exec_start = phases[3].start_s
    total = phases[-1].end_s
    count = max(1, math.ceil(total / 60))
    # one pass over the entries: each adds to the minutes it starts in and runs through (a per-minute scan of every
    # entry made long plans quadratic)
    starting: list[list[str]] = [[] for _ in range(count)]
    running = [0] * count
    for e in entries:
        begin, finish = exec_start + e.start_s, exec_start + e.end_s
        first = int(begin // 60)
        if 0 <= first < count:
            starting[first].append(e.task_id)
        for minute in range(max(0, first), min(count, math.ceil(finish / 60))):  # each one it ends after the start of
            running[minute] += 1
    minutes: list[TimelineMinute] = []
    for minute in range(count):
        lo = minute * 60.0
        phase = next((p.name for p in phases if p.start_s <= lo < p.end_s), phases[-1].name)
        minutes.append(TimelineMinute(minute=minute, phase=phase, starting=starting[minute], running=running[minute]))
    return minutes


def with_expected(tasks: list[Task], graph: Dag, expected: list[ExpectedTask]) -> tuple[list[Task], Dag]:
    """``tasks`` and ``graph`` with the expected tasks added as the runtime would admit them: each after the task
    whose handoff admits it, and before every task that waits for all others (``after_all``)."""
    if not expected:
        return tasks, graph
    extra = [
        Task(
            id=e.id,
            master=e.master,
            kind=e.kind,
            worker_type=e.worker_type,
            target=e.target,
            depends_on=[e.after],
            estimate=e.estimate,
            origin="expected",
        )
        for e in expected
    ]
    closing = [t.id for t in tasks if t.after_all]
    edges = [(d, t.id) for t in tasks for d in t.depends_on]
    edges += [(e.after, e.id) for e in expected] + [(e.id, c) for e in expected for c in closing]
    return tasks + extra, Dag(sorted(graph.order + [e.id for e in expected]), edges)


def lower_bound(tasks: list[Task], workers: list[WorkerAssignment], path_s: float) -> float:
    """No run whose tasks take their estimates can end sooner: the critical path, and each worker type's work
    over its workers (a task runs only on a worker of its type)."""
    work: dict[str, float] = {}
    for t in tasks:
        work[t.worker_type] = work.get(t.worker_type, 0.0) + t.estimate.seconds
    slots: dict[str, int] = {}
    for w in workers:
        slots[w.worker_type] = slots.get(w.worker_type, 0) + 1
    per_type = [seconds / slots[kind] for kind, seconds in work.items() if slots.get(kind)]
    return round(max([path_s, *per_type]), 3)


def schedule(
    tasks: list[Task],
    graph: Dag,
    workers: list[WorkerAssignment],
    estimates: PhaseEstimates,
    expected: list[ExpectedTask] | None = None,
) -> Schedule:
    """The plan's timeline: list schedule, phases, per-minute view, critical path, makespan and lower bound.
    ``expected``: tasks past runs' handoffs admitted, scheduled as the runtime would admit them again."""
    tasks, graph = with_expected(tasks, graph, expected or [])
    duration = _durations(tasks)  # read once for the schedule and the critical path
    level = _bottom_levels(duration, graph)
    entries = _list_schedule(tasks, duration, level, graph, workers, frozenset(e.id for e in expected or []))
    path, path_s = _critical_path(level, graph)
    total_work = round(sum(duration.values()), 3)
    slots = len(workers)
    lower = lower_bound(tasks, workers, path_s)
    makespan = round(max((e.end_s for e in entries), default=0.0), 3)
    phases = _phases(estimates, makespan)
    # built here from typed parts, so not validated again (100,000 rows took 0.05 s); `cortex run` validates the
    # whole plan when it reads it
    return Schedule.model_construct(
        entries=entries,
        phases=phases,
        timeline=_timeline(entries, phases),
        critical_path=path,
        critical_path_s=path_s,
        total_work_s=total_work,
        slots=slots,
        lower_bound_s=lower,
        makespan_s=makespan,
    )
