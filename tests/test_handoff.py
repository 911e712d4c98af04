"""Handoff admission: a master hands work to another; the coordinator admits it only if the receiver is active,
staffed and can pay for it, refuses a second handoff of the same task, and records and announces every
decision."""

from __future__ import annotations

from pathlib import Path

from cortex.models.handoff import Handoff
from cortex.models.messages import MessageType
from cortex.planner import build_plan
from cortex.roster import load_cluster, load_roster
from cortex.runtime.coordinator import Coordinator

from .conftest import FLEET

FIX = Handoff(
    to="development",
    kind="development.fix-tests",
    worker_type="implementation",
    requires_model=True,
    estimate_tokens=6000,
    reason="1 failing test",
)


def _coordinator(tmp_path: Path) -> Coordinator:
    plan = build_plan("Run the full catalog toolset across the fleet", FLEET, load_roster(), load_cluster())
    return Coordinator(plan, "unix:///nonexistent", tmp_path)  # no connection is made before run()


def _admit(coord: Coordinator, h: Handoff) -> str:
    """Admit ``h`` from payments-api's test run; what it announces is queued in the outbox as a release sends it."""
    from cortex.runtime.dispatch import Dispatcher

    dispatcher = Dispatcher(coord.state, None, coord.keys, None, coord.outbox, coord.metrics)  # type: ignore[arg-type]
    source = coord.state.graph.records["testing.run-tests:payments-api"]
    decision = dispatcher.admit_handoff(source, h).decision
    dispatcher._announce()  # noqa: SLF001  (what ``release`` does before it sends the outbox)
    return decision


def test_handoff_within_budget_is_admitted_as_a_task(tmp_path: Path) -> None:
    coord = _coordinator(tmp_path)
    assert _admit(coord, FIX) == "admitted"
    task = coord.state.graph.records["development.fix-tests:payments-api"]
    assert task.task.origin == "handoff:testing" and task.task.master == "development"
    # with no model configured the admitted task ends skipped with the reason
    assert task.state.value == "skipped" and "no model configured" in (task.reason or "")
    sent = {(channel, env.type) for channel, env in coord.outbox.queued}
    assert ("cortex:master:development", MessageType.handoff) in sent
    (result,) = [env for channel, env in coord.outbox.queued if env.type is MessageType.result]
    assert result.task_id == task.task.id and result.context["tasks"][0]["state"] == "skipped"  # its completion


def test_a_second_handoff_of_the_same_task_is_a_conflict_the_first_wins(tmp_path: Path) -> None:
    coord = _coordinator(tmp_path)
    assert _admit(coord, FIX) == "admitted"
    second = _admit(coord, FIX.model_copy(update={"reason": "again"}))
    assert second.startswith("duplicate: development.fix-tests:payments-api was already admitted from")
    conflicts = [env for channel, env in coord.outbox.queued if channel == "cortex:conflicts"]
    assert [c.context["event"] for c in conflicts] == ["duplicate-handoff"]
    assert [d.decision for d in coord.state.handoffs] == ["admitted", second]


def test_handoff_over_the_receivers_budget_is_rejected(tmp_path: Path) -> None:
    coord = _coordinator(tmp_path)
    decision = _admit(coord, FIX.model_copy(update={"estimate_tokens": 60_000}))  # development has 50,000
    assert decision.startswith("rejected: development budget 50,000")
    assert "development.fix-tests:payments-api" not in coord.state.graph.records


def test_handoff_to_an_unknown_master_is_rejected(tmp_path: Path) -> None:
    coord = _coordinator(tmp_path)
    assert _admit(coord, FIX.model_copy(update={"to": "legal"})).startswith("rejected: legal is not active")
