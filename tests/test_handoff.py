"""Handoff admission: a master hands work to another; the coordinator admits it only if the receiver is active,
staffed and can pay for it, and records every decision."""

from __future__ import annotations

from pathlib import Path

from cortex.planner import build_plan
from cortex.roster import load_cluster, load_roster
from cortex.runtime.coordinator import Coordinator

from .conftest import FLEET

FIX = {
    "to": "development",
    "kind": "development.fix-tests",
    "worker_type": "implementation",
    "requires_model": True,
    "estimate_tokens": 6000,
    "params": {},
    "reason": "1 failing test",
}


def _coordinator(tmp_path: Path, roster=None) -> Coordinator:  # type: ignore[no-untyped-def]
    plan = build_plan("Run the full catalog toolset across the fleet", FLEET, roster or load_roster(), load_cluster())
    return Coordinator(plan, "unix:///nonexistent", tmp_path)  # no connection is made before run()


def test_handoff_within_budget_is_admitted_as_a_task(tmp_path: Path) -> None:
    coord = _coordinator(tmp_path)
    source = coord.graph.records["testing.run-tests:payments-api"]
    coord._admit_handoff(source, FIX)
    assert coord.handoffs[-1]["decision"] == "admitted"
    task = coord.graph.records["development.fix-tests:payments-api"]
    assert task.task.origin == "handoff:testing" and task.task.master == "development"
    # with no model configured the admitted task ends skipped with the reason
    assert task.state.value == "skipped" and "no model configured" in (task.reason or "")
    assert coord._events and coord._events[-1][1].type.value == "handoff"


def test_handoff_over_the_receivers_budget_is_rejected(tmp_path: Path) -> None:
    coord = _coordinator(tmp_path)
    source = coord.graph.records["testing.run-tests:payments-api"]
    coord._admit_handoff(source, {**FIX, "estimate_tokens": 60_000})  # development has 50,000
    assert coord.handoffs[-1]["decision"].startswith("rejected: development budget 50,000")
    assert "development.fix-tests:payments-api" not in coord.graph.records


def test_handoff_to_an_unknown_master_is_rejected(tmp_path: Path) -> None:
    coord = _coordinator(tmp_path)
    source = coord.graph.records["testing.run-tests:payments-api"]
    coord._admit_handoff(source, {**FIX, "to": "legal"})
    assert coord.handoffs[-1]["decision"].startswith("rejected: legal is not active")
