"""The failure scenarios under injected faults: real processes, a real Redis, 120 tasks per run. Each test asserts
that no task was lost and no effect applied twice, and the recovery its scenario promises. Faults are paced by
the harness; the tests wait on outcomes, never on time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cortex.chaos.harness import ChaosResult, run_chaos
from cortex.chaos.plan import chaos_plan
from cortex.runtime.statefiles import WORKERS

pytestmark = pytest.mark.timeout(180)

TASKS = 120


async def chaos(tmp_path: Path, faults: list[str], max_faults: int = 3, **plan: object) -> ChaosResult:
    result = await run_chaos(
        chaos_plan(TASKS, seconds=0.4, **plan),  # type: ignore[arg-type]
        tmp_path / "state",
        faults,
        rate_per_min=30,
        max_faults=max_faults,
        seed=1,
    )
    assert result.faults, "no fault was injected: the run ended before the first one"
    assert all(f.recovered_s is not None for f in result.faults), result.faults
    assert (result.status, result.expected, result.completed) == ("succeeded", TASKS, TASKS), result.rows()
    assert (result.lost, result.duplicated) == (0, 0), result.rows()
    return result


async def test_scenario_1_a_killed_master_is_restarted_and_its_dispatches_recovered(tmp_path: Path) -> None:
    result = await chaos(tmp_path, ["kill-master"])
    report = json.loads(Path(result.report).read_text())  # noqa: ASYNC240
    restarts = {p["id"]: p["restarts"] for p in report["processes"].values() if p["kind"] == "master"}
    assert sum(restarts.values()) == len(result.faults)  # each killed master came back once
    assert {f.target for f in result.faults} <= {f"master-{m}" for m in ("testing", "monitoring")}


async def test_scenario_2_work_of_killed_and_stalled_workers_runs_again_with_one_effect(tmp_path: Path) -> None:
    result = await chaos(tmp_path, ["kill-worker", "pause-worker"], max_faults=2)
    assert [f.kind for f in result.faults] == ["kill-worker", "pause-worker"]
    # the killed worker's task went to its restarted incarnation; the stalled worker's lease expired and its task
    # was requeued for another worker, and its own late settle was refused
    assert result.reassignments >= 2 and result.re_executed >= 2
    assert result.restarts == 1


async def test_scenario_3_a_redis_crash_and_restart_loses_no_accepted_task(tmp_path: Path) -> None:
    result = await chaos(tmp_path, ["restart-redis"], max_faults=2)
    assert [f.kind for f in result.faults] == ["restart-redis"] * len(result.faults)
    assert result.restarts == 0  # every process rode out the outage; none had to be restarted


async def test_scenario_4_a_failed_nodes_workers_move_to_nodes_with_free_slots(tmp_path: Path) -> None:
    result = await chaos(tmp_path, ["kill-node"], max_faults=1)
    dead = result.faults[0].target
    workers = json.loads((tmp_path / "state" / WORKERS).read_text())  # noqa: ASYNC240
    assert workers["failed_nodes"] == [dead]
    moved = [m for m in workers["moves"] if m["from"] == dead]
    assert moved and all(m["to"] and m["to"] != dead for m in moved)
    where = {w["worker_id"]: w for w in workers["workers"]}
    for m in moved:
        assert where[m["worker"]]["node"] == m["to"] and where[m["worker"]]["planned_node"] == dead
    assert dead not in workers["nodes"]
    assert all(len(ids) <= 4 for ids in workers["nodes"].values())  # within each node's slots
