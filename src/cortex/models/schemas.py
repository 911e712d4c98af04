"""JSON schemas of the models users write or read, exported under ``schemas/`` by ``cortex schemas``."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from cortex.models.cluster import Cluster
from cortex.models.handoff import Handoff, HandoffDecision
from cortex.models.history import RunHistory
from cortex.models.messages import Envelope
from cortex.models.plan import Plan
from cortex.models.report import MasterSummary, Report, StoredTaskRecord
from cortex.models.result import TaskResult
from cortex.models.roster import Roster
from cortex.models.state import ExecutionState
from cortex.models.task import Task

SCHEMAS: dict[str, type[BaseModel]] = {
    "cluster": Cluster,
    "roster": Roster,
    "task": Task,
    "plan": Plan,
    "execution-state": ExecutionState,
    "message-envelope": Envelope,
    "handoff": Handoff,
    "handoff-decision": HandoffDecision,
    "task-result": TaskResult,
    "task-record": StoredTaskRecord,
    "master-summary": MasterSummary,
    "report": Report,
    "run-history": RunHistory,
}


def render_schemas() -> dict[str, str]:
    """File name -> JSON schema text."""
    return {
        f"{name}.schema.json": json.dumps(model.model_json_schema(by_alias=True), indent=2, sort_keys=True) + "\n"
        for name, model in SCHEMAS.items()
    }


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema into ``directory``."""
    from cortex.files import write_atomic

    return [write_atomic(directory / name, text) for name, text in render_schemas().items()]
