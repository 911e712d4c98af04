"""Execution state: what the live state files and ``cortex status`` show."""

from __future__ import annotations

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


class RunningTask(BaseModel):
    """A task a worker holds now, and since when (its claim)."""

    model_config = ConfigDict(extra="forbid")

    task: str
    worker: str
    since: float | None = None


class FailureNote(BaseModel):
    """An attempt that failed, and why."""

    model_config = ConfigDict(extra="forbid")

    task: str
    error: str
    at: float | None = None


class Check(BaseModel):
    """One pre-flight check."""

    model_config = ConfigDict(extra="forbid")

    name: str
    ok: bool
    detail: str


class TokenUse(BaseModel):
    """One ledger account as it stands: what is allocated, used, held by calls in flight, and left."""

    model_config = ConfigDict(extra="forbid")

    allocated: int
    used: int
    reserved: int
    remaining: int
    efficiency: float
    """used / allocated (0 when nothing is allocated)."""


class LedgerAccount(BaseModel):
    """One token ledger account as stored: allocated, used by calls, reserved by calls in flight, released (reserved
    and not used) and overrun (used beyond a reservation)."""

    model_config = ConfigDict(extra="forbid")

    allocated: int = 0
    used: int = 0
    reserved: int = 0
    released: int = 0
    overrun: int = 0

    @property
    def remaining(self) -> int:
        """What is left to reserve."""
        return self.allocated - self.used - self.reserved

    def use(self) -> TokenUse:
        """The account as the live state shows it, with what is left and the efficiency (used over allocated)."""
        eff = round(self.used / self.allocated, 4) if self.allocated else 0.0
        return TokenUse(
            allocated=self.allocated, used=self.used, reserved=self.reserved, remaining=self.remaining, efficiency=eff
        )


class ExecutionState(BaseModel):
    """``current-execution.json``: the run as it stands, rewritten atomically as it changes."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    plan_id: str
    goal: str
    phase: int
    phase_name: str
    status: str
    """``running``, ``succeeded``, ``failed`` (a required task failed) or ``aborted``."""
    started_at: float
    updated_at: float
    finished_at: float | None = None
    pid: int
    """Process id of the coordinator (``cortex status`` tells a dead run from a running one by it)."""
    state_dir: str
    redis: str = ""
    """The run's Redis URL, any password replaced (``cortex watch`` follows a run on a server without one)."""
    tasks: dict[str, TaskCounts] = Field(default_factory=dict)
    """Task counts by master."""
    phase_times: dict[str, float] = Field(default_factory=dict)
    """Time each phase started (epoch seconds)."""
    workers_alive: dict[str, int] = Field(default_factory=dict)
    """Worker processes alive per node, as the node supervisors last reported."""
    checks: list[Check] = Field(default_factory=list)
    retries: int = 0
    reassignments: int = 0
    duplicates: int = 0
    handoffs: int = 0
    tokens: dict[str, TokenUse] = Field(default_factory=dict)
    """Ledger accounts of the run and of each master, live."""
    report: dict[str, str] = Field(default_factory=dict)
    """Paths of report.md, report.json and the archive once written."""
    estimated_s: float = 0.0
    """The plan's estimate of the whole run (every phase), for elapsed-against-plan and an ETA."""
    running_tasks: list[RunningTask] = Field(default_factory=list)
    """Tasks held by workers now, longest-running first (at most 20)."""
    failures: list[FailureNote] = Field(default_factory=list)
    """The latest failed attempts with their reasons, newest first (at most 10)."""
