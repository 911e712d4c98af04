"""``RunState``: one value holding everything a run knows about itself as it goes.

The coordinator owns it and is its only writer. The report, the live state files and a coordinator taking the run
over take it as input; none of them reaches into the coordinator. The part another coordinator cannot rebuild from
the task records is ``LeaderSnapshot``, which the leader stores in Redis under its fencing token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cortex.models import Plan
from cortex.models.handoff import HandoffDecision
from cortex.models.phase import Phase
from cortex.models.report import Outage, ProcessStatus, Stall, WorkerMove
from cortex.models.state import Check, TokenUse
from cortex.runtime.graphrun import GraphRun


class LeaderSnapshot(BaseModel):
    """The run-level state a coordinator taking over cannot rebuild from the task records."""

    model_config = ConfigDict(extra="forbid")

    started_at: float
    phase_times: dict[str, float] = Field(default_factory=dict)
    checks: list[Check] = Field(default_factory=list)
    handoffs: list[HandoffDecision] = Field(default_factory=list)
    reassignments: int = 0
    retries: int = 0
    duplicates: int = 0
    failed_nodes: list[str] = Field(default_factory=list)
    moves: list[WorkerMove] = Field(default_factory=list)
    placement: dict[str, str] = Field(default_factory=dict)
    outages: list[Outage] = Field(default_factory=list)
    stalls: list[Stall] = Field(default_factory=list)


@dataclass
class RunState:
    """The run's records and counters. ``graph`` holds the task records and the dependency rules."""

    run_id: str
    plan: Plan
    state_dir: Path
    graph: GraphRun
    redis_display: str = ""
    """The Redis URL with any password replaced, for people and state files."""
    started_at: float = field(default_factory=time.time)
    phase: Phase = Phase.preflight
    phase_times: dict[str, float] = field(default_factory=dict)
    """When each phase started (epoch seconds), by phase name."""
    checks: list[Check] = field(default_factory=list)
    handoffs: list[HandoffDecision] = field(default_factory=list)
    reassignments: int = 0
    """Tasks taken from dead workers: by the reaper, or by a restarted worker from its own pending entries."""
    placement: dict[str, str] = field(default_factory=dict)
    """Where each process (``master-<name>`` or worker id) runs now: the plan's placement, until a node fails or,
    in cluster mode, never registers, and its processes move ("" when no healthy node had a free slot)."""
    failed_nodes: set[str] = field(default_factory=set)
    moves: list[WorkerMove] = field(default_factory=list)
    processes: dict[str, ProcessStatus] = field(default_factory=dict)
    """Masters and workers as their supervisors last reported them."""
    running: dict[str, str] = field(default_factory=dict)
    claimed_at: dict[str, str] = field(default_factory=dict)
    """Task id -> when a worker claimed it (Unix seconds, as text), for the running tasks' elapsed time."""
    """Task id -> worker id of tasks a worker has started and not settled."""
    token_use: dict[str, TokenUse] = field(default_factory=dict)
    """The run's and each master's ledger account, as last read."""
    report_paths: dict[str, str] = field(default_factory=dict)
    took_over_at: float | None = None
    """When this coordinator took the run over from another (None for the coordinator that started it)."""
    outages: list[Outage] = field(default_factory=list)
    stalls: list[Stall] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the run could not do that is no task's failure (Grafana annotations refused, say), for the report."""

    @classmethod
    def new(cls, plan: Plan, run_id: str, state_dir: Path, *, model_configured: bool) -> RunState:
        """The state of a run about to start: every task pending, every worker where the plan put it."""
        return cls(
            run_id=run_id,
            plan=plan,
            state_dir=state_dir,
            graph=GraphRun(plan.tasks, plan.retry, model_configured=model_configured),
            placement={
                **{f"master-{m.master}": m.node for m in plan.masters},
                **{w.worker_id: w.node for w in plan.workers},
            },
        )

    @property
    def all_required_succeeded(self) -> bool:
        """Every planned task that is not optional succeeded, and no task handed off at run time (a fix) failed: a
        fix that was asked for and failed is a failure of the run (one skipped with its reason, such as no model
        configured, is not)."""
        return all(
            r.state.value == "succeeded" if r.task.origin == "plan" else r.state.value != "failed"
            for r in self.graph.records.values()
            if not r.task.optional
        )

    def enter(self, phase: Phase, now: float) -> None:
        """Record that ``phase`` starts now."""
        self.phase = phase
        self.phase_times[phase.name] = now

    def snapshot(self) -> LeaderSnapshot:
        """What a coordinator taking over needs besides the task records."""
        return LeaderSnapshot(
            started_at=self.started_at,
            phase_times=self.phase_times,
            checks=self.checks,
            handoffs=self.handoffs,
            reassignments=self.reassignments,
            retries=self.graph.retries,
            duplicates=self.graph.duplicates,
            failed_nodes=sorted(self.failed_nodes),
            moves=self.moves,
            placement=self.placement,
            outages=self.outages,
            stalls=self.stalls,
        )

    def restore(self, snap: LeaderSnapshot) -> None:
        """Take over the counters a previous leader stored."""
        self.started_at = snap.started_at
        self.phase_times = dict(snap.phase_times)
        self.checks = list(snap.checks)
        self.handoffs = list(snap.handoffs)
        self.reassignments = snap.reassignments
        self.graph.retries = snap.retries
        self.graph.duplicates = snap.duplicates
        self.failed_nodes = set(snap.failed_nodes)
        self.moves = list(snap.moves)
        self.placement.update(snap.placement)
        self.outages = list(snap.outages)
        self.stalls = list(snap.stalls)
