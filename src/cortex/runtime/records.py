"""Task records: the coordinator's view of each task, and the one place a task changes state."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cortex.models.task import TRANSITIONS, Task, TaskState


class IllegalTransition(RuntimeError):
    """A move between task states that ``TRANSITIONS`` does not allow: a bug in the coordinator."""


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (task record in Redis, report and archive)."""
        return {
            "id": self.task.id,
            "master": self.task.master,
            "kind": self.task.kind,
            "worker_type": self.task.worker_type,
            "target": self.task.target,
            "origin": self.task.origin,
            "state": self.state.value,
            "attempts": self.attempt,
            "worker": self.worker,
            "released_at": self.released_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": self.duration_s,
            "estimate_s": self.task.estimate.seconds,
            "error": self.error,
            "errors": self.errors,
            "reason": self.reason,
            "output": self.output,
        }

    def to_json(self) -> str:
        """``to_dict`` as JSON."""
        return json.dumps(self.to_dict(), default=str)
