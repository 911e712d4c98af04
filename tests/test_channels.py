"""The Redis contract made true: a real run carries its kind of message on each of the five channels, `cortex
watch` shows them live, and a drained worker takes no new task until it is resumed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aredis

from cortex.coord.keys import RunKeys
from cortex.coord.server import EmbeddedRedis
from cortex.models.task import Estimate, Task
from cortex.planner import assemble_plan
from cortex.runtime.coordinator import Coordinator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

RUN_ID = "channels-1"
STEADY = 24
"""Steady tasks of 0.4 s for the two testing workers: enough that the drained worker, resumed after its peer's
third claim, still finds work (about 8 s of it for one worker) however slowly the resume lands."""


def _plan() -> Any:
    from cortex.chaos.plan import MASTERS, chaos_cluster
    from cortex.models import Roster
    from cortex.models.plan import RoutingDecision

    roster = Roster.model_validate(
        {
            "masters": [{"name": m, "role": m, "base_budget": 0, "worker_pool": 0} for m in MASTERS],
            "worker_types": [{"name": f"{m}-w", "master": m, "count": 2, "budget": 0} for m in MASTERS],
            "routing": {"fallback": "testing"},
        }
    )
    # the steady tasks for the testing workers; two tasks that contend for one file for the monitoring workers
    work = [
        Task(
            id=f"work-{i:02d}",
            master="testing",
            kind="chaos.work",
            worker_type="testing-w",
            params={"seconds": 0.4},
            estimate=Estimate(seconds=0.4, tokens=0),
        )
        for i in range(STEADY)
    ]
    contend = [
        Task(
            id=f"contend-{c}",
            master="monitoring",
            kind="chaos.contend",
            worker_type="monitoring-w",
            params={"hold_s": 0.6, "file": "shared.json"},
            estimate=Estimate(seconds=0.6, tokens=0),
        )
        for c in "ab"
    ]
    routing = RoutingDecision(
        mode="parallel", selected=list(MASTERS), scores=[], single_expert_threshold=1, parallel_threshold=1
    )
    return assemble_plan("channels", [], roster, chaos_cluster(2, 2), routing, work + contend)


def _cortex(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CORTEX_REDIS_URL": url}
    return subprocess.run([sys.executable, "-m", "cortex", *args], env=env, capture_output=True, text=True, timeout=60)


def _matching(events: list[dict[str, Any]], channel: str, kind: str, **context: object) -> list[dict[str, Any]]:
    """The events (as ``cortex watch --json`` prints them) on ``channel`` of type ``kind`` with ``context``."""
    return [
        e
        for e in events
        if e["channel"] == channel and e["type"] == kind and all(e["context"].get(k) == v for k, v in context.items())
    ]


# `cortex drain|resume ...` with the interpreter started and the command line imported ahead, run when a line
# arrives on its input: on a loaded machine start-up took seconds, and the run could end before the drain arrived
_READY_CLI = "import sys; from cortex.cli import main; sys.stdin.readline(); main()"


def _cortex_ready(*args: str, url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CORTEX_REDIS_URL": url}
    return subprocess.Popen(
        [sys.executable, "-c", _READY_CLI, *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _fire(command: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = command.communicate("go\n", timeout=60)
    return command.returncode, err


async def _until(redis: aredis.Redis, seen: Callable[[list[dict[str, Any]]], bool]) -> None:
    """Poll the run's event stream until ``seen(events)`` (each event as ``cortex watch --json`` prints it)."""
    for _ in range(600):
        entries = await redis.xrange(RunKeys(RUN_ID).events)
        if seen([{"channel": f["channel"], **json.loads(f["data"])} for _, f in entries]):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the run's events never showed what the test waits for")


