"""Task records: the coordinator's view of each task, and the one place a task changes state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_json

from cortex.errors import IllegalTransition
from cortex.models.handoff import Handoff
from cortex.models.report import StoredTaskRecord, TaskReport
from cortex.models.task import TRANSITIONS, Task, TaskState
from cortex.planner.estimates import relative_error


@dataclass
class TaskRecord:
    """Run-time record of one task. Only ``move`` changes ``state``."""

    task: Task
    state: TaskState = TaskState.pending
    attempt: int = 0
    worker: str | None = None
    released_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    reason: str | None = None
    output: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    """Error of every failed attempt, in order."""
    dispatch_latency_s: list[float] = field(default_factory=list)
    handoffs: list[Handoff] = field(default_factory=list)
    """The handoffs of the result that ended it (recorded with its result for a later run to replay)."""
    reused_from: str | None = None
    """The run whose recorded result this task reused instead of running (incremental runs)."""
    _task_json: tuple[Task, str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def task_json(self) -> str:
        """The task as JSON, serialised once for every release and write of the record (until the task is
        replaced: a handoff admitted at run time adds to an aggregation's dependencies)."""
        return self._cached()[1]

    def _cached(self) -> tuple[Task, str, str]:
        """The task, its JSON, and the end of the record's JSON that only the task decides (``to_json``)."""
        cached = self._task_json
        if cached is None or cached[0] is not self.task:
            task = self.task
            constant = {
                "id": task.id,
                "master": task.master,
                "kind": task.kind,
                "worker_type": task.worker_type,
                "target": task.target,
                "origin": task.origin,
                "estimate_s": task.estimate.seconds,
                "estimate_basis": task.estimate.basis,
            }
            task_json = task.model_dump_json()
            cached = self._task_json = (task, task_json, f',{to_json(constant).decode()[1:-1]},"task":{task_json}}}')
        return cached

    def move(self, to: TaskState) -> None:
        """Change state, refusing moves that are not legal."""
        if to not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"task {self.task.id}: {self.state} -> {to} is not a legal transition")
        self.state = to

    @property
    def duration_s(self) -> float | None:
        """Measured run time of the attempt that ended the task."""
        if self.started_at is None or self.finished_at is None:
            return None
        return round(self.finished_at - self.started_at, 4)

    def to_report(self) -> TaskReport:
        """The record as the report and the aggregation read it."""
        return TaskReport.model_construct(**self._fields())

    def _fields(self) -> dict[str, Any]:
        return {
            "id": self.task.id,
            "master": self.task.master,
            "kind": self.task.kind,
            "worker_type": self.task.worker_type,
            "target": self.task.target,
            "origin": self.task.origin,
            "state": self.state,
            "attempts": self.attempt,
            "worker": self.worker,
            "released_at": self.released_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": self.duration_s,
            "estimate_s": self.task.estimate.seconds,
            "estimate_basis": self.task.estimate.basis,
            "estimate_error": (
                relative_error(self.task.estimate.seconds, self.duration_s) if self.duration_s is not None else None
            ),
            "error": self.error,
            "errors": self.errors,
            "reason": self.reason,
            "output": self.output,
            "reused_from": self.reused_from,
        }

    def to_json(self) -> str:
        """The record as stored in Redis (``StoredTaskRecord``): the report's fields plus the whole task, so a
        coordinator taking the run over can rebuild it (tasks admitted at run time are not in the plan). Every task
        is written at least twice: what only the task decides is serialised once (``_cached``), the rest by
        ``pydantic_core.to_json`` (a quarter of ``json.dumps``'s time)."""
        duration = self.duration_s
        varying = {
            "state": self.state.value,
            "attempts": self.attempt,
            "worker": self.worker,
            "released_at": self.released_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": duration,
            "estimate_error": relative_error(self.task.estimate.seconds, duration) if duration is not None else None,
            "error": self.error,
            "errors": self.errors,
            "reason": self.reason,
            "output": self.output,
            "reused_from": self.reused_from,
            "dispatch_latency_s": self.dispatch_latency_s,
            "handoffs": [h.model_dump(mode="json", by_alias=True) for h in self.handoffs],
        }
        return to_json(varying).decode()[:-1] + self._cached()[2]

    @classmethod
    def from_json(cls, text: str) -> TaskRecord:
        """A record as ``to_json`` stored it (restoring is not a state transition: it is the state)."""
        data = StoredTaskRecord.model_validate_json(text)
        rec = cls(data.task, state=data.state, attempt=data.attempts)
        rec.worker, rec.error, rec.reason = data.worker, data.error, data.reason
        rec.released_at, rec.started_at, rec.finished_at = data.released_at, data.started_at, data.finished_at
        rec.output, rec.errors = dict(data.output), list(data.errors)
        rec.dispatch_latency_s = list(data.dispatch_latency_s)
        rec.handoffs, rec.reused_from = list(data.handoffs), data.reused_from
        return rec
