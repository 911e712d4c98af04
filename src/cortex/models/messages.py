"""The JSON message envelope every Cortex process sends (the original design's protocol, plus id, run and time)."""

from __future__ import annotations

import os
import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class MessageType(StrEnum):
    """What a message is about."""

    handoff = "handoff"
    task = "task"
    result = "result"
    heartbeat = "heartbeat"
    conflict = "conflict"
    lineage = "lineage"
    control = "control"


class Envelope(BaseModel):
    """``{"from", "to", "type", "task_id", "priority", "context", "id", "run_id", "ts"}``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(default_factory=lambda: os.urandom(16).hex())  # uuid4().hex cost 5 times as much
    run_id: str
    ts: float = Field(default_factory=time.time)
    sender: str = Field(alias="from")
    to: str
    type: MessageType
    task_id: str | None = None
    priority: str = "normal"
    context: dict[str, Any] = Field(default_factory=dict)

    def dumps(self) -> str:
        """The wire form, with ``from`` as the key."""
        return self.model_dump_json(by_alias=True)


class StreamEvent(Envelope):
    """An envelope as the run's event stream keeps it (and the archive's ``events.jsonl``): with the channel it was
    published on and its stream entry id."""

    channel: str
    stream_id: str
