"""Nothing lost under the faults a real run meets: a Redis outage longer than the leadership lease is waited out,
a take-over finishes when the old run's supervisors have already stopped, and a run whose releases went nowhere
is noticed as stalled and unstuck."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis.asyncio as aredis

from cortex.chaos.plan import chaos_plan
from cortex.coord.keys import RunKeys
from cortex.coord.server import EmbeddedRedis
from cortex.models.phase import Phase
from cortex.planner import assemble_plan, write_plan
from cortex.runtime import control
from cortex.runtime.coordinator import Coordinator
from cortex.runtime.leadership import Leadership
from cortex.runtime.options import RunOptions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _kill(server: EmbeddedRedis) -> None:
    """SIGKILL the server (``server.start()`` starts it again on its append-only file)."""
    assert server.process is not None
    server.process.kill()
    server.process.wait(timeout=5)


def _outage(server: EmbeddedRedis, seconds: float) -> None:
    """``_kill`` the server, keep it down for ``seconds``, start it again."""
    _kill(server)
    time.sleep(seconds)  # the outage itself
    server.start()


async def test_a_redis_outage_longer_than_the_lease_is_waited_out(tmp_path: Path) -> None:
    plan = chaos_plan(40, seconds=0.3, workers=2, nodes=1, slots=2)
    with EmbeddedRedis(tmp_path / "redis") as server:
        coord = Coordinator(plan, server.url, tmp_path / "state", run_id="outage")
        run = asyncio.create_task(coord.run())
        await asyncio.wait_for(coord.executing.wait(), 60)
        await asyncio.sleep(1.0)  # some tasks done, some running, some waiting
        await asyncio.to_thread(_outage, server, 13.0)  # past the 10 s lease
        result = await asyncio.wait_for(run, 180)
    report = result.report
    assert result.status == "succeeded", [t.error for t in report.tasks if t.error]
    assert len(report.outages) == 1 and (report.outages[0].lasted_s or 0) >= 10
    # nothing was left for the stall check: a release script the outage swallowed was sent again (it once was
    # not, and this run took two minutes more)
    assert not report.stalls, report.stalls
    assert all(t.state.value == "succeeded" for t in report.tasks) and len(report.tasks) == 40
    assert report.success_criteria["no-lost-tasks"]


async def test_a_release_script_lost_with_the_server_is_sent_again_when_it_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis dies just as the coordinator sends the script releasing a dependent task it decides itself (one that
    waits for every task: settles release the others), so the script never runs: once the server is back, that
    task is released again at once, not when the stall check notices (set to ten minutes here, past the test's
    own limit)."""
    chaos = chaos_plan(12, seconds=0.2, workers=2, nodes=1, slots=2)
    closing = chaos.tasks[0].model_copy(
        update={"id": "chaos-close", "depends_on": [t.id for t in chaos.tasks], "after_all": True}
    )
    plan = assemble_plan(chaos.goal, [], chaos.roster, chaos.cluster, chaos.routing, [*chaos.tasks, closing])
    with EmbeddedRedis(tmp_path / "redis") as server:
        coord = Coordinator(plan, server.url, tmp_path / "state", RunOptions(stall_s=600), run_id="lost-release")
        send = Leadership.hset_then  # the coordinator's fenced writes (the only ones in this process)
        back: list[threading.Thread] = []

        async def dies_first(self: Leadership, key: str, mapping: dict[str, Any], commands: list[list[str]]) -> None:
            if not back and any(c[0] == "XADD" and "chaos-close" in c for c in commands):
                _kill(server)  # before the script is sent: it cannot run
                back.append(threading.Thread(target=lambda: (time.sleep(12.0), server.start())))
                back[0].start()  # longer than the client's own retries (about 7 s): the run rides it out
            await send(self, key, mapping, commands)

        monkeypatch.setattr(Leadership, "hset_then", dies_first)
        result = await asyncio.wait_for(coord.run(), 120)
        back[0].join()
    report = result.report
    assert result.status == "succeeded" and len(report.outages) == 1 and not report.stalls
    tasks = {t.id: t for t in report.tasks}
    lost = tasks["chaos-close"]
    assert lost.state.value == "succeeded" and any("release was lost" in e for e in lost.errors), lost.errors
    assert all(t.state.value == "succeeded" for t in tasks.values()) and len(tasks) == 13


def _agents(url: str, run_id: str) -> list[int]:
    async def read() -> list[int]:
        redis = aredis.Redis.from_url(url, decode_responses=True)
        nodes = await redis.hgetall(RunKeys(run_id).nodes)
        await redis.aclose()
        return [int(json.loads(v)["agent_pid"]) for v in nodes.values()]

    return asyncio.run(read())


