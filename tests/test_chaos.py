"""The failure scenarios under injected faults: real processes, a real Redis, 120 tasks per run. Each test asserts
that no task was lost and no effect applied twice, and the recovery its scenario promises. Faults are paced by
the harness; the tests wait on outcomes, never on time."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from cortex.catalog.config import CatalogConfig, new_token
from cortex.chaos.harness import ChaosResult, run_chaos
from cortex.chaos.plan import chaos_plan
from cortex.chaos.target import CatalogService
from cortex.coord.server import EmbeddedRedis
from cortex.runtime.statefiles import WORKERS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TASKS = 120
FIRST = "chaos:chaos-0000"


async def chaos(
    tmp_path: Path, faults: list[str], max_faults: int = 3, catalog: CatalogService | None = None, **plan: object
) -> ChaosResult:
    result = await run_chaos(
        chaos_plan(TASKS, seconds=0.4, **plan),  # type: ignore[arg-type]
        tmp_path / "state",
        faults,
        rate_per_min=30,
        max_faults=max_faults,
        seed=1,
        catalog=catalog,
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


async def test_scenario_6_a_budget_that_runs_out_skips_optional_work_and_is_never_overrun(tmp_path: Path) -> None:
    # 6 workers funded with 1,000 tokens each; 120 optional tasks planned at 50 tokens each actually want 100; a
    # worker is killed while it holds a reservation
    plan = chaos_plan(
        TASKS,
        kind="chaos.spend",
        seconds=0.3,
        params={"tokens": 100},
        budget=1000,
        estimate_tokens=50,
        optional_every=1,
    )
    result = await run_chaos(plan, tmp_path / "state", ["kill-worker"], rate_per_min=60, max_faults=1, seed=1)
    assert [f.kind for f in result.faults] == ["kill-worker"] and result.restarts == 1
    report = json.loads(Path(result.report).read_text())  # noqa: ASYNC240
    run = report["tokens"]["run"]
    assert run["allocated"] == 6000 and run["used"] <= run["allocated"] and run["overrun"] == 0
    assert run["reserved"] == 0  # the killed worker's reservation was released at the end
    # the ledger charged what succeeded, plus at most the one spend the killed worker had committed
    assert 100 * result.completed <= run["used"] <= 100 * (result.completed + 1)
    assert result.completed + result.skipped == TASKS and result.skipped >= TASKS - 60 and result.lost == 0
    skipped = [t for t in report["tasks"] if t["state"] == "skipped"]
    for t in skipped:  # refused by the ledger, or waiting on a task that was
        assert "budget exhausted, optional task skipped: reservation of 100" in t["reason"] or t["reason"].startswith(
            f"dependency chaos-{int(t['id'][6:]) - 10:04d} skipped"
        ), t
    for master in ("testing", "monitoring"):
        assert report["tokens"][master]["used"] <= report["tokens"][master]["allocated"] == 3000


async def test_scenario_8_contending_workers_lose_no_update_even_when_killed(tmp_path: Path) -> None:
    await chaos(tmp_path, ["kill-worker"], max_faults=2, kind="chaos.contend", params={"hold_s": 0.1})
    counter = json.loads((tmp_path / "state" / "chaos" / "counter.json").read_text())  # noqa: ASYNC240
    assert counter["value"] == TASKS and sorted(counter["applied"]) == [f"chaos-{i:04d}" for i in range(TASKS)]


async def test_scenario_5_with_the_catalog_down_reads_are_stale_and_writes_replayed(
    tmp_path: Path, redis_server: EmbeddedRedis
) -> None:
    token, spec = new_token("chaos", ["read", "write"])
    config = CatalogConfig(tokens=[spec], prefix=f"cortex:catalog:{uuid.uuid4().hex[:8]}")
    catalog = CatalogService(config, redis_server.url, token).start()
    try:
        result = await chaos(
            tmp_path, ["stop-catalog"], max_faults=1, catalog=catalog, kind="chaos.catalog", params={"read": FIRST}
        )
        async with httpx.AsyncClient(base_url=catalog.url, headers={"Authorization": f"Bearer {token}"}) as c:
            stats = (await c.get("/stats")).json()
            first = (await c.get(f"/assets/{FIRST}")).json()
    finally:
        catalog.stop()
    outputs = [t["output"] for t in json.loads(Path(result.report).read_text())["tasks"]]  # noqa: ASYNC240
    assert any(o["write"] == "queued" for o in outputs)  # written while the API was down
    assert any(o["read"] == "stale" for o in outputs)  # read from the cache while the API was down
    assert stats["by_type"]["chaos-item"] == TASKS  # every queued write was replayed, none lost
    assert first["metadata"]["run"] == result.run_id


async def test_scenario_7_a_paused_coordinator_is_taken_over_and_steps_down_when_resumed(tmp_path: Path) -> None:
    result = await chaos(tmp_path, ["pause-coordinator"], max_faults=1)
    fault = result.faults[0]
    assert fault.exit_code == 4 and result.coordinator_exits == [4, 0]  # stepped down; the new one finished
    log = " ".join((tmp_path / "state" / "coordinator-1.log").read_text().split())  # noqa: ASYNC240
    assert "stepped down" in log and "newer coordinator holds the leadership lease" in log
    report = json.loads(Path(result.report).read_text())  # noqa: ASYNC240
    leadership = next(c for c in report["checks"] if c["name"] == "leadership" and "taken over" in c["detail"])
    assert int(leadership["detail"].rsplit(" ", 1)[1]) > 1  # a newer fencing token than the first coordinator's
