"""Cluster mode: ``cortex node`` agents register in a pool and serve runs that a coordinator places on them; a plan
node that never registers has its processes moved (or the run says which nodes are missing); an agent stopped with
SIGTERM lets its running task finish and its workers move; one agent serves several runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aredis

from cortex.chaos.plan import chaos_plan
from cortex.coord.keys import PoolKeys, RunKeys
from cortex.coord.server import EmbeddedRedis
from cortex.errors import RunNotFound, StartFailed
from cortex.runtime import runindex
from cortex.runtime.coordinator import Coordinator
from cortex.runtime.options import RunOptions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


class Agents:
    """``cortex node`` processes started by a test, stopped by it."""

    def __init__(self, url: str, state: Path) -> None:
        self.url, self.state = url, state
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str, pool: str = "t") -> subprocess.Popen[bytes]:
        env = {**os.environ, "CORTEX_REDIS_URL": self.url, "CORTEX_STATE_DIR": str(self.state / name)}
        argv = [sys.executable, "-m", "cortex", "node", name, "--pool", pool, *args]
        self.procs[name] = subprocess.Popen(argv, env=env, start_new_session=True)
        return self.procs[name]

    async def registered(self, *names: str, pool: str = "t") -> None:
        redis = aredis.Redis.from_url(self.url, decode_responses=True)
        try:
            deadline = time.monotonic() + 30
            while not all([await redis.exists(PoolKeys(pool).heartbeat(n)) for n in names]):
                assert time.monotonic() < deadline, f"agents {names} did not register"
                await asyncio.sleep(0.1)
        finally:
            await redis.aclose()

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, Agents]]:
    with EmbeddedRedis(tmp_path / "redis") as server:
        agents = Agents(server.url, tmp_path / "nodes")
        try:
            yield server.url, agents
        finally:
            agents.stop()


async def test_agents_serve_runs_and_a_missing_node_is_re_placed(cluster: tuple[str, Agents], tmp_path: Path) -> None:
    url, agents = cluster
    agents.start("cp1", "--slots", "0", "--labels", "role=control-plane")
    agents.start("node1", "--slots", "4", "--labels", "zone=a,disk=ssd")
    await agents.registered("cp1", "node1")
    plan = chaos_plan(16, seconds=0.05, workers=4, nodes=2, slots=2)  # node2 never registers
    said: list[str] = []
    options = RunOptions(pool="t", node_wait_s=1.0)
    first = await Coordinator(plan, url, tmp_path / "state", options, run_id="c1", notice=said.append).run()
    assert first.status == "succeeded", first.report.tasks
    moved = [m for m in first.report.node_failures.moves if m.from_node == "node2"]
    assert moved and all(m.to == "node1" and "not registered" in m.reason for m in moved)
    assert {p.node for p in first.report.processes.values()} == {"cp1", "node1"}
    assert any("node2" in s and "waiting" in s for s in said) and any("moved" in s for s in said)
    redis = aredis.Redis.from_url(url, decode_responses=True)
    info = json.loads(await redis.hget(PoolKeys("t").nodes, "node1"))
    assert info["labels"] == {"zone": "a", "disk": "ssd"} and info["slots"] == 4 and info["pid"] > 0
    # any host reads the run from the run index, after the run's own keys are gone
    assert (await runindex.current(redis, "c1")).status == "succeeded"
    assert json.loads(await runindex.report(redis, "c1", "report_json"))["run_id"] == "c1"
    assert "# " in await runindex.report(redis, "c1", "report_md")
    # the same agents serve the next run; the first one's processes are gone from them
    second = await Coordinator(plan, url, tmp_path / "state", options, run_id="c2").run()
    assert second.status == "succeeded"
    assert [s.run_id for s in await runindex.history(redis)] == ["c2", "c1"]
    assert (await runindex.current(redis, None)).run_id == "c2"  # the latest
    # a run marked running that nobody has refreshed or led for a while reads as interrupted
    stale = (await runindex.current(redis, "c1")).model_copy(
        update={"run_id": "gone", "status": "running", "updated_at": time.time() - 60}
    )
    await runindex.publish_state(redis, "gone", stale.model_dump(mode="json"))
    assert (await runindex.current(redis, "gone")).status.startswith("interrupted")
    await runindex.publish_state(redis, "gone", {**stale.model_dump(mode="json"), "updated_at": time.time()})
    assert (await runindex.current(redis, "gone")).status == "running"  # refreshed just now
    with pytest.raises(RunNotFound, match="no report of run 'never'"):
        await runindex.report(redis, "never", "report_md")
    deadline = time.monotonic() + 10
    while json.loads(await redis.hget(PoolKeys("t").nodes, "node1"))["runs"]:
        assert time.monotonic() < deadline, "node1 still lists a run that ended"
        await asyncio.sleep(0.2)
    agents.procs["node1"].terminate()
    assert agents.procs["node1"].wait(timeout=30) == 0
    assert await redis.hget(PoolKeys("t").nodes, "node1") is None  # deregistered
    await redis.aclose()


async def test_a_run_names_the_nodes_that_never_registered(cluster: tuple[str, Agents], tmp_path: Path) -> None:
    url, agents = cluster
    plan = chaos_plan(4, seconds=0.05, workers=2, nodes=1, slots=2)
    with pytest.raises(StartFailed, match=r"no node of pool 't' registered within 1s; the plan needs cp1, node1"):
        await Coordinator(plan, url, tmp_path / "state", RunOptions(pool="t", node_wait_s=1.0), run_id="none").run()
    agents.start("node1", "--slots", "1")  # room for one of the two workers only
    await agents.registered("node1")
    plan = chaos_plan(4, seconds=0.05, workers=2, nodes=2, slots=1)
    with pytest.raises(StartFailed, match=r"have no free slot for .*raise --slots"):
        await Coordinator(plan, url, tmp_path / "state", RunOptions(pool="t", node_wait_s=0.5), run_id="small").run()


async def test_a_drained_agent_finishes_its_task_and_its_workers_move(
    cluster: tuple[str, Agents], tmp_path: Path
) -> None:
    url, agents = cluster
    agents.start("cp1", "--slots", "0")
    agents.start("node1", "--slots", "2")
    agents.start("node2", "--slots", "4")  # room for node1's workers too
    await agents.registered("cp1", "node1", "node2")
    plan = chaos_plan(12, seconds=1.5, workers=4, nodes=2, slots=2)
    coord = Coordinator(plan, url, tmp_path / "state", RunOptions(pool="t"), run_id="drain")
    run = asyncio.create_task(coord.run())
    redis = aredis.Redis.from_url(url, decode_responses=True)
    keys = RunKeys("drain")
    on_node1 = {w.worker_id for w in plan.workers if w.node == "node1"}
    while not on_node1 & set((await redis.hgetall(keys.running)).values()):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    busy = {t for t, w in (await redis.hgetall(keys.running)).items() if w in on_node1}
    agents.procs["node1"].send_signal(signal.SIGTERM)
    result = await asyncio.wait_for(run, 180)
    assert agents.procs["node1"].wait(timeout=30) == 0
    await redis.aclose()
    assert result.status == "succeeded"
    tasks = {t.id: t for t in result.report.tasks}
    assert all(tasks[t].executions == 1 for t in busy)  # finished where they ran, not killed and run again
    moved = {m.worker for m in result.report.node_failures.moves if m.from_node == "node1"}
    assert moved == on_node1
    assert {p.node for p in result.report.processes.values() if p.kind == "worker"} == {"node2"}


def test_usage_counts_what_a_process_started(tmp_path: Path) -> None:
    """A worker's tools run in subprocesses: their CPU and memory are the node's too."""
    import psutil

    from cortex.runtime.supervisor import process_tree, tree_usage

    done = tmp_path / "burnt"
    burn = "import time, pathlib\nwhile time.process_time() < 0.5: pass\n"
    burn += f"pathlib.Path({str(done)!r}).touch()\ntime.sleep(60)"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {burn!r}])\ntime.sleep(60)",
        ],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not done.exists():
            assert time.monotonic() < deadline, "the tool did not burn its CPU"
            time.sleep(0.05)
        ps = psutil.Process(parent.pid)
        own = ps.cpu_times().user + ps.cpu_times().system
        cpu, rss = tree_usage(ps, process_tree())
        assert cpu >= own + 0.45  # the grandchild's half second is counted (times come in clock ticks)
        assert rss > ps.memory_info().rss  # and its memory
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


async def test_a_second_agent_of_the_same_name_is_refused(cluster: tuple[str, Agents]) -> None:
    url, agents = cluster
    agents.start("twin", "--slots", "1")
    await agents.registered("twin")
    env = {**os.environ, "CORTEX_REDIS_URL": url, "CORTEX_STATE_DIR": str(agents.state / "other")}
    second = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cortex", "node", "twin", "--pool", "t"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 7 and "node 'twin' is already registered in pool 't'" in second.stderr
    assert agents.procs["twin"].poll() is None  # the first one carries on


async def test_a_worker_the_run_did_not_place_is_refused(cluster: tuple[str, Agents]) -> None:
    url, _ = cluster
    env = {**os.environ, "CORTEX_REDIS_URL": url}
    argv = [sys.executable, "-m", "cortex", "worker", "--run", "r1", "--id", "ghost-01", "--type", "scan"]
    done = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "ghost-01 is not placed in run r1" in done.stderr
