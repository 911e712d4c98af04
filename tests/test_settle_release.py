"""Release on settle: a task's first successful settle releases the dependents that waited only for it, straight
to their queue (or to their master's inbox while the master drains), once; the coordinator records what a settle
released and never releases it again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aredis

from cortex.coord.delivery import Delivery, Released
from cortex.coord.keys import GROUP_WORKERS, RunKeys
from cortex.coord.server import EmbeddedRedis
from cortex.models import Cluster, Roster
from cortex.models.plan import RoutingDecision
from cortex.models.result import Outcome, TaskResult
from cortex.models.task import Estimate, Task
from cortex.planner import assemble_plan
from cortex.runtime.coordinator import Coordinator
from cortex.runtime.process import ensure_group

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def _deliver(redis: aredis.Redis, queue: str, task_id: str, attempt: int = 1) -> str:
    await redis.xadd(queue, {"task_id": task_id, "attempt": str(attempt)})
    reply = await redis.xreadgroup(GROUP_WORKERS, "w1", {queue: ">"}, count=1)
    return str(reply[0][1][0][0])


def _result(task_id: str, outcome: Outcome, attempt: int = 1) -> TaskResult:
    return TaskResult(task_id=task_id, attempt=attempt, worker="w1", started=1, finished=2, outcome=outcome)


async def test_the_last_dependency_to_settle_a_success_releases_the_dependent_once(redis: aredis.Redis) -> None:
    keys = RunKeys("settle-release")
    queue, inbox = keys.queue("scan"), keys.inbox("security")
    await ensure_group(redis, queue, GROUP_WORKERS)
    # as the coordinator arms them when it releases a and b: d waits for both
    entry = ["security", "scan", "3", inbox, queue, "task_id", "d", "worker_type", "scan", "priority", "3"]
    await redis.hset(keys.release_next, mapping={"a": json.dumps(["d"]), "b": json.dumps(["d"])})
    await redis.hset(keys.release_waits, "d", "2")
    await redis.hset(keys.release_entry, "d", json.dumps(entry))
    delivery = Delivery(redis, keys)

    async def settle(task_id: str, outcome: Outcome, attempt: int = 1, done: int = 2) -> list[Released]:
        entry_id = await _deliver(redis, queue, task_id, attempt)
        settled = await delivery.settle([(queue, entry_id, _result(task_id, outcome, attempt), [])])
        assert settled.done == [done]  # 2: settled with its effects (a first success), 1: settled
        return settled.released

    assert await settle("a", Outcome.succeeded) == []  # b has not settled
    assert await settle("b", Outcome.failed, done=1) == []  # a failure releases nothing
    assert await redis.xlen(queue) == 2 and await redis.hget(keys.release_waits, "d") == "1"
    # b's retry succeeds: d goes straight to its queue, its first attempt, with the entry the coordinator wrote
    assert await settle("b", Outcome.succeeded, attempt=2) == [Released("d", "security", "scan", 3, True)]
    *_, (_, fields) = await redis.xrange(queue)
    written = dict(zip(entry[5::2], entry[6::2], strict=True))
    assert fields == {"attempt": "1", "released_ts": fields["released_ts"], **written}
    *_, (_, result) = await redis.xrange(keys.results)
    assert json.loads(result["released"]) == ["d"] and float(result["released_ts"]) == float(fields["released_ts"])
    # b delivered again and successful again: its effects and releases happened with the first success
    assert await settle("b", Outcome.succeeded, attempt=2, done=1) == []
    assert await redis.xlen(queue) == 5 and await redis.xlen(inbox) == 0


async def test_a_dependent_of_a_draining_master_waits_in_its_inbox(redis: aredis.Redis) -> None:
    keys = RunKeys("settle-drained")
    queue, inbox = keys.queue("scan"), keys.inbox("security")
    await ensure_group(redis, queue, GROUP_WORKERS)
    await redis.hset(keys.release_next, "a", json.dumps(["d"]))
    await redis.hset(keys.release_waits, "d", "1")
    await redis.hset(keys.release_entry, "d", json.dumps(["security", "scan", "0", inbox, queue, "task_id", "d"]))
    await redis.hset(keys.control, "master-security", json.dumps({"command": "drain", "by": "test", "at": 1}))
    entry_id = await _deliver(redis, queue, "a")
    settled = await Delivery(redis, keys).settle([(queue, entry_id, _result("a", Outcome.succeeded), [])])
    assert settled.released == [Released("d", "security", "scan", 0, False)]
    assert [f["task_id"] for _, f in await redis.xrange(inbox)] == ["d"] and await redis.xlen(queue) == 1


def _plan() -> Any:
    def task(task_id: str, deps: list[str], **extra: Any) -> Task:
        return Task(
            id=task_id,
            master="coordinator",
            kind="builtin.noop",
            worker_type="w",
            depends_on=deps,
            estimate=Estimate(seconds=0, tokens=0),
            **extra,
        )

    tasks = [
        task("a", []),
        task("b", ["a"]),
        task("c", ["b"]),
        task("d1", ["a"]),
        task("d2", ["a"]),
        task("e", ["d1", "d2"]),
        # no model: the coordinator skips it, no settle releases it
        task("m", ["a"], requires_model=True, optional=True),
        # waits for every task (as decomposition writes it): the coordinator decides it
        task("z", ["a", "b", "c", "d1", "d2", "e", "m"], after_all=True, needs="completion"),
    ]
    cluster = Cluster.model_validate(
        {
            "name": "t",
            "nodes": [
                {"name": "cp1", "role": "control-plane", "cpu": 1, "memory_mib": 1024, "worker_slots": 0},
                {"name": "n1", "role": "worker", "cpu": 1, "memory_mib": 1024, "worker_slots": 3},
            ],
        }
    )
    roster = Roster.model_validate(
        {
            "masters": [{"name": "coordinator", "role": "t", "base_budget": 0, "worker_pool": 0}],
            "worker_types": [{"name": "w", "master": "coordinator", "count": 3, "budget": 0}],
        }
    )
    routing = RoutingDecision(
        mode="fallback", selected=["coordinator"], scores=[], single_expert_threshold=1, parallel_threshold=1
    )
    return assemble_plan("settle release", [], roster, cluster, routing, tasks)


async def test_a_run_releases_dependents_on_settle_and_each_task_once(tmp_path: Path) -> None:
    with EmbeddedRedis(appendonly=False) as server:
        result = await Coordinator(_plan(), server.url, tmp_path / "state").run()
    assert result.status == "succeeded", result.status
    report = json.loads(result.report_json.read_text())
    tasks = {t["id"]: t for t in report["tasks"]}
    assert tasks["m"]["state"] == "skipped"
    ran = {i: t for i, t in tasks.items() if i != "m"}
    assert all(t["state"] == "succeeded" and t["attempts"] == 1 for t in ran.values()), ran
    events = [json.loads(line) for line in (result.archive / "events.jsonl").read_text().splitlines()]
    senders: dict[str, list[str]] = {}
    for e in events:
        if e["context"].get("event") == "dispatched":
            for t in e["context"]["tasks"]:
                senders.setdefault(t["task_id"], []).append(e["from"])
    # every task that ran was dispatched once: the ones after a success by the worker whose settle released them,
    # the roots and the coordinator's own decisions (the task after every task) by the master
    assert set(senders) == set(ran) and all(len(s) == 1 for s in senders.values()), senders
    by_settle = {i for i, s in senders.items() if not s[0].endswith("-master")}
    assert by_settle == {"b", "c", "d1", "d2", "e"}, senders
    assert senders["a"] == ["coordinator-master"] and senders["z"] == ["coordinator-master"]
    # the dependent of two was released by the later of its dependencies, after both ended
    assert tasks["e"]["released_at"] >= max(tasks["d1"]["finished_at"], tasks["d2"]["finished_at"])
    assert tasks["z"]["started_at"] >= max(t["finished_at"] for i, t in ran.items() if i != "z")
