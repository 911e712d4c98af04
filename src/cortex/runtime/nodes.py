"""The run's nodes as the leading coordinator sees them: placing its processes on node agents (phases 0 to 2),
watching the agents' heartbeats, moving the processes of a failed node (failure scenario 4), and ending the run on
them.

Both modes share this code. In cluster mode (``cortex run --nodes cluster``) the agents are ``cortex node``
processes already registered in a pool, on any host. In local mode the coordinator starts one agent per plan node
as its own child, in a pool of the run's own (``local-<run id>``), and those agents exit when the run is over.
Either way the coordinator writes where every process goes (the run's placement hash), adds the run to each node's
``runs`` set, and learns of a node's death from its heartbeat, never from a process handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable

import redis.asyncio as aredis

from cortex.coord.events import Outbox
from cortex.coord.keys import CH_COORDINATOR, PoolKeys, RunKeys
from cortex.errors import StartFailed
from cortex.models.cluster import NodeInfo
from cortex.models.messages import Envelope, MessageType
from cortex.models.report import ProcessStatus
from cortex.observability import logs
from cortex.observability.metrics import RunMetrics
from cortex.runtime.placement import is_master, move_off
from cortex.runtime.runstate import RunState

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
"""How long the run's end waits for agents to stop its processes (they need up to ``STOP_GRACE_S`` each)."""


def local_pool(run_id: str) -> str:
    """The pool of the agents local mode starts for run ``run_id``."""
    return f"local-{run_id}"