@pytest.mark.slow(40)
def test_a_take_over_finishes_when_the_old_node_agents_have_stopped(tmp_path: Path) -> None:
    write_plan(chaos_plan(60, seconds=0.5, workers=2, nodes=1, slots=2), tmp_path / "plan")
    state = tmp_path / "state"
    with EmbeddedRedis(tmp_path / "redis") as server:
        env = {**os.environ, "CORTEX_REDIS_URL": server.url, "CORTEX_STATE_DIR": str(state), "COLUMNS": "200"}
        argv = [sys.executable, "-m", "cortex", "run", str(tmp_path / "plan" / "plan.json"), "--run-id", "orphaned"]
        first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        current = state / "current-execution.json"
        deadline = time.monotonic() + 60
        while True:  # until a few tasks have ended
            try:
                doc = json.loads(current.read_text())
                if doc["phase"] >= 3 and sum(c.get("succeeded", 0) for c in doc["tasks"].values()) >= 4:
                    break
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                pass
            assert time.monotonic() < deadline and first.poll() is None, "the first run did not get going"
            time.sleep(0.1)
        pids = _agents(server.url, "orphaned")
        first.send_signal(signal.SIGKILL)  # the coordinator dies; its node agents stop some 20 s later
        first.wait(timeout=10)
        gone, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=60)
        assert not alive, "the orphaned node agents did not stop"
        second = subprocess.run(
            [sys.executable, "-m", "cortex", "takeover", "orphaned", "--wait", "15"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert second.returncode == 0, second.stderr[-2000:]
    report = json.loads((state / "runs" / "orphaned" / "report.json").read_text())
    assert report["status"] == "succeeded" and len(report["tasks"]) == 60
    assert all(t["state"] == "succeeded" for t in report["tasks"])
    *_, taken = [c for c in report["checks"] if c["name"] == "leadership"]  # the first is the old leader's
    assert "started again the node agents of" in taken["detail"]


async def test_releases_that_went_nowhere_are_noticed_as_a_stall_and_released_again(tmp_path: Path) -> None:
    plan = chaos_plan(8, seconds=0.1, workers=2, nodes=1, slots=2)
    masters = sorted({t.master for t in plan.tasks})
    with EmbeddedRedis(tmp_path / "redis") as server:
        redis = aredis.Redis.from_url(server.url, decode_responses=True)
        coord = Coordinator(plan, server.url, tmp_path / "state", RunOptions(stall_s=5.0), run_id="stalled")
        keys = RunKeys("stalled")
        run = asyncio.create_task(coord.run())
        while coord.state.phase < Phase.distribution:  # noqa: ASYNC110  (the masters run; nothing released yet)
            await asyncio.sleep(0.02)
        for m in masters:
            await control.send(redis, keys, f"master-{m}", "drain", by="test")
        await asyncio.wait_for(coord.executing.wait(), 60)
        while sum([await redis.xlen(keys.inbox(m)) for m in masters]) < 8:  # noqa: ASYNC110  (releases wait)
            await asyncio.sleep(0.02)
        for m in masters:  # lost, as a crashed server that had not written them would lose them
            await redis.xdel(keys.inbox(m), *[entry_id for entry_id, _ in await redis.xrange(keys.inbox(m))])
            await control.send(redis, keys, f"master-{m}", "resume", by="test")
        result = await asyncio.wait_for(run, 120)
        await redis.aclose()
    report = result.report
    assert result.status == "succeeded"
    assert len(report.stalls) == 1 and sorted(report.stalls[0].requeued) == sorted(t.id for t in plan.tasks)
    assert all(t.attempts == 2 for t in report.tasks)  # released again as a new attempt, no failure counted


async def test_a_killed_execution_is_counted(tmp_path: Path) -> None:
    plan = chaos_plan(1, seconds=4.0, workers=1, nodes=1, slots=1)
    (task,) = plan.tasks
    with EmbeddedRedis(tmp_path / "redis") as server:
        redis = aredis.Redis.from_url(server.url, decode_responses=True)
        keys = RunKeys("killed")
        coord = Coordinator(plan, server.url, tmp_path / "state", run_id="killed")
        run = asyncio.create_task(coord.run())
        while await redis.hget(keys.running, task.id) is None:  # noqa: ASYNC110  (until the worker has it)
            await asyncio.sleep(0.02)
        worker = json.loads(await redis.hget(keys.processes, plan.workers[0].worker_id))
        os.kill(worker["pid"], signal.SIGKILL)  # mid-task: its supervisor restarts it, it runs the task again
        result = await asyncio.wait_for(run, 120)
        await redis.aclose()
    (record,) = result.report.tasks
    assert record.state.value == "succeeded" and record.attempts == 1 and record.executions == 2
    assert result.report.executions == 2


async def test_liveness_in_the_state_files_comes_from_heartbeats(redis: aredis.Redis, tmp_path: Path) -> None:
    from cortex.coord.events import Outbox
    from cortex.observability.metrics import RunMetrics
    from cortex.runtime.nodes import Nodes
    from cortex.runtime.runstate import RunState

    plan = chaos_plan(1, workers=2, nodes=1, slots=2)
    state = RunState.new(plan, "hb", tmp_path, model_configured=False)
    keys = RunKeys("hb")
    a, b = (w.worker_id for w in plan.workers)
    for worker_id in (a, b):  # what a supervisor last wrote before it died: both alive
        status = {"id": worker_id, "node": "n1", "kind": "worker", "pid": 1, "alive": True, "restarts": 0}
        await redis.hset(keys.processes, worker_id, json.dumps(status))
    await redis.set(keys.heartbeat(a), "1", px=4000)  # only a still beats
    nodes = Nodes(state, redis, keys, Outbox(keys), RunMetrics())
    await nodes.read_processes()
    assert state.processes[a].alive and not state.processes[b].alive
