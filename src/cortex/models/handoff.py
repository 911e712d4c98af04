"""Handoffs: work one master's task passes to another master, and what the coordinator decided about it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue


class Handoff(BaseModel):
    """What a task handler asks for in its output's ``handoffs``: a new task for master ``to``, of ``kind``, run by
    a ``worker_type`` worker on the same target. ``key`` tells apart several handoffs of one kind from one task
    (a package name); two handoffs with the same kind, target and key are the same task."""

    model_config = ConfigDict(extra="forbid")

    to: str
    kind: str
    worker_type: str
    key: str | None = None
    reason: str = ""
    params: dict[str, JsonValue] = Field(default_factory=dict)
    requires_model: bool = False
    estimate_tokens: int = Field(default=0, ge=0)
    estimate_seconds: float = Field(default=30.0, ge=0)


class HandoffDecision(BaseModel):
    """The coordinator's decision on one handoff: the task it would become and whether it was admitted."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sender: str = Field(alias="from")
    """The master whose task handed the work over."""
    to: str
    task: str
    """Id of the task the handoff becomes (``kind:target[:key]``)."""
    source_task: str
    reason: str = ""
    decision: str
    """``admitted``, ``duplicate: ...`` or ``rejected: <why>``."""

    @property
    def admitted(self) -> bool:
        """The handoff became a task."""
        return self.decision == "admitted"
