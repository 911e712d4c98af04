"""The report of a run (``report.json``) and the records it is made of: tasks as they ended, per-master summaries,
ledger accounts, node usage, lineage. Every figure in it was measured or is copied from the plan and named as an
estimate there."""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, JsonValue

from cortex.models.findings import Finding, OsvDatabase
from cortex.models.handoff import Handoff, HandoffDecision
from cortex.models.state import Check, LedgerAccount
from cortex.models.task import Task, TaskState


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TaskReport(_Strict):
    """One task as it ended (or stands): state, attempts, times, errors and its output."""

    id: str
    master: str
    kind: str
    worker_type: str
    target: str | None
    origin: str
    state: TaskState
    attempts: int
    worker: str | None
    released_at: float | None
    started_at: float | None
    finished_at: float | None
    duration_s: float | None
    """Measured run time of the attempt that ended the task."""
    estimate_s: float
    """The plan's estimate, for comparison."""
    estimate_basis: str = "default"
    """Where the estimate came from: ``default`` (the roster), ``target`` or ``kind`` (past runs)."""
    estimate_error: float | None = None
    """(estimate - measured) / measured, when the task ran and took measurable time."""
    error: str | None
    errors: list[str]
    """The error of every failed attempt, in order."""
    reason: str | None
    """Why the task was skipped."""
    output: dict[str, JsonValue]
    executions: int = 0
    """How many times a worker started the task: every attempt, those killed mid-way included (a release is an
    attempt; a killed worker's entry run again by another is one more execution of the same attempt)."""
    reused_from: str | None = None
    """The run whose recorded result this task reused instead of running (incremental runs); None: it ran."""


class StoredTaskRecord(TaskReport):
    """A task record as the leading coordinator keeps it in Redis: the report's fields plus the whole task, so a
    coordinator taking the run over can rebuild it (tasks admitted at run time are not in the plan)."""

    task: Task
    dispatch_latency_s: list[float] = Field(default_factory=list)
    handoffs: list[Handoff] = Field(default_factory=list)
    """The handoffs of the result that ended the task."""


class WorkerMove(_Strict):
    """A master or worker moved off a node: a failed one, or (cluster mode) one of the plan's nodes that never
    registered. ``to`` is None when no healthy node had a free slot."""

    worker: str
    from_node: str = Field(alias="from")
    to: str | None
    at: float
    reason: str = "node failed"


class Outage(_Strict):
    """A Redis outage the coordinator waited out."""

    began: float
    error: str
    """What the first failed command said."""
    lasted_s: float | None = None


class Stall(_Strict):
    """A time nothing progressed for ``quiet_s``: what was stuck and what the coordinator did about it."""

    at: float
    quiet_s: float
    requeued: list[str] = Field(default_factory=list)
    """Released tasks no live worker held: released again as a new attempt."""
    running: dict[str, str] = Field(default_factory=dict)
    """Released tasks a live worker holds (task -> worker): long tasks, left to finish or time out."""
    silent: list[str] = Field(default_factory=list)
    """Masters and workers without a heartbeat: their supervisors restart them, or their node is replaced."""


class ModelCalls(_Strict):
    """Model calls of one master with one model, as the providers reported them, and their cost."""

    calls: int = 0
    input: int = 0
    output: int = 0
    cost: float | str
    """In the price table's currency, or why it is unknown."""


class Degradation(_Strict):
    """One step a master's budget policy took: when, for which task, which step and why."""

    at: float
    master: str
    task: str | None
    worker: str | None
    step: str
    why: str


class TokenSpend(_Strict):
    """One model call's tokens, when it was made (the report's burn-down)."""

    at: float
    master: str
    worker: str | None = None
    task: str | None = None
    """The task the call was made for (None in archives written before tasks were recorded)."""
    tokens: int


class NodeUsage(_Strict):
    """What a node agent measured of the processes it started for one run, their tool subprocesses included."""

    cpu_s: float
    rss_mib: float
    peak_rss_mib: float
    processes: int
    agent_pid: int = Field(validation_alias=AliasChoices("agent_pid", "supervisor_pid"))
    """The node agent's process id (``supervisor_pid`` in archives written before node agents)."""
    host: str = ""
    """The host the agent runs on."""
    logs: str = ""
    """Where the run's processes on this node wrote their logs (a directory on that host)."""


class ProcessStatus(_Strict):
    """A master or worker process as its node agent last reported it."""

    id: str
    node: str
    kind: str
    worker_type: str | None = None
    pid: int | None
    alive: bool
    restarts: int


class MasterSummary(_Strict):
    """What one master's tasks produced, summed from the tools' output (only tasks that succeeded count)."""

    outcomes: dict[str, int] = Field(default_factory=dict)
    assets: dict[str, int] = Field(default_factory=dict)
    findings: dict[str, int] = Field(default_factory=dict)
    """Findings by severity."""
    tests: dict[str, int] = Field(default_factory=dict)
    written: dict[str, int] = Field(default_factory=dict)
    """Fix branches, workflow patches, dashboards, alerts written."""
    code_lines: int = 0
    branches: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    coverage: dict[str, float] = Field(default_factory=dict)
    """Line coverage per repository, in percent."""


class LineageNode(_Strict):
    """A node of the run's lineage graph: a master, task, worker, target, finding or group of assets."""

    id: str
    kind: str
    state: str | None = None
    task_kind: str | None = None
    node: str | None = None
    severity: str | None = None
    count: int | None = None


