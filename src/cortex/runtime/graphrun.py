"""The task graph at run time, free of I/O: which tasks to release, what a result does, what gets skipped.

The coordinator feeds it results and sends what it returns; keeping the rules here makes them testable alone.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from cortex.models.result import Outcome, TaskResult
from cortex.models.task import RetryPolicy, Task, TaskState
from cortex.runtime.records import TaskRecord


def backoff_delay(policy: RetryPolicy, failed_attempt: int, rng: random.Random) -> float:
    """Delay before the attempt after ``failed_attempt``: exponential, capped, with jitter."""
    delay: float = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (failed_attempt - 1))
    return max(0.0, delay * (1 + rng.uniform(-policy.jitter, policy.jitter)))


@dataclass
class Changes:
    """What applying one result (or admitting or restoring tasks) changed."""

    release: list[TaskRecord] = field(default_factory=list)
    """Tasks this change made ready (``GraphRun.ready`` holds every task waiting to be sent)."""
    retry_at: float | None = None
    ended: list[TaskRecord] = field(default_factory=list)
    duplicate: bool = False


class GraphRun:
    """Task records plus the dependency rules. Not thread-safe; the coordinator owns it."""

    def __init__(self, tasks: list[Task], policy: RetryPolicy, *, model_configured: bool, seed: int | None = None):
        self.records = {t.id: TaskRecord(t) for t in tasks}
        self.policy = policy
        self.model_configured = model_configured
        self.dependents: dict[str, list[str]] = {t.id: [] for t in tasks}
        for t in tasks:
            for d in t.depends_on:
                self.dependents[d].append(t.id)
        self.closing = [t.id for t in tasks if t.after_all]
        """Tasks that wait for every other (``after_all``): a handoff admitted at run time joins their dependencies."""
        self._unfinished = [t.id for t in tasks]
        """Task ids not yet seen ended; ``done`` drops ended ones from the end, so it costs nothing per turn."""
        self.rng = random.Random(seed)
        self.duplicates = 0
        self.retries = 0
        self.progress = 0
        """Releases and results applied so far: what run-level stall detection watches (cheaper than a scan)."""
        self.ready: dict[str, TaskRecord] = {}
        """Tasks ready to be sent, in the order they became ready, until ``mark_released``. A task can become ready
        twice in one change (a failure skips a dependent, whose skip settles a task that also depends on the
        failure directly); it is here once."""
        self.counts: Counter[tuple[str, str, TaskState]] = Counter()
        """Tasks by (master, worker type, state), kept as tasks move: the live state and the gauges read it every
        half second, and counting 10,000 records each time cost the coordinator more than the tasks' results."""
        self.erred: dict[str, None] = {}
        """Ids of the tasks with a failed attempt, in the order of their first failure."""
        self._count(self.records.values())

    def _count(self, records: Iterable[TaskRecord]) -> None:
        for rec in records:
            self.counts[(rec.task.master, rec.task.worker_type, rec.state)] += 1
            if rec.errors:
                self.erred[rec.task.id] = None

    def _move(self, rec: TaskRecord, to: TaskState) -> None:
        """``rec.move``, counted."""
        before = rec.state
        rec.move(to)
        self.counts[(rec.task.master, rec.task.worker_type, before)] -= 1
        self.counts[(rec.task.master, rec.task.worker_type, to)] += 1

    def _erred(self, rec: TaskRecord, error: str) -> None:
        rec.errors.append(error)
        self.erred[rec.task.id] = None

    def tally(self, running: Iterable[str] = ()) -> dict[str, dict[str, int]]:
        """Tasks per master by state, the tasks in ``running`` (held by a worker now) counted as ``running``
        instead of their state; only states that have tasks."""
        out: dict[str, dict[str, int]] = {}
        for (master, _, state), n in self.counts.items():
            if n:
                per = out.setdefault(master, {})
                per[state.value] = per.get(state.value, 0) + n
        for task_id in running:
            rec = self.records.get(task_id)
            if rec is not None:
                per = out[rec.task.master]
                per[rec.state.value] -= 1
                per["running"] = per.get("running", 0) + 1
        return {m: {k: n for k, n in per.items() if n} for m, per in out.items()}

    def released_by_type(self) -> dict[str, int]:
        """Tasks released and not ended (in an inbox, a queue or held by a worker) per worker type."""
        out: dict[str, int] = {}
        for (_, worker_type, state), n in self.counts.items():
            if state is TaskState.released:
                out[worker_type] = out.get(worker_type, 0) + n
        return out

    def add(self, task: Task) -> TaskRecord:
        """Add a task at run time without deciding anything about it yet."""
        rec = TaskRecord(task)
        self.records[task.id] = rec
        self.counts[(task.master, task.worker_type, rec.state)] += 1
        self.dependents[task.id] = []
        self._unfinished.append(task.id)
        if task.after_all:
            self.closing.append(task.id)
        return rec

    def admit(self, task: Task) -> Changes:
        """Admit a task at run time (a handoff; it has no dependencies): release it, or skip it when it needs a
        model and none is configured. Tasks that wait for every task (``after_all``) and have not been released
        wait for this one too."""
        out = Changes()
        rec = self.add(task)
        for other in (self.records[i] for i in self.closing):
            if other.state is TaskState.pending and other is not rec:
                other.task = other.task.model_copy(update={"depends_on": [*other.task.depends_on, task.id]})
                self.dependents[task.id].append(other.task.id)
                self.ready.pop(other.task.id, None)  # ready but not sent: it waits for this one now
        self._ready(rec, out)
        return out

    def waiting(self, rec: TaskRecord) -> bool:
        """``rec`` has a dependency that has not ended (a handoff admitted after it became ready)."""
        return any(not self.records[d].state.terminal for d in rec.task.depends_on)

    @property
    def done(self) -> bool:
        """Every task has ended. An ended task never moves again, so ids seen ended are dropped for good: the
        check stops at the first task still open, and a run pays for each task once, not once per turn."""
        unfinished = self._unfinished
        while unfinished:
            if not self.records[unfinished[-1]].state.terminal:
                return False
            unfinished.pop()
        return True

    def initial(self) -> Changes:
        """Tasks with no dependencies, ready at the start."""
        out = Changes()
        for rec in sorted(self.records.values(), key=lambda r: (-r.task.priority, r.task.id)):
            if not rec.task.depends_on:
                self._ready(rec, out)
        return out

    def _ready(self, rec: TaskRecord, out: Changes) -> None:
        """``rec``'s dependencies allow it to run: release it, or skip it when it needs a missing model."""
        if rec.task.id in self.ready:
            return
        if rec.task.requires_model and not self.model_configured:
            self.skip(rec, "no model configured (set CORTEX_MODEL to run tasks that need one)", out)
        else:
            self.ready[rec.task.id] = rec
            out.release.append(rec)

    def skip(self, rec: TaskRecord, reason: str, out: Changes) -> None:
        """End ``rec`` unrun, then settle its dependents."""
        self._move(rec, TaskState.skipped)
        rec.reason = reason
        rec.finished_at = time.time()
        out.ended.append(rec)
        self._settle_dependents(rec, out)

    def requeue(self, rec: TaskRecord, why: str) -> None:
        """Release ``rec`` again as a new attempt without counting a failure: its release went nowhere (no live
        worker holds it). A result of the earlier attempt, should one still come, is a duplicate."""
        self._move(rec, TaskState.retrying)
        self._erred(rec, why)
        self.ready[rec.task.id] = rec

    def retry_due(self, task_id: str) -> None:
        """``task_id`` waited out its retry backoff: it is ready again."""
        self.ready[task_id] = self.records[task_id]

    def mark_released(self, rec: TaskRecord, now: float) -> None:
        """Record that ``rec`` was sent to its master for a new attempt."""
        self.ready.pop(rec.task.id, None)
        self.progress += 1
        self._move(rec, TaskState.released)
        rec.attempt += 1
        rec.released_at = now

    def settle_releasable(self, task_id: str) -> list[str]:
        """The dependents of ``task_id`` a worker's settle may release once every dependency of theirs has settled a
        success (``coord.delivery``), most urgent first: pending ones, except those the coordinator decides
        itself (tasks that wait for every task, which a handoff can extend; tasks skipped for want of a model)."""
        out = []
        for dep_id in self.dependents[task_id]:
            dep = self.records[dep_id]
            if dep.state is not TaskState.pending or dep.task.after_all:
                continue
            if dep.task.requires_model and not self.model_configured:
                continue
            out.append(dep)
        return [d.task.id for d in sorted(out, key=lambda r: (-r.task.priority, r.task.id))]

    def released_by_settle(self, task_id: str, at: float) -> TaskRecord | None:
        """A worker's settle released ``task_id`` at ``at`` (its first attempt): record it released. None when it
        is not pending, which only a superseded attempt's late success can cause (its dependent runs anyway; its
        result will be a duplicate)."""
        rec = self.records.get(task_id)
        if rec is None or rec.state is not TaskState.pending:
            return None
        self.mark_released(rec, at)
        return rec

    def _settle_dependents(self, rec: TaskRecord, out: Changes) -> None:
        for dep_id in sorted(self.dependents[rec.task.id], key=lambda i: (-self.records[i].task.priority, i)):
            if self.records[dep_id].state is TaskState.pending:
                self._settle(self.records[dep_id], out)

    def _settle(self, dep: TaskRecord, out: Changes) -> None:
        """Release or skip pending ``dep`` if its dependencies decide it already."""
        parents = [self.records[p] for p in dep.task.depends_on]
        bad = [p for p in parents if p.state.terminal and p.state is not TaskState.succeeded]
        if dep.task.needs == "success" and bad:
            self.skip(dep, f"dependency {bad[0].task.id} {bad[0].state.value}", out)
        elif all(p.state.terminal for p in parents):
            self._ready(dep, out)

    def restore(self, records: list[TaskRecord]) -> Changes:
        """Take over ``records`` (as another coordinator stored them) and say what to release now: tasks waiting
        out a retry, and pending tasks whose dependencies have ended (their release may never have been sent)."""
        for rec in records:
            if rec.task.id not in self.records:
                self.add(rec.task)
            self.records[rec.task.id] = rec
        self.dependents = {i: [] for i in self.records}
        self._unfinished = list(self.records)
        self.closing = [i for i, r in self.records.items() if r.task.after_all]
        self.counts, self.erred = Counter(), {}
        self._count(self.records.values())
        for r in self.records.values():
            for d in r.task.depends_on:
                self.dependents[d].append(r.task.id)
        out = Changes()
        self.ready = {}
        for rec in sorted(self.records.values(), key=lambda r: (-r.task.priority, r.task.id)):
            if rec.state is TaskState.retrying:
                self.ready[rec.task.id] = rec
                out.release.append(rec)
            elif rec.state is TaskState.pending:
                self._settle(rec, out)
        return out

    def apply(self, result: TaskResult, now: float) -> Changes:
        """Apply one result. The first result of the current attempt wins; anything else is a duplicate. A skipped
        result means the handler found the task does not apply here (``TaskSkipped``); ``error`` says why."""
        out = Changes()
        rec = self.records.get(result.task_id)
        if rec is None or rec.state is not TaskState.released or result.attempt != rec.attempt:
            self.duplicates += 1
            out.duplicate = True
            return out
        self.progress += 1
        rec.worker, rec.started_at, rec.finished_at = result.worker, result.started, result.finished
        if rec.released_at is not None:
            rec.dispatch_latency_s.append(max(0.0, result.started - rec.released_at))
        if result.outcome is Outcome.skipped:
            self.skip(rec, result.error, out)
            return out
        if result.outcome is Outcome.succeeded:
            self._move(rec, TaskState.succeeded)
            rec.output, rec.error = dict(result.output), None
            out.ended.append(rec)
            self._settle_dependents(rec, out)
            return out
        self._erred(rec, result.error)
        rec.error = result.error
        if result.retryable and rec.attempt < self.policy.max_attempts:
            self._move(rec, TaskState.retrying)
            self.retries += 1
            out.retry_at = now + backoff_delay(self.policy, rec.attempt, self.rng)
            return out
        self._move(rec, TaskState.failed)
        out.ended.append(rec)
        self._settle_dependents(rec, out)
        return out
