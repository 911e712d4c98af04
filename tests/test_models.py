"""Models: exported schemas are current, the envelope speaks the original protocol, task transitions are closed."""

from __future__ import annotations

import json

from cortex.models import Envelope, MessageType
from cortex.models.schemas import render_schemas
from cortex.models.task import TRANSITIONS, TaskState

from .conftest import ROOT


def test_committed_schemas_match_the_models() -> None:
    for name, text in render_schemas().items():
        committed = (ROOT / "schemas" / name).read_text()
        assert committed == text, f"schemas/{name} is stale: run `cortex schemas`"


def test_envelope_uses_the_original_field_names() -> None:
    env = Envelope(
        run_id="r",
        sender="coordinator-master",
        to="security-master",
        type=MessageType.handoff,
        task_id="task-12345",
        priority="high",
        context={"why": "fix"},
    )
    wire = json.loads(env.dumps())
    assert {"from", "to", "type", "task_id", "priority", "context", "id", "run_id", "ts"} == set(wire)
    assert wire["from"] == "coordinator-master"
    assert Envelope.model_validate_json(env.dumps()) == env


def test_terminal_states_have_no_way_out() -> None:
    for state in TaskState:
        assert (TRANSITIONS[state] == frozenset()) == state.terminal
