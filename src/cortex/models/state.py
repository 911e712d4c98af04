"""Execution state: what the live state files and ``cortex status`` show."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TaskCounts(BaseModel):
    """Tasks of one master by state."""

    model_config = ConfigDict(extra="forbid")

    pending: int = 0
    released: int = 0
    running: int = 0
    retrying: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0


class ProcessStatus(BaseModel):
    """A master or worker process as its node supervisor and heartbeats report it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    node: str
    kind: str
    """``master`` or ``worker``."""
    worker_type: str | None = None
    pid: int | None = None
    alive: bool = False
    restarts: int = 0
    last_heartbeat: float | None = None


class ExecutionState(BaseModel):
    """``current-execution.json``: the run as it stands."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    plan_id: str
    goal: str
    phase: int
    phase_name: str
    status: str
    """``running``, ``succeeded``, ``failed`` (some task failed) or ``aborted``."""
    started_at: float
    updated_at: float
    finished_at: float | None = None
    pid: int
    tasks: dict[str, TaskCounts] = Field(default_factory=dict)
    phase_times: dict[str, float] = Field(default_factory=dict)
    retries: int = 0
    reassignments: int = 0
    handoffs: int = 0
    report: str | None = None
    archive: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
