"""The run's nodes: starting their supervisors (phases 1 and 2), watching them, moving the workers of a failed node
(failure scenario 4), and stopping them all at the end.

In local mode each node is a ``cortex supervisor`` child process of the coordinator. A coordinator that took the
run over did not start them: it adopts them by pid and stops them through the run's ``stop`` key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import psutil
import redis.asyncio as aredis

from cortex.coord.events import Outbox
from cortex.coord.keys import CH_COORDINATOR, RunKeys
from cortex.errors import StartFailed
from cortex.models.messages import Envelope, MessageType
from cortex.models.report import ProcessStatus, WorkerMove
from cortex.observability.metrics import RunMetrics
from cortex.runtime.runstate import RunState

STARTUP_TIMEOUT_S = 60.0
ADOPTED_STOP_TIMEOUT_S = 20.0


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Nodes:
    """The supervisors of one run's nodes, as the leading coordinator sees them."""

    def __init__(
        self, state: RunState, redis: aredis.Redis, keys: RunKeys, outbox: Outbox, metrics: RunMetrics
    ) -> None:
        self.state, self.redis, self.keys, self.outbox, self.metrics = state, redis, keys, outbox, metrics
        self.supervisors: dict[str, subprocess.Popen[bytes]] = {}
        """Supervisors this coordinator started (its children), by node."""
        self.adopted: dict[str, int] = {}
        """Supervisors (node -> pid) of a run taken over: not our children, watched by pid."""
        self._stopped = False

    def _spawn(self, node: str, env: dict[str, str]) -> None:
        """Start the supervisor of ``node`` as our child."""
        argv = [sys.executable, "-m", "cortex", "supervisor", "--run", self.state.run_id, "--node", node]
        # Popen returns at once (fork/exec); the supervisor is waited on at cleanup. Its own session keeps a
        # terminal's Ctrl-C away from it: the coordinator stops it, and it stops itself if the coordinator dies.
        self.supervisors[node] = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True)

    async def start(self, env: dict[str, str], *, masters: bool, check_stop: Callable[[], None]) -> None:
        """Phases 1 and 2: start the supervisors of the nodes hosting masters (or the rest) and wait until every
        process they start has a heartbeat."""
        plan = self.state.plan
        master_nodes = {m.node for m in plan.masters}
        nodes = sorted(master_nodes) if masters else sorted({w.node for w in plan.workers} - master_nodes)
        for node in nodes:
            self._spawn(node, env)
        expected = (
            [f"master-{m.master}" for m in plan.masters]
            if masters
            else [w.worker_id for w in plan.workers if w.node in nodes]
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            check_stop()
            alive = await self._alive(expected)
            if len(alive) == len(expected):
                return
            dead = [n for n, p in self.supervisors.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                missing = sorted(set(expected) - alive)
                why = f"supervisor of {', '.join(dead)} exited" if dead else "timed out"
                raise StartFailed(f"{why}; no heartbeat from: {', '.join(missing)}")
            await asyncio.sleep(0.1)  # polling heartbeat keys while the processes start

    async def _alive(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.exists(self.keys.heartbeat(i))
        return {i for i, ok in zip(ids, await pipe.execute(), strict=True) if ok}

    async def adopt(self, env: dict[str, str]) -> list[str]:
        """Take-over: watch the supervisors the previous leader started that still run (from what they last
        reported), and start again, as our children, those of the run's nodes that are gone (they stop a while
        after their coordinator). Returns the nodes started again."""
        reported = {k: json.loads(v) for k, v in (await self.redis.hgetall(self.keys.nodes)).items()}
        plan, state = self.state.plan, self.state
        nodes = {m.node for m in plan.masters} | {n for n in state.placement.values() if n}
        restarted = []
        for node in sorted(nodes - state.failed_nodes):
            pid = reported.get(node, {}).get("supervisor_pid")
            if pid and running(int(pid)):
                self.adopted[node] = int(pid)
            else:
                self._spawn(node, env)
                restarted.append(node)
        return restarted

    def dead(self) -> list[str]:
        """Nodes whose supervisor has exited (our children), or whose adopted supervisor's pid is gone."""
        gone = [n for n, p in self.supervisors.items() if p.poll() is not None]
        gone += [n for n, pid in self.adopted.items() if not running(pid)]
        return sorted(set(gone) - self.state.failed_nodes)

    async def replace(self, node: str) -> None:
        """A node's supervisor died with its processes: move its workers to healthy worker nodes with free slots
        (fewest workers first); their supervisors start them from the placement hash, and they take over the
        entries the dead workers held (same consumer names) or the reaper does."""
        state = self.state
        state.failed_nodes.add(node)
        live = set(self.supervisors) | set(self.adopted)
        slots = {n.name: n.worker_slots for n in state.plan.cluster.worker_nodes if n.name not in state.failed_nodes}
        moved: dict[str, str] = {}
        for worker_id in sorted(w for w, n in state.placement.items() if n == node):
            load = {n: sum(1 for v in state.placement.values() if v == n) for n in slots}
            free = sorted((load[n], n) for n in slots if load[n] < slots[n] and n in live)
            to = free[0][1] if free else None
            state.moves.append(WorkerMove(worker=worker_id, from_node=node, to=to, at=time.time()))
            # placed, or "" (no healthy node has a free slot: the worker's type carries on with the others)
            moved[worker_id] = state.placement[worker_id] = to or ""
        if moved:
            await self.redis.hset(self.keys.placement, mapping=moved)
        env = Envelope(
            run_id=state.run_id,
            sender="coordinator",
            to="all",
            type=MessageType.control,
            context={"event": "node-failed", "node": node, "moved": moved},
        )
        self.outbox.add(CH_COORDINATOR, env)
        self.metrics.node_failures.inc()

    async def read_processes(self) -> None:
        """The masters' and workers' status as their supervisors last wrote it, into the run's state; alive only
        with a live heartbeat (a supervisor that died wrote its last word while its processes lived)."""
        raw = await self.redis.hgetall(self.keys.processes)
        procs = {k: ProcessStatus.model_validate_json(v) for k, v in raw.items()}
        pipe = self.redis.pipeline(transaction=False)
        for process_id in procs:
            pipe.exists(self.keys.heartbeat(process_id))
        for p, beating in zip(procs.values(), await pipe.execute(), strict=True):
            p.alive = bool(p.alive and beating)
        self.state.processes = procs

    async def stop(self) -> None:
        """Stop every supervisor: our own children by signal, adopted ones through the run's stop key; wait for all
        of them to exit. Once per run."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            await self.redis.set(self.keys.stop, "1", ex=60)  # expires: deleting the run's keys may come first
        for proc in self.supervisors.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.supervisors.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        deadline = time.monotonic() + ADOPTED_STOP_TIMEOUT_S
        # they stop themselves once the run's lease is gone; do not hang the run's end on them
        while any(running(p) for p in self.adopted.values()) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # they are not our children: there is nothing to wait on but their pids


def child_env(
    url: str, state_dir: str, model: str | None, catalog_url: str | None, token: str | None
) -> dict[str, str]:
    """The environment of a node supervisor and what it starts: ours, plus the run's Redis, state directory,
    model and catalog."""
    env = {**os.environ, "CORTEX_REDIS_URL": url, "CORTEX_STATE_DIR": state_dir}
    if model:
        env["CORTEX_MODEL"] = model
    if catalog_url:  # workers record what they discover in the catalog
        env["CORTEX_CATALOG_URL"] = catalog_url
        if token:
            env["CORTEX_CATALOG_TOKEN"] = token
    return env
