"""The plan: everything the coordinator decided before acting. Deterministic: same inputs, same JSON."""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from cortex.models.cluster import Cluster
from cortex.models.roster import Roster
from cortex.models.task import Estimate, RetryPolicy, Task

PLAN_SCHEMA_VERSION = 3
"""2: learned estimates, expected handoffs, cache keys and reuse, target measures. 3: the schedule's entries as
rows, and the id a digest of the fields not at their defaults. A plan of another version is refused: plan again."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Remote(_Frozen):
    """Where a target comes from when it is a git remote (a fleet file): every node checks it out at ``commit``."""

    url: str
    branch: str | None = None
    """The branch the planner checked out (None: the remote's default)."""
    commit: str | None = None
    """The commit the plan pins (the branch's head when the plan was made)."""
    credentials: str | None = None
    """Name of the environment variable holding the token, on each node (never the token itself)."""
    push: bool = False
    """Fix and runbook branches are pushed to the remote as new branches."""


class TargetMeasures(_Frozen):
    """What a target measures when it is planned: what task estimates scale with."""

    files: int
    lines: int
    """Newlines in its regular files under 2 MiB (dependency and VCS directories left out)."""
    tests: int
    """Test files (``test_*.py``, ``*_test.py``, ``*.test.js``, ``*.spec.ts``, files under ``tests/``...)."""
    packages: int
    """Dependencies its manifests declare."""
    revision: str = ""
    """Digest of every file's path, size and modification time (and the checked-out commit): any change to the
    target changes it. What incremental runs key a task's result on."""


class Target(_Frozen):
    """A repository (or directory) the plan works on, with the traits the playbooks match on."""

    name: str
    path: str
    """The directory on the planner's host; nodes use their own checkout of ``remote`` when there is one."""
    traits: list[str]
    links_outside: list[str] = Field(default_factory=list)
    """Symbolic links in the target that lead out of it (``path -> destination``): never followed, reported."""
    remote: Remote | None = None
    measures: TargetMeasures | None = None


class RouteScore(_Frozen):
    """How well a master matches the goal, and why."""

    master: str
    score: float
    matched: list[str]
    reason: str


class RoutingDecision(_Frozen):
    """Which masters take the goal: one expert, several in parallel, or the fallback."""

    mode: str
    selected: list[str]
    scores: list[RouteScore]
    single_expert_threshold: float
    parallel_threshold: float


class WorkerAssignment(_Frozen):
    """One worker process: its type, funding master, node and token budget."""

    worker_id: str
    worker_type: str
    master: str
    node: str
    budget: int


class MasterPlacement(_Frozen):
    """Where a master process runs (a control-plane node)."""

    master: str
    node: str


class BudgetLine(_Frozen):
    """One master's allocation: base + worker pool, split into worker budgets and a reserve."""

    master: str
    base: int
    worker_pool: int
    workers: dict[str, int]
    reserve: int
    expected_usage: int
    """Estimate: sum of the token estimates of the master's tasks."""


class Budget(_Frozen):
    """Nested token budgets (run > master > worker) and the expected-usage figure."""

    total: int
    lines: list[BudgetLine]
    expected_usage: int
    efficiency: float
    """Expected usage over allocation (an estimate)."""
    target: float


class ScheduledTask(NamedTuple):
    """Where and when the list scheduler put a task (estimated seconds from the start of phase 3). A row in
    ``plan.json`` (``[task_id, worker_id, start_s, end_s, expected]``), not an object: a plan has one per task,
    and as models they were a tenth of planning 10,000 repositories and a third of the plan's size left to read."""

    task_id: str
    worker_id: str
    start_s: float
    end_s: float
    expected: bool = False
    """A task the plan expects a handoff to admit at run time (``Plan.expected``), not one of its own."""


class ExpectedTask(_Frozen):
    """A task a past run's handoff admitted after ``after`` on the same target: the plan expects it again and
    schedules it, so the makespan counts it. It is not run unless the handoff happens."""

    id: str
    kind: str
    master: str
    worker_type: str
    target: str | None
    after: str
    """The planned task whose handoff admitted it."""
    estimate: Estimate
    from_run: str


class PreviousRun(_Frozen):
    """How the last plan for the same goal and fleet compared with its run. Errors are relative:
    (estimate - measured) / measured, so +0.25 is an estimate 25% too long."""

    run_id: str
    plan_id: str
    estimated_makespan_s: float
    measured_makespan_s: float
    makespan_error: float
    task_median_error: float | None
    """Median of the absolute relative errors of the tasks both planned and measured."""
    tasks_compared: int


class PhaseWindow(_Frozen):
    """A phase of the run and its estimated window, in seconds from the start of the run."""

    index: int
    name: str
    start_s: float
    end_s: float
    description: str


class TimelineMinute(_Frozen):
    """What the schedule expects during one minute of the run."""

    minute: int
    phase: str
    starting: list[str]
    running: int


class Schedule(_Frozen):
    """The estimated timeline. Every figure is an estimate from task estimates and the placed slots."""

    entries: list[ScheduledTask]
    phases: list[PhaseWindow]
    timeline: list[TimelineMinute]
    critical_path: list[str]
    critical_path_s: float
    total_work_s: float
    slots: int
    lower_bound_s: float
    """max(critical path, each worker type's work / its workers): no run whose tasks take their estimates can
    end sooner."""
    makespan_s: float
    """Estimated length of phase 3 under list scheduling."""


class FailureScenario(_Frozen):
    """A failure the runtime detects and recovers from."""

    id: int
    name: str
    detection: str
    recovery: str
    status: str
    """``implemented``, ``partial`` (what is missing is said in ``recovery``) or ``planned``."""


class SuccessCriterion(_Frozen):
    """A condition the report checks after the run."""

    id: str
    description: str


class PlanProcesses(BaseModel):
    """The part of a plan a node agent reads: which masters and workers there are. Read from the whole plan's JSON
    without building its tasks (a full read of a 20,000-task plan cost each agent half a second of start-up)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    masters: list[MasterPlacement]
    workers: list[WorkerAssignment]


class Plan(_Frozen):
    """The executable plan, written as ``plan.json``."""

    schema_version: int = PLAN_SCHEMA_VERSION
    id: str
    """Digest of the plan's content (``content_id``): the same inputs give the same plan and id, and an edited
    plan no longer matches its id."""
    goal: str
    targets: list[Target]
    cluster: Cluster
    roster: Roster
    routing: RoutingDecision
    tasks: list[Task]
    masters: list[MasterPlacement]
    workers: list[WorkerAssignment]
    budget: Budget
    schedule: Schedule
    retry: RetryPolicy
    failure_scenarios: list[FailureScenario]
    success_criteria: list[SuccessCriterion]
    notes: list[str] = Field(default_factory=list)
    model_configured: bool = False
    """Whether the plan was made for a run with a model: without one, tasks that need a model cost nothing in
    the budgets and the schedule (they will be skipped)."""
    _expected_by_id: dict[str, ExpectedTask] | None = PrivateAttr(default=None)
    expected: list[ExpectedTask] = Field(default_factory=list)
    """Tasks past runs' handoffs admitted, expected again (scheduled, not run unless a handoff admits them)."""
    history_runs: int = 0
    """Past runs the estimates were learned from (0: every estimate is the roster's default)."""
    cache_fingerprint: str | None = None
    """Digest of the Cortex and tool versions and the advisory data the plan was made with: part of every task's
    ``cache_key``. None: results are not reused (``--no-cache``)."""
    reuse: dict[str, str] = Field(default_factory=dict)
    """Tasks whose recorded result the plan expects to reuse (task -> the run that recorded it); they cost nothing
    in the schedule."""
    previous: PreviousRun | None = None
    """The error of the last plan for the same goal and fleet, measured by its run."""
    assistance: dict[str, Any] | None = None
    """Planning assistance, when a model was asked: its proposals accepted (with the tasks they became),
    tasks added for them, proposals rejected and why, and the tokens the call used."""

    def content_id(self) -> str:
        """The digest of everything in the plan but its id: what ``id`` must be (``sealed``)."""
        # pydantic's own serialiser, straight to JSON (a dict and json.dumps took 1.4 s of a 10,000-target plan):
        # fields in declaration order, mappings in the order the inputs gave them (the same inputs, the same
        # order). Fields at their defaults are left out: the same content, a third less to serialise.
        # (The serialiser's bytes, not model_dump_json's str: two copies of 40 MB fewer at 10,000 targets.)
        text = self.__pydantic_serializer__.to_json(self, exclude={"id"}, exclude_defaults=True)
        return hashlib.sha256(text).hexdigest()[:16]

    def sealed(self) -> Plan:
        """This plan with ``id`` set to its content's digest; ``cortex run`` refuses a plan whose id is not."""
        return self.model_copy(update={"id": self.content_id()})

    def expected_task(self, task_id: str) -> ExpectedTask | None:
        """The expected task ``task_id`` (``expected``), if the plan has one."""
        if self._expected_by_id is None:
            self._expected_by_id = {e.id: e for e in self.expected}
        return self._expected_by_id.get(task_id)

    def task(self, task_id: str) -> Task:
        """The task with ``task_id``."""
        return next(t for t in self.tasks if t.id == task_id)
