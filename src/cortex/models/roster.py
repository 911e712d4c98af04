"""The roster: masters (routing keywords, budgets, playbooks) and worker types (tools, budgets, counts)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cortex.models.task import RetryPolicy


class WorkerType(BaseModel):
    """A kind of worker. ``count`` workers of it run, funded from ``master``'s worker pool."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    master: str
    """The master whose worker pool funds these workers."""
    count: int = Field(ge=0)
    budget: int = Field(ge=0)
    """Default token budget of one worker of this type."""
    description: str = ""
    capabilities: list[str] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)
    system_prompt: str = ""
    """Instructions for this worker type's agents, after the master's and before the task's own."""


class PlaybookTask(BaseModel):
    """A task template of a master's playbook. ``per: target`` makes one task per matching target."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    kind: str
    worker_type: str
    per: Literal["target", "run"] = "target"
    when: str | None = None
    """Only targets with this trait (e.g. ``python``, ``workflows``); None matches every target."""
    after: list[str] = Field(default_factory=list)
    """Playbook tasks (``master.name``) that must finish first; per-target tasks wait for the same target's."""
    needs: Literal["success", "completion"] = "success"
    """``completion`` runs once its dependencies end in any state (aggregation); ``success`` needs them done."""
    params: dict[str, Any] = Field(default_factory=dict)
    priority: int = 0
    optional: bool = False
    requires_model: bool = False
    estimate_seconds: float = Field(default=5.0, ge=0)
    estimate_tokens: int = Field(default=0, ge=0)
    """Defaults: used only where no past run measured this kind of task."""
    scales_with: Literal["files", "lines", "tests", "packages"] | None = None
    """What of a target the task's duration grows with: estimates for a target never measured are scaled from
    other targets' measurements by it (None: the median of theirs)."""
    timeout_s: float = Field(default=300.0, gt=0)


class Degradation(BaseModel):
    """What a master does when its token budget runs low (failure scenario 6). Steps apply once the master's
    remaining budget falls below ``below`` (a fraction of its allocation), in this order."""

    model_config = ConfigDict(extra="forbid")

    below: float = Field(default=0.25, gt=0, le=1)
    """Remaining fraction of the master's budget that triggers the policy."""
    model: str | None = None
    """A cheaper model (``provider:model``) to switch to."""
    max_output_tokens: int | None = Field(default=None, gt=0)
    """A smaller output limit for each model call."""
    skip_optional: bool = True
    """Skip optional tasks that need a model, with the reason."""
    partial: bool = True
    """When a reservation is refused mid-task, finish with what the task has (marked partial) instead of failing."""


class Master(BaseModel):
    """A specialist master: what goals it takes (keywords), what it may spend, and its playbook."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    role: str
    keywords: list[str] = Field(default_factory=list)
    base_budget: int = Field(ge=0)
    """Tokens for the master's own model calls."""
    worker_pool: int = Field(ge=0)
    """Tokens its workers draw from; what the workers do not take is the master's reserve."""
    playbook: list[PlaybookTask] = Field(default_factory=list)
    model: str | None = None
    """This master's model (``provider:model``), overriding ``CORTEX_MODEL``."""
    system_prompt: str = ""
    """Instructions given to every agent of this master, before the task's own."""
    max_output_tokens: int = Field(default=2048, gt=0)
    """Output limit of each model call (reserved in full before the call)."""
    degradation: Degradation = Field(default_factory=Degradation)

    @property
    def budget(self) -> int:
        """Base plus worker pool."""
        return self.base_budget + self.worker_pool


class Routing(BaseModel):
    """Thresholds that turn routing scores into a decision."""

    model_config = ConfigDict(extra="forbid")

    single_expert: float = Field(default=0.75, ge=0, le=1)
    """A top score at or above this, with no other score above ``parallel``, picks that master alone."""
    parallel: float = Field(default=0.3, ge=0, le=1)
    """Every master scoring at or above this takes part."""
    fallback: str = "coordinator"
    """The master that takes a goal nothing else matches."""
    everything_keywords: list[str] = Field(default_factory=lambda: ["full", "entire", "all", "everything"])
    """Words that, next to a toolset word, ask for every master."""


class PhaseEstimates(BaseModel):
    """Estimated seconds for the phases around execution; phase 3 is estimated from the tasks themselves.

    These are estimates for the plan's timeline; the report prints the measured time of each phase beside them.
    """

    model_config = ConfigDict(extra="forbid")

    preflight: float = Field(default=2.0, ge=0)
    activation: float = Field(default=3.0, ge=0)
    distribution: float = Field(default=3.0, ge=0)
    aggregation: float = Field(default=1.0, ge=0)
    reporting: float = Field(default=1.0, ge=0)


class Roster(BaseModel):
    """Masters and worker types, with the run-wide policies."""

    model_config = ConfigDict(extra="forbid")

    masters: list[Master] = Field(min_length=1)
    worker_types: list[WorkerType] = Field(min_length=1)
    expected_usage_target: float = Field(default=0.83, gt=0, le=1)
    routing: Routing = Field(default_factory=Routing)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    phases: PhaseEstimates = Field(default_factory=PhaseEstimates)

    @model_validator(mode="after")
    def _check_references(self) -> Roster:
        masters = {m.name for m in self.masters}
        types = {w.name for w in self.worker_types}
        if len(masters) != len(self.masters):
            raise ValueError("master names must be unique")
        if len(types) != len(self.worker_types):
            raise ValueError("worker type names must be unique")
        if self.routing.fallback not in masters:
            raise ValueError(f"routing.fallback {self.routing.fallback!r} is not a master")
        for w in self.worker_types:
            if w.master not in masters:
                raise ValueError(f"worker type {w.name!r} names unknown master {w.master!r}")
        for m in self.masters:
            for p in m.playbook:
                if p.worker_type not in types:
                    raise ValueError(f"playbook task {m.name}.{p.name} uses unknown worker type {p.worker_type!r}")
        return self

    def master(self, name: str) -> Master:
        """The master called ``name``."""
        return next(m for m in self.masters if m.name == name)

    @property
    def total_workers(self) -> int:
        """Workers of every type."""
        return sum(w.count for w in self.worker_types)