class Nodes:
    """The node agents of one run. ``pool`` None is local mode."""

    def __init__(
        self,
        state: RunState,
        redis: aredis.Redis,
        keys: RunKeys,
        outbox: Outbox,
        metrics: RunMetrics,
        *,
        pool: str | None = None,
        node_wait_s: float = 60.0,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.state, self.redis, self.keys, self.outbox, self.metrics = state, redis, keys, outbox, metrics
        self.node_wait_s = node_wait_s
        self.notice = notice or (lambda _: None)
        self.use_pool(pool)
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        """Local mode: the agents this coordinator started (its children), by node."""
        self.starting: dict[str, float] = {}
        """Nodes whose agent was just started, and until when it may take to register."""
        self._stopped = False

    def use_pool(self, pool: str | None) -> None:
        """Local mode (None, or a ``local-`` pool read back at a take-over) or the cluster pool ``pool``."""
        self.local = pool is None or pool == local_pool(self.state.run_id)
        self.pool = local_pool(self.state.run_id) if pool is None else pool
        self.pkeys = PoolKeys(self.pool)

    # ------------------------------------------------------------------------------------ registry
    async def registered(self) -> dict[str, NodeInfo]:
        """Nodes of the pool with a live heartbeat that are not draining and not failed in this run."""
        raw = await self.redis.hgetall(self.pkeys.nodes)
        infos = {n: NodeInfo.model_validate_json(v) for n, v in raw.items()}
        beats = await self._beating(list(infos))
        return {n: i for n, i in infos.items() if n in beats and not i.draining and n not in self.state.failed_nodes}

    async def _beating(self, nodes: list[str]) -> set[str]:
        if not nodes:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for n in nodes:
            pipe.exists(self.pkeys.heartbeat(n))
        return {n for n, ok in zip(nodes, await pipe.execute(), strict=True) if ok}

    def in_use(self) -> set[str]:
        """Nodes that host a process of the run now."""
        return {n for n in self.state.placement.values() if n} - self.state.failed_nodes

    # ------------------------------------------------------------------------------ phases 0 to 2
    async def place(self, check_stop: Callable[[], None]) -> None:
        """Cluster mode, phase 0: wait up to ``node_wait_s`` for the plan's nodes to register; move what the
        missing ones would have run onto registered nodes with capacity, or fail naming them."""
        if self.local:
            return
        wanted = self.in_use()
        deadline = time.monotonic() + self.node_wait_s
        said = False
        while True:
            check_stop()
            live = await self.registered()
            missing = wanted - set(live)
            if not missing or time.monotonic() > deadline:
                break
            if not said:
                self.notice(
                    f"waiting up to {self.node_wait_s:.0f}s for nodes of pool {self.pool!r} to register: "
                    f"{', '.join(sorted(missing))}"
                )
                said = True
            await asyncio.sleep(0.5)  # agents register on their own schedule: nothing to wait on but the hash
        if not missing:
            return
        how = f"start `cortex node NAME --pool {self.pool}` on a host that reaches this Redis"
        if not live:
            raise StartFailed(
                f"no node of pool {self.pool!r} registered within {self.node_wait_s:.0f}s; the plan "
                f"needs {', '.join(sorted(wanted))}; {how}"
            )
        reason = f"not registered in pool {self.pool!r}"
        changed, moves = move_off(self.state.placement, missing, live, reason=reason, at=time.time())
        unplaced = sorted(p for p, n in changed.items() if not n)
        if unplaced:
            raise StartFailed(
                f"nodes {', '.join(sorted(missing))} did not register in pool {self.pool!r} within "
                f"{self.node_wait_s:.0f}s and the registered ones ({', '.join(sorted(live))}) have no "
                f"free slot for {', '.join(unplaced)}; {how}, or raise --slots"
            )
        self.state.placement.update(changed)
        self.state.moves.extend(moves)
        logs.event("re-placed", logging.WARNING, missing=sorted(missing), moved=changed)
        self.notice(
            f"nodes {', '.join(sorted(missing))} did not register; moved "
            + ", ".join(f"{m.worker} to {m.to}" for m in moves)
        )

    async def start(self, env: dict[str, str], *, masters: bool, check_stop: Callable[[], None]) -> None:
        """Phases 1 and 2: hand the run to the agents of the nodes hosting masters (or the rest), starting them
        first in local mode, and wait until every process placed there has a heartbeat."""
        placed = self.state.placement
        master_nodes = {n for p, n in placed.items() if is_master(p) and n}
        nodes = sorted(master_nodes) if masters else sorted(self.in_use() - master_nodes)
        await self.redis.hset(self.keys.placement, mapping=placed)
        for node in nodes:
            await self.redis.sadd(self.pkeys.runs(node), self.state.run_id)
            if self.local:
                self._spawn(node, env)
        expected = [p for p, n in placed.items() if n in nodes]
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            check_stop()
            alive = await self._alive(expected)
            if len(alive) == len(expected):
                return
            dead = [n for n, p in self.agents.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                missing = sorted(set(expected) - alive)
                why = f"node agent of {', '.join(dead)} exited" if dead else "timed out"
                raise StartFailed(f"{why}; no heartbeat from: {', '.join(missing)}")
            await asyncio.sleep(0.1)  # polling heartbeat keys while the processes start

    def _spawn(self, node: str, env: dict[str, str]) -> None:
        """Local mode: start the agent of ``node`` as our child, with the plan node's slots and labels."""
        spec = {n.name: n for n in self.state.plan.cluster.nodes}.get(node)
        slots = spec.worker_slots if spec else 0
        labels = {**(spec.labels if spec else {}), "role": spec.role.value if spec else "worker"}
        argv = [sys.executable, "-m", "cortex", "node", node, "--pool", self.pool, "--for-run", self.state.run_id]
        argv += ["--slots", str(slots)]
        for k, v in sorted(labels.items()):
            argv += ["--labels", f"{k}={v}"]
        # Its own session keeps a terminal's Ctrl-C away from it (the coordinator stops it) and lets a node's
        # failure be staged by killing its process group.
        self.agents[node] = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        self.starting[node] = time.monotonic() + STARTUP_TIMEOUT_S

    async def _alive(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.exists(self.keys.heartbeat(i))
        return {i for i, ok in zip(ids, await pipe.execute(), strict=True) if ok}

    async def adopt(self, env: dict[str, str]) -> list[str]:
        """Take-over: the agents that still beat carry on; in local mode, those of the run's nodes that are gone
        (they stop a while after their coordinator) are started again as our children. Returns those nodes."""
        gone = sorted(self.in_use() - await self._beating(sorted(self.in_use())))
        if not self.local:
            return []  # the node watch moves their processes
        for node in gone:
            await self.redis.sadd(self.pkeys.runs(node), self.state.run_id)
            self._spawn(node, env)
        return gone

    # --------------------------------------------------------------------------------- phase 3
    async def dead(self) -> list[str]:
        """Nodes hosting the run's processes whose agent's heartbeat has lapsed (or that drained)."""
        now = time.monotonic()
        beating = await self._beating(sorted(self.in_use()))
        for n in list(self.starting):
            if n in beating or now > self.starting[n]:
                del self.starting[n]
        return sorted(self.in_use() - beating - set(self.starting))

    async def replace(self, node: str) -> None:
        """A node's agent is gone: move its processes to live nodes (``placement.move_off``); their agents start
        them from the placement hash, and they take over the entries the dead ones held (same consumer names) or
        the reaper does. A drain its agent asked of them is lifted: it was the node's, not theirs."""
        state = self.state
        state.failed_nodes.add(node)
        live = await self.registered()
        moved, moves = move_off(state.placement, {node}, live, reason="node failed", at=time.time())
        state.moves.extend(moves)
        state.placement.update(moved)
        logs.event("node-failed", logging.WARNING, node=node, moved=moved)
        if moved:
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(self.keys.placement, mapping=moved)
            pipe.hdel(self.keys.control, *moved)
            for to in {n for n in moved.values() if n}:
                pipe.sadd(self.pkeys.runs(to), state.run_id)
            await pipe.execute()
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
        """The masters' and workers' status as their agents last wrote it, into the run's state; alive only with a
        live heartbeat (an agent that died wrote its last word while its processes lived)."""
        raw = await self.redis.hgetall(self.keys.processes)
        procs = {k: ProcessStatus.model_validate_json(v) for k, v in raw.items()}
        pipe = self.redis.pipeline(transaction=False)
        for process_id in procs:
            pipe.exists(self.keys.heartbeat(process_id))
        for p, beating in zip(procs.values(), await pipe.execute(), strict=True):
            p.alive = bool(p.alive and beating)
        self.state.processes = procs

    # --------------------------------------------------------------------------------- phase 5
    async def stop(self) -> None:
        """End the run on every node: the stop key (every agent stops the run's processes, writes their last
        figures and lets the run go), then wait, bounded, until each live agent has let it go and, in local mode,
        our agents have exited. Once per run."""
        if self._stopped:
            return
        self._stopped = True
        nodes = sorted({n for n in self.state.placement.values() if n})
        told = False
        with contextlib.suppress(Exception):
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(self.keys.stop, "1", ex=60)  # expires: deleting the run's keys may come first
            for n in nodes:
                pipe.srem(self.pkeys.runs(n), self.state.run_id)
            await pipe.execute()
            told = True
        deadline = time.monotonic() + (STOP_TIMEOUT_S if told else 0)
        with contextlib.suppress(Exception):  # Redis gone: there is nobody to ask
            while await self._holding(nodes) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)  # agents say so on their next heartbeat: nothing else to wait on
        for proc in self.agents.values():  # local mode: they exit once their run is let go
            try:
                await asyncio.to_thread(proc.wait, max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:  # Redis gone with the run: tell them directly
                proc.terminate()
                try:
                    await asyncio.to_thread(proc.wait, 10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    async def _holding(self, nodes: list[str]) -> list[str]:
        """Nodes whose live agent still lists the run among its runs."""
        beating = await self._beating(nodes)
        raw = await self.redis.hmget(self.pkeys.nodes, sorted(beating)) if beating else []
        infos = [NodeInfo.model_validate_json(v) for v in raw if v]
        return [i.name for i in infos if self.state.run_id in i.runs]


def child_env(
    url: str, state_dir: str, model: str | None, catalog_url: str | None, token: str | None
) -> dict[str, str]:
    """The environment of a local node agent and what it starts: ours, plus the run's Redis, state directory, model
    and catalog."""
    env = {**os.environ, "CORTEX_REDIS_URL": url, "CORTEX_STATE_DIR": state_dir}
    if model:
        env["CORTEX_MODEL"] = model
    if catalog_url:  # workers record what they discover in the catalog
        env["CORTEX_CATALOG_URL"] = catalog_url
        if token:
            env["CORTEX_CATALOG_TOKEN"] = token
    return env