class LineageLink(_Strict):
    """``from`` -[relation]-> ``to`` in the run's lineage graph."""

    source: str = Field(alias="from")
    to: str
    relation: str


class LineageGraph(_Strict):
    """What produced what in the run."""

    nodes: list[LineageNode] = Field(default_factory=list)
    edges: list[LineageLink] = Field(default_factory=list)


class ExecutiveSummary(_Strict):
    """The summary the coordinator's model wrote from the report data, or why it was not written."""

    by: str | None = None
    headline: str | None = None
    paragraphs: list[str] = Field(default_factory=list)
    decisions_needed: list[str] = Field(default_factory=list)
    model_calls: list[dict[str, JsonValue]] = Field(default_factory=list)
    """Each call: model, reserved, input and output tokens as the provider reported them."""
    not_written: str | None = None


class PhaseTimes(_Strict):
    """Seconds per phase, measured and as the plan estimated them."""

    measured_s: dict[str, float]
    estimated_s: dict[str, float]


class Makespan(_Strict):
    """The execution phase's length, measured, against the plan's estimate and lower bound."""

    measured_s: float | None
    estimated_s: float
    lower_bound_s: float
    error: float | None = None
    """(estimated - measured) / measured."""


class EstimateAccuracy(_Strict):
    """How the plan's estimates compared with the run: per task (those that ran) and for the makespan."""

    tasks_compared: int = 0
    task_median_error: float | None = None
    """Median of the tasks' absolute relative errors."""
    by_basis: dict[str, int] = Field(default_factory=dict)
    """Tasks compared, by where their estimate came from."""
    learned_from_runs: int = 0
    """Past runs the plan learned its estimates from."""
    expected: int = 0
    """Tasks the plan expected from past handoffs."""
    expected_admitted: int = 0
    """Of those, the ones a handoff admitted in this run."""


class CriticalPath(_Strict):
    """The plan's critical path and the one the run took (through the dependency that finished last)."""

    planned: list[str]
    taken: list[str]


class Latency(_Strict):
    """Percentiles of a measured latency, in seconds, over ``samples`` measurements."""

    p50: float | None
    p99: float | None
    samples: int


class NodeFailures(_Strict):
    """Nodes whose supervisor died, and where their workers went."""

    nodes: list[str] = Field(default_factory=list)
    moves: list[WorkerMove] = Field(default_factory=list)


class ReportPaths(_Strict):
    """Where the report and the archive were written."""

    report_md: str
    report_json: str
    archive: str


class Report(_Strict):
    """``report.json``: everything the run measured, with the plan's estimates beside it."""

    run_id: str
    plan_id: str
    goal: str
    status: str
    """``succeeded``, ``failed`` (a required task failed, or a fix was lost) or ``error`` (the run broke: see
    ``error``)."""
    error: str | None = None
    """Why the run ended in ``error``: the exception and its message."""
    started_at: float
    finished_at: float
    duration_s: float
    checks: list[Check]
    phases: PhaseTimes
    makespan: Makespan
    estimates: EstimateAccuracy = Field(default_factory=EstimateAccuracy)
    reused: dict[str, str] = Field(default_factory=dict)
    """Tasks that reused a recorded result instead of running (task -> the run that recorded it)."""
    critical_path: CriticalPath
    dispatch_latency_s: Latency
    tasks_by_master: dict[str, dict[str, int]]
    tasks: list[TaskReport]
    executions: int = 0
    """Times workers started tasks, every attempt counted (killed ones included): above the number of attempts
    when work was redelivered."""
    lost_fixes: list[str] = Field(default_factory=list)
    """Fixes a task reported that are not on their branch (``task: why``); any makes the run fail."""
    outages: list[Outage] = Field(default_factory=list)
    """Redis outages the coordinator waited out."""
    stalls: list[Stall] = Field(default_factory=list)
    """Times the run stopped progressing, and what was done."""
    notes: list[str] = Field(default_factory=list)
    """What the run could not do that is no task's failure (Grafana annotations refused, say)."""
    retries: int
    reassignments: int
    node_failures: NodeFailures
    duplicates_ignored: int
    handoffs: list[HandoffDecision]
    tokens: dict[str, LedgerAccount]
    """Ledger accounts: ``run`` and one per master."""
    models: dict[str, dict[str, ModelCalls]] = Field(default_factory=dict)
    """Model calls per master and model."""
    degradations: list[Degradation] = Field(default_factory=list)
    token_spend: list[TokenSpend] = Field(default_factory=list)
    """Every model call's tokens in time order."""
    orphan_reservations_released: int = 0
    nodes: dict[str, NodeUsage]
    logs: dict[str, str] = Field(default_factory=dict)
    """Where the structured logs are: ``coordinator`` -> its file; a node -> ``host:directory`` of the logs of the
    run's processes there (one ``<process>.jsonl`` each)."""
    processes: dict[str, ProcessStatus]
    results: dict[str, MasterSummary]
    success_criteria: dict[str, bool]
    findings: dict[str, list[Finding]] = Field(default_factory=dict)
    """Every finding of the run, by repository: each with its location, one per problem."""
    databases: list[OsvDatabase] = Field(default_factory=list)
    """The vulnerability data the dependency audits used."""
    lineage: LineageGraph
    executive_summary: ExecutiveSummary | None = None
    paths: ReportPaths | None = None