async def test_each_channel_carries_its_messages_and_a_drained_worker_takes_no_task(tmp_path: Path) -> None:
    plan = _plan()
    drained, other = "testing-w-worker-01", "testing-w-worker-02"
    assert {drained, other} <= {w.worker_id for w in plan.workers}
    with EmbeddedRedis(appendonly=False) as server:
        env = {**os.environ, "CORTEX_REDIS_URL": server.url}
        argv = [sys.executable, "-m", "cortex", "watch", RUN_ID, "--json", "--wait", "60"]
        watcher = subprocess.Popen(  # noqa: ASYNC220  (read and waited on below)
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        drain = _cortex_ready("drain", RUN_ID, drained, url=server.url)
        resume = _cortex_ready("resume", RUN_ID, drained, url=server.url)
        try:
            assert watcher.stderr is not None
            ready = await asyncio.to_thread(watcher.stderr.readline)
            assert ready.startswith(f"watching run {RUN_ID}"), ready
            coord = Coordinator(plan, server.url, tmp_path / "state", run_id=RUN_ID)
            run = asyncio.ensure_future(coord.run())
            redis = aredis.Redis.from_url(server.url, decode_responses=True)
            try:
                # drained as soon as the run can take the command (its plan is stored before any process starts),
                # so the drained worker usually starts drained: a drain sent once tasks ran was, on a slow host,
                # obeyed after its peer had claimed all but two
                while not await redis.exists(RunKeys(RUN_ID).plan):
                    assert not run.done(), run.result()
                    await asyncio.sleep(0.02)
                code, err = await asyncio.to_thread(_fire, drain)
                assert code == 0, err
                # the other testing worker goes on alone meanwhile: three claims of its own
                acks, claims = f"cortex:worker:{drained}", f"cortex:worker:{other}"
                await _until(redis, lambda es: bool(_matching(es, acks, "control", event="draining")))
                await _until(
                    redis,
                    lambda es: (
                        sum(
                            e["ts"] > _matching(es, acks, "control", event="draining")[0]["ts"]
                            for e in _matching(es, claims, "task", event="assigned")
                        )
                        >= 3
                    ),
                )
                code, err = await asyncio.to_thread(_fire, resume)
                assert code == 0, err
                # the worker says it resumed while the run still has work for it (waiting for the run's end instead
                # once lost the race on a slow host: the run ended with the acknowledgement unseen)
                await _until(redis, lambda es: bool(_matching(es, acks, "control", event="resumed")))
            finally:
                await redis.aclose()
            result = await run
            out, err = await asyncio.to_thread(watcher.communicate, timeout=60)
        finally:
            for process in (watcher, drain, resume):
                if process.poll() is None:
                    process.kill()
                    process.wait()
    assert result.status == "succeeded"
    assert watcher.returncode == 0, err  # it ended by itself with the run
    events = [json.loads(line) for line in out.splitlines()]

    def seen(channel: str, kind: str, **context: object) -> list[dict[str, Any]]:
        return _matching(events, channel, kind, **context)

    coordinator = "cortex:master:coordinator"
    assert [e["context"]["name"] for e in seen(coordinator, "control", event="phase")] == [
        "preflight", "activation", "distribution", "execution", "aggregation", "reporting"
    ]  # fmt: skip
    assert seen(coordinator, "control", event="run-ended", status="succeeded")
    master = "cortex:master:testing"
    # one message per dispatch and per coordinator turn, each listing its tasks
    dispatched = [t["task_id"] for e in seen(master, "task", event="dispatched") for t in e["context"]["tasks"]]
    assert sorted(dispatched) == [f"work-{i:02d}" for i in range(STEADY)]
    ended = [t for e in seen(master, "result") for t in e["context"]["tasks"]]
    assert sorted(t["task_id"] for t in ended) == [f"work-{i:02d}" for i in range(STEADY)]
    assert all(t["state"] == "succeeded" and t["worker"].startswith("testing-w-worker-") for t in ended)
    assert seen("cortex:master:monitoring", "heartbeat", event="registered")
    worker = f"cortex:worker:{drained}"
    assert seen(worker, "heartbeat", event="registered") and seen(worker, "task", event="assigned")
    claims = [e for w in ("01", "02") for e in seen(f"cortex:worker:testing-w-worker-{w}", "task", event="assigned")]
    assigned = [t["task_id"] for e in claims for t in e["context"]["tasks"]]
    assert sorted(assigned) == [f"work-{i:02d}" for i in range(STEADY)]
    lineage = [t for e in seen("cortex:lineage", "lineage") for t in e["context"]["tasks"]]
    assert sorted(t["task"] for t in lineage) == sorted(t.id for t in plan.tasks)  # each task's edges, once
    ran_on = {(a, b) for t in lineage for a, relation, b in t["edges"] if relation == "ran_on"}
    assert {a for a, _ in ran_on} == {f"task:{t.id}" for t in plan.tasks}
    assert all(b == f"worker:{t['worker']}" for t in lineage for a, r, b in t["edges"] if r == "ran_on")
    conflicts = seen("cortex:conflicts", "conflict")
    waits = [c for c in conflicts if c["context"]["event"] == "lock-wait"]
    assert len(waits) == 1 and waits[0]["task_id"] in ("contend-a", "contend-b")
    assert [c["context"]["event"] for c in conflicts if c["task_id"] == waits[0]["task_id"]] == [
        "lock-wait",
        "lock-acquired",
    ]

    # the drain was obeyed: nothing assigned to the drained worker between its acknowledgements, while the
    # other worker went on; and after the resume it took tasks again (read from the run's archived event stream,
    # which has every event: a live watcher has what pub/sub delivered to it)
    archived = [json.loads(line) for line in (result.archive / "events.jsonl").read_text().splitlines()]
    (draining,) = _matching(archived, worker, "control", event="draining")
    (resumed,) = _matching(archived, worker, "control", event="resumed")
    assert draining["context"]["by"] == "operator" and draining["ts"] < resumed["ts"]
    mine = [e["ts"] for e in _matching(archived, worker, "task", event="assigned")]  # one message per claim
    assert not [t for t in mine if draining["ts"] < t < resumed["ts"]]
    assert [t for t in mine if t > resumed["ts"]]
    theirs = [e["ts"] for e in _matching(archived, f"cortex:worker:{other}", "task", event="assigned")]
    assert len([t for t in theirs if draining["ts"] < t < resumed["ts"]]) >= 3


async def test_a_cancelled_task_fails_without_retry_and_its_dependents_are_skipped(tmp_path: Path) -> None:
    from cortex.chaos.plan import chaos_plan

    plan = chaos_plan(4, seconds=0.2, workers=2, nodes=1)
    long = plan.tasks[0].model_copy(update={"params": {"seconds": 60}})  # chaos-0000, a minute unless cancelled
    after = plan.tasks[1].model_copy(update={"depends_on": [long.id]})
    plan = plan.model_copy(update={"tasks": [long, after, *plan.tasks[2:]]})
    with EmbeddedRedis(appendonly=False) as server:
        coord = Coordinator(plan, server.url, tmp_path / "state", run_id="cancel-1")
        run = asyncio.ensure_future(coord.run())
        await coord.executing.wait()
        while long.id not in coord.state.running:  # noqa: ASYNC110  (the coordinator refreshes it every 0.5 s)
            await asyncio.sleep(0.1)
        sent = await asyncio.to_thread(_cortex, "cancel", "cancel-1", long.id, url=server.url)
        assert sent.returncode == 0, sent.stderr
        result = await asyncio.wait_for(run, 60)
        nothing = await asyncio.to_thread(_cortex, "cancel", "cancel-1", long.id, url=server.url)
    tasks = {t.id: t for t in result.report.tasks}
    cancelled = tasks[long.id]
    assert cancelled.state.value == "failed" and cancelled.attempts == 1  # not retried
    assert cancelled.error == "cancelled by operator" and cancelled.duration_s is not None
    assert cancelled.duration_s < 30
    assert tasks[after.id].state.value == "skipped" and long.id in (tasks[after.id].reason or "")
    assert all(tasks[t.id].state.value == "succeeded" for t in plan.tasks[2:])
    assert nothing.returncode == 5  # the run is over: no such live run


async def test_a_task_that_runs_out_of_time_fails_and_is_retried(tmp_path: Path) -> None:
    """A task's ``timeout_s`` cancels it in its handler; the attempt fails as timed out and, unlike a cancel, is
    retried; the worker goes on with the next task."""
    from cortex.chaos.plan import chaos_plan

    plan = chaos_plan(4, seconds=0.2, workers=2, nodes=1)
    slow = plan.tasks[0].model_copy(update={"params": {"seconds": 60}, "timeout_s": 1.0})
    plan = plan.model_copy(update={"tasks": [slow, *plan.tasks[1:]]})
    with EmbeddedRedis(appendonly=False) as server:
        result = await asyncio.wait_for(Coordinator(plan, server.url, tmp_path / "state").run(), 120)
    tasks = {t.id: t for t in result.report.tasks}
    timed_out = tasks[slow.id]
    assert timed_out.state.value == "failed" and timed_out.attempts == plan.retry.max_attempts > 1
    assert timed_out.errors == ["timed out after 1 s"] * timed_out.attempts
    assert timed_out.duration_s is not None and 0.9 < timed_out.duration_s < 5
    assert all(tasks[t.id].state.value == "succeeded" for t in plan.tasks[1:])


async def test_a_damaged_standing_command_is_skipped_and_the_process_still_obeys(
    redis: aredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    from cortex.runtime.control import Control, send

    keys = RunKeys("control-1")
    # what another version, or a damaged hash, could hold: once, reading it ended the process's following for good
    await redis.hset(keys.control, mapping={"w-1": "not json", "cancel:t-9": '["to", "w-1"]'})
    control = Control(redis, keys, "w-1")
    stop = asyncio.Event()
    follow = asyncio.create_task(control.follow(stop))
    try:
        for _ in range(400):  # the first reading of the hash: each damaged entry is skipped, and says so
            if [r.getMessage() for r in caplog.records].count("control-error") >= 2:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the damaged entries were not reported (following done: {follow.done()})")
        await send(redis, keys, "w-1", "drain", by="operator")
        await asyncio.wait_for(control.changed.wait(), 20)
        assert control.draining_by == "operator" and not follow.done()
        # a failure while obeying (here the process's own cancel callback) is logged, and following goes on
        cancels: list[str] = []

        def broken(task_id: str, by: str) -> bool:
            cancels.append(task_id)
            raise RuntimeError("the callback broke")

        control.on_cancel = broken
        await send(redis, keys, "w-1", "cancel", by="operator", task_id="t-1")
        control.changed.clear()
        await send(redis, keys, "w-1", "resume", by="operator")
        await asyncio.wait_for(control.changed.wait(), 20)
        assert cancels and not control.draining and not follow.done()
    finally:
        stop.set()
        await asyncio.wait_for(follow, 10)
    assert any("the callback broke" in str(getattr(r, "fields", {}).get("error")) for r in caplog.records)
