"""What the planner learns from: per finished run, each task's measured duration and tokens with what its target
measured, and the plan's makespan against the run's. Written at the end of every run (``runtime.history``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from cortex.models.handoff import Handoff
from cortex.models.plan import TargetMeasures


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskSample(_Strict):
    """One task that succeeded: what it was, what it took, and what the plan had estimated."""

    id: str
    kind: str
    master: str
    worker_type: str
    target: str | None
    origin: str
    """``plan``, or ``handoff:<master>`` for a task admitted at run time."""
    source_task: str | None = None
    """For a task admitted at run time: the task whose handoff admitted it."""
    duration_s: float = Field(ge=0)
    tokens: int = Field(default=0, ge=0)
    estimate_s: float = Field(ge=0)
    measures: TargetMeasures | None = None
    """What the task's target measured when the run was planned."""


class RunHistory(_Strict):
    """One finished run as the planner reads it back."""

    run_id: str
    plan_id: str
    goal: str
    fleet: list[str]
    """The plan's target names, sorted: runs over the same fleet compare."""
    status: str
    finished_at: float
    estimated_makespan_s: float
    measured_makespan_s: float | None
    tasks: list[TaskSample] = Field(default_factory=list)


class CacheEntry(_Strict):
    """A task's recorded result, reused by a later run whose task has the same ``key`` (incremental runs)."""

    key: str
    run_id: str
    """The run that produced it."""
    task_id: str
    kind: str
    finished_at: float
    duration_s: float
    """What running it took then (what reusing it saves)."""
    output: dict[str, JsonValue] = Field(default_factory=dict)
    handoffs: list[Handoff] = Field(default_factory=list)
    """The handoffs it made: replayed when it is reused, so what it handed off is admitted again."""
