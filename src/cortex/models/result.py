"""A task result: what a worker reports for one attempt of one task, on the run's results stream."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from cortex.models.handoff import Handoff


class Outcome(StrEnum):
    """How an attempt ended."""

    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"
    """The task does not apply here (a tool optional by design is absent); ``error`` says why."""


class TaskResult(BaseModel):
    """One attempt's result. The coordinator applies the first result of a task's current attempt and counts any
    other as a duplicate."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    attempt: int = Field(ge=1)
    worker: str
    started: float
    finished: float
    released_ts: float | None = None
    """When the coordinator released this attempt (epoch seconds), for the dispatch latency."""
    outcome: Outcome
    output: dict[str, JsonValue] = Field(default_factory=dict)
    """The handler's output (JSON), without its handoffs."""
    handoffs: list[Handoff] = Field(default_factory=list)
    error: str = ""
    retryable: bool = True
    redelivered: bool = False
    """The entry was delivered before, to an incarnation that died or a read whose reply was lost."""
    cancelled_by: str | None = None
    """Who cancelled the task (a control message), when it was cancelled."""
