"""Tasks of a plan and the states a task moves through at run time."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TaskState(StrEnum):
    """Run-time state of a task. ``TRANSITIONS`` below is the only list of legal moves."""

    pending = "pending"
    """Waiting for dependencies."""
    released = "released"
    """Dependencies done; sent to its master."""
    succeeded = "succeeded"
    failed = "failed"
    """Failed after its last attempt."""
    retrying = "retrying"
    """Failed an attempt; waiting out its backoff before release."""
    skipped = "skipped"
    """Not run: a dependency failed, or it needs a model and none is configured."""

    @property
    def terminal(self) -> bool:
        """True when the task will not move again."""
        return self in (TaskState.succeeded, TaskState.failed, TaskState.skipped)


TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.pending: frozenset({TaskState.released, TaskState.skipped}),
    TaskState.released: frozenset({TaskState.succeeded, TaskState.retrying, TaskState.failed, TaskState.skipped}),
    TaskState.retrying: frozenset({TaskState.released, TaskState.skipped}),
    TaskState.succeeded: frozenset(),
    TaskState.failed: frozenset(),
    TaskState.skipped: frozenset(),
}


class RetryPolicy(BaseModel):
    """Exponential backoff with jitter: delay = min(max, base * 2**(attempt-1)) * (1 ± jitter)."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=3, ge=1)
    """Attempts in all, the first included."""
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    jitter: float = Field(default=0.25, ge=0, le=1)
    """Fraction of the delay added or removed at random, so retries of many tasks do not align."""


EstimateBasis = Literal["default", "target", "kind"]
"""Where an estimate comes from: the roster's default (no history), past runs of the same task kind on the same
target, or past runs of the kind on other targets (scaled by what the targets measure)."""


class Estimate(BaseModel):
    """Planner estimates. They are estimates: the report sets the measured figures beside them."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # a value: tasks of one playbook entry share one

    seconds: float = Field(ge=0)
    tokens: int = Field(ge=0)
    basis: EstimateBasis = "default"
    samples: int = Field(default=0, ge=0)
    """Past measurements the estimate was made from (0: the roster's default)."""
    spread_s: float = Field(default=0.0, ge=0)
    """Median absolute deviation of those measurements from the estimate (0 with fewer than two)."""
    confidence: float = Field(default=0.0, ge=0, le=1)
    """``samples / (samples + 3)``: 0 for a default, 0.25 from one run, 0.5 from three, 0.77 from ten."""


class Task(BaseModel):
    """One unit of work: a kind of job run by a worker of ``worker_type`` for ``master`` on one target."""

    model_config = ConfigDict(extra="forbid")

    id: str
    master: str
    kind: str
    worker_type: str
    target: str | None = None
    """Target name (a repository of the fleet), or None for a task over the whole run."""
    params: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    after_all: bool = False
    """Waits for every other task, those admitted at run time (handoffs) included: the aggregation."""
    needs: Literal["success", "completion"] = "success"
    """``completion``: run when every dependency has ended, whatever the outcome (e.g. aggregation)."""
    priority: int = 0
    """Higher runs first when several tasks are ready."""
    optional: bool = False
    requires_model: bool = False
    timeout_s: float = Field(default=300.0, gt=0)
    estimate: Estimate
    cache_key: str | None = None
    """Digest of what the task's result depends on (kind, parameters, target revision, tools, advisories): a
    recorded result with the same key is reused instead of running again. None: never reused."""
    origin: str = "plan"
    """``plan`` for planned tasks, ``handoff:<from-master>`` for tasks admitted at run time."""
