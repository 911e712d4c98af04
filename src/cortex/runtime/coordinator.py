"""The coordinator: runs a plan through phases 0 to 5 as an explicit state machine.

0 pre-flight, 1 master activation, 2 worker distribution, 3 parallel execution, 4 aggregation, 5 reporting and
cleanup. ``Coordinator.run`` moves through them in order; a failed pre-flight check stops the run before any
process starts. The coordinator holds the run's leadership lease and writes task records under its token.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import RedisError

from cortex.coord import events
from cortex.coord.connection import connect, redact_url
from cortex.coord.keys import (
    CH_COORDINATOR,
    GROUP_COORDINATOR,
    GROUP_MASTERS,
    RUNS,
    RunKeys,
    leader_resource,
    master_channel,
)
from cortex.coord.ledger import Ledger
from cortex.coord.locks import FencedLock
from cortex.errors import CortexError, FencedWriteRefused, LeadershipLost, PreflightFailed, RunInterrupted
from cortex.models import Plan
from cortex.models.messages import Envelope, MessageType
from cortex.models.task import Estimate, Task, TaskState
from cortex.observability.metrics import RunMetrics
from cortex.planner.schedule import PHASES
from cortex.runtime import reaper, report, statefiles, takeover
from cortex.runtime.graphrun import GraphRun, Outcome
from cortex.runtime.process import ensure_group
from cortex.runtime.records import TaskRecord

LEASE_TTL_MS = 10_000
STARTUP_TIMEOUT_S = 60.0


@dataclass
class Check:
    """One pre-flight check and its result."""

    name: str
    ok: bool
    detail: str


@dataclass
class RunResult:
    """Where the run's report and archive are, and how it ended."""

    run_id: str
    status: str
    report_md: Path
    report_json: Path
    archive: Path
    summary: dict[str, Any] = field(default_factory=dict)


def token_use(account: dict[str, int]) -> dict[str, Any]:
    """A ledger account with what is left and the efficiency (used over allocated)."""
    left = account["allocated"] - account["used"] - account["reserved"]
    eff = round(account["used"] / account["allocated"], 4) if account["allocated"] else 0.0
    return {**account, "remaining": left, "efficiency": eff}


class Coordinator:
    """Runs one plan. ``on_update`` is called with the execution state after every refresh (for live display)."""

    def __init__(
        self,
        plan: Plan,
        redis_url: str,
        state_dir: Path,
        *,
        model: str | None = None,
        metrics_port: int | None = None,
        run_id: str | None = None,
        connect_attempts: int = 5,
        catalog_url: str | None = None,
        catalog_token: str | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        prices: dict[str, dict[str, float]] | None = None,
    ) -> None:
        self.plan = plan
        self.url = redis_url
        self.state_dir = state_dir
        self.model = model
        self.connect_attempts = connect_attempts
        self.catalog_url = catalog_url
        self.catalog_token = catalog_token
        self.run_id = run_id or time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.keys = RunKeys(self.run_id)
        self.metrics = RunMetrics()
        self.metrics_port = metrics_port
        self.on_update = on_update
        self.graph = GraphRun(plan.tasks, plan.retry, model_configured=model is not None)
        self.phase = 0
        self.phase_times: dict[str, float] = {}
        self.started_at = time.time()
        self.checks: list[Check] = []
        self.supervisors: dict[str, subprocess.Popen[bytes]] = {}
        self.handoffs: list[dict[str, Any]] = []
        self.reassignments = 0
        self.targets = {t.name: t.path for t in plan.targets}
        self._dirty: set[str] = set()
        self._retry_heap: list[tuple[float, str]] = []
        self._pending_release: list[TaskRecord] = []
        self._events: list[tuple[str, Envelope]] = []
        self._processes: dict[str, str] = {}
        self.report_paths: dict[str, Path] = {}
        self.lease_lost = False
        self.stop_requested = False
        self._keeper: asyncio.Task[None] | None = None
        self._running: dict[str, str] = {}
        self.placement = {w.worker_id: w.node for w in plan.workers}
        """Where each worker runs now: the plan's placement, until a node fails and its workers move."""
        self.failed_nodes: set[str] = set()
        self.moves: list[dict[str, Any]] = []
        self.orphan_reservations = 0
        self.token_use: dict[str, dict[str, Any]] = {}
        self.prices = prices or {}
        self.degradations: list[dict[str, Any]] = []
        self.model_usage: dict[str, Any] = {}
        self.stepped_down = False
        self._nodes_stopped = False
        self.adopted: dict[str, int] = {}
        """Supervisors (node -> pid) of a run taken over: not our children, watched by pid."""
        self.took_over_at: float | None = None
        self._results_cursor = ">"
        self.executing = asyncio.Event()
        """Set when phase 3 (parallel execution) begins."""
        self.redis: aredis.Redis
        self.lease: FencedLock

    # ----------------------------------------------------------------- phases
    async def run(self) -> RunResult:
        """Run every phase; always stop processes and the lease, also on error or Ctrl-C."""
        return await self._lead(self._start)

    async def take_over(self, wait_s: float = 60.0) -> RunResult:
        """Continue a run whose coordinator stopped renewing its lease (crashed, paused, partitioned): wait up to
        ``wait_s`` for the lease, rebuild the run from Redis, adopt its processes and finish it."""
        return await self._lead(lambda: self._take_lease(wait_s))

    async def _start(self) -> None:
        """Phases 0 to 2: pre-flight, masters, workers."""
        await self._enter(0)
        await self._preflight()
        await self._setup()
        await self._enter(1)
        await self._start_nodes(masters=True)
        await self._enter(2)
        await self._start_nodes(masters=False)

    async def _lead(self, begin: Callable[[], Awaitable[None]]) -> RunResult:
        self.redis = await connect(self.url, attempts=self.connect_attempts)
        try:
            await begin()
            if self.phase < 3:
                await self._enter(3)
            await self._execute()
            await self._enter(4)
            aggregate = await self._aggregate()
            await self._enter(5)
            return await self._finish(aggregate, "succeeded" if self._all_required_ok() else "failed")
        except (LeadershipLost, FencedWriteRefused) as exc:
            # Another coordinator leads this run now: its processes, state files and keys are not ours to touch.
            self.stepped_down = True
            raise LeadershipLost(
                f"run {self.run_id}: a newer coordinator holds the leadership lease (this one had token "
                f"{self.lease.token}); stepped down, leaving the run's processes to it"
            ) from exc
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self._write_state("aborted")
            if self.stop_requested and not isinstance(exc, RunInterrupted):
                # whatever broke while stopping (a child hit by the same Ctrl-C) is part of the interruption
                raise RunInterrupted(f"run {self.run_id} interrupted") from exc
            raise
        finally:
            if not self.stepped_down:
                await self._stop_nodes()
            if self._keeper is not None:
                self._keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._keeper
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.lease.release(), 2)  # best effort: the lease expires by itself
            await self.redis.aclose()

    async def _enter(self, phase: int) -> None:
        self._check_stop()
        now = time.time()
        self.phase_times[PHASES[phase][1]] = now
        self.phase = phase
        self.metrics.phase.set(phase)
        env = Envelope(
            run_id=self.run_id,
            sender="coordinator",
            to="all",
            type=MessageType.control,
            context={"event": "phase", "phase": phase, "name": PHASES[phase][1]},
        )
        with contextlib.suppress(Exception):
            await events.publish(self.redis, self.keys, CH_COORDINATOR, env)
        self._write_state("running")
        if phase == 3:
            self.executing.set()

    async def _preflight(self) -> None:
        """Phase 0: every check is reported; any failure stops the run before anything starts."""
        info = await self.redis.info("server")
        self.checks.append(Check("redis", True, f"{redact_url(self.url)} (version {info.get('redis_version')})"))
        lines = self.plan.budget.lines
        total_ok = sum(line.base + line.worker_pool for line in lines) == self.plan.budget.total
        pools_ok = all(sum(line.workers.values()) + line.reserve == line.worker_pool for line in lines)
        self.checks.append(
            Check(
                "budgets",
                total_ok and pools_ok,
                f"{self.plan.budget.total:,} tokens in {len(lines)} master accounts"
                if total_ok and pools_ok
                else "allocations do not add up",
            )
        )
        missing = [t.name for t in self.plan.targets if not Path(t.path).is_dir()]  # noqa: ASYNC240  (a few stats)
        self.checks.append(
            Check(
                "targets",
                not missing,
                f"{len(self.plan.targets)} present" if not missing else f"missing: {', '.join(missing)}",
            )
        )
        self.checks.append(
            Check(
                "nodes",
                True,
                f"{len(self.plan.cluster.nodes)} nodes; local mode: one supervisor "
                f"process per node using {sys.executable}",
            )
        )
        self.checks.append(Check("catalog", True, await self._catalog_check()))
        needs_model = sum(1 for t in self.plan.tasks if t.requires_model)
        self.checks.append(
            Check(
                "model",
                True,
                f"configured: {self.model}"
                if self.model
                else f"absent: {needs_model} task(s) needing a model will be skipped",
            )
        )
        self.lease = self._new_lease()
        got = await self.lease.try_acquire()
        self.checks.append(
            Check(
                "leadership",
                got,
                f"lease held with fencing token {self.lease.token}" if got else "another coordinator holds this run",
            )
        )
        if not all(c.ok for c in self.checks):
            raise PreflightFailed(self.checks)
        self._keeper = asyncio.create_task(self._keep_lease())

    def _new_lease(self) -> FencedLock:
        return FencedLock(self.redis, leader_resource(self.run_id), ttl_ms=LEASE_TTL_MS, owner=f"coord-{os.getpid()}")

    async def _take_lease(self, wait_s: float) -> None:
        """Take-over: acquire the lease once its holder stops renewing it, then restore the run from Redis."""
        self.lease = self._new_lease()
        deadline = time.monotonic() + wait_s
        while not await self.lease.try_acquire():  # noqa: ASYNC110  (Redis does not announce a lease running out)
            if time.monotonic() > deadline:
                raise CortexError(f"run {self.run_id} still has a live coordinator after {wait_s:.0f} s; not taken")
            await asyncio.sleep(0.2)
        self.took_over_at = time.time()
        await takeover.restore(self)
        self.checks.append(Check("leadership", True, f"taken over with fencing token {self.lease.token}"))
        self._keeper = asyncio.create_task(self._keep_lease())
        self.phase = 3
        self.metrics.phase.set(3)
        self.executing.set()
        self._write_state("running")

    async def _keep_lease(self) -> None:
        """Renew the leadership lease every third of its TTL. Refused: it is lost, and the loop steps down. Redis
        unreachable: keep trying until the lease would have run out."""
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(LEASE_TTL_MS / 3000)
            try:
                ok = await self.lease.renew()
            except RedisError:
                if time.monotonic() - renewed < LEASE_TTL_MS / 1000:
                    continue
                ok = False
            if not ok:
                self.lease_lost = True
                return
            renewed = time.monotonic()

    def request_stop(self) -> None:
        """Ask the run to stop at its next step (safe to call from a signal handler on the loop)."""
        self.stop_requested = True

    def _check_stop(self) -> None:
        if self.stop_requested:
            raise RunInterrupted(f"run {self.run_id} interrupted")

    def _check_lease(self) -> None:
        if self.lease_lost:
            raise LeadershipLost(f"lost the leadership lease of run {self.run_id}; stepping down")

    async def _catalog_check(self) -> str:
        """Catalog availability; never fatal: a run without a catalog still runs, and says so."""
        if not self.catalog_url:
            return "absent: CORTEX_CATALOG_URL is not set; discovery results stay in the report"
        from cortex.catalog.client import CatalogClient

        client = CatalogClient(self.catalog_url, self.state_dir / "catalog-cache", token=self.catalog_token)
        try:
            state = await client.availability()
        finally:
            await client.aclose()
        detail = {
            "reachable": "reachable",
            "degraded": "degraded: API down, reads from the cache, writes queued",
            "absent": "absent: API down and no cache",
        }[state]
        return f"{detail} ({self.catalog_url})"

    async def _setup(self) -> None:
        """Store the plan, create the streams' consumer groups and allocate the ledger."""
        await self.redis.set(self.keys.plan, self.plan.model_dump_json())
        await self.redis.zadd(RUNS, {self.run_id: self.started_at})
        for m in self.plan.masters:
            await ensure_group(self.redis, self.keys.inbox(m.master), GROUP_MASTERS)
        await ensure_group(self.redis, self.keys.results, GROUP_COORDINATOR)
        alloc = {"run": self.plan.budget.total}
        for line in self.plan.budget.lines:
            alloc[f"master:{line.master}"] = line.base + line.worker_pool
            alloc.update({f"worker:{w}": b for w, b in line.workers.items()})
        await Ledger(self.redis, self.keys).allocate(alloc)
        if self.metrics_port:
            self.metrics.serve(self.metrics_port)

    async def _start_nodes(self, *, masters: bool) -> None:
        """Phases 1 and 2: start the supervisors of the nodes hosting masters (or the rest), wait for heartbeats."""
        master_nodes = {m.node for m in self.plan.masters}
        nodes = sorted(master_nodes) if masters else sorted({w.node for w in self.plan.workers} - master_nodes)
        env = {**os.environ, "CORTEX_REDIS_URL": self.url, "CORTEX_STATE_DIR": str(self.state_dir)}
        if self.model:
            env["CORTEX_MODEL"] = self.model
        if self.catalog_url:  # workers record what they discover in the catalog
            env["CORTEX_CATALOG_URL"] = self.catalog_url
            if self.catalog_token:
                env["CORTEX_CATALOG_TOKEN"] = self.catalog_token
        for node in nodes:
            argv = [sys.executable, "-m", "cortex", "supervisor", "--run", self.run_id, "--node", node]
            # Popen returns at once (fork/exec); the supervisor is waited on at cleanup. Its own session keeps a
            # terminal's Ctrl-C away from it: the coordinator stops it, and it stops itself if the coordinator dies.
            self.supervisors[node] = subprocess.Popen(  # noqa: ASYNC220
                argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True
            )
        expected = (
            [f"master-{m.master}" for m in self.plan.masters]
            if masters
            else [w.worker_id for w in self.plan.workers if w.node in nodes]
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            self._check_stop()
            alive = await self._alive(expected)
            self._write_state("running")
            if len(alive) == len(expected):
                return
            dead_nodes = [n for n, p in self.supervisors.items() if p.poll() is not None]
            if dead_nodes or time.monotonic() > deadline:
                missing = sorted(set(expected) - alive)
                why = f"supervisor of {', '.join(dead_nodes)} exited" if dead_nodes else "timed out"
                raise CortexError(f"{why}; no heartbeat from: {', '.join(missing)}")
            await asyncio.sleep(0.1)  # polling heartbeat keys while the processes start

    async def _alive(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.exists(self.keys.heartbeat(i))
        return {i for i, ok in zip(ids, await pipe.execute(), strict=True) if ok}

    # -------------------------------------------------------------- execution
    async def _execute(self) -> None:
        """Phase 3: release ready tasks, apply results, retry, reclaim from dead workers, until all ended."""
        if self.took_over_at is None:  # a run taken over had its releases restored instead
            self._handle(self.graph.initial())
        await self._release_pending()
        last_state = last_reap = 0.0
        while not self.graph.done:
            now = time.monotonic()
            self._check_stop()
            self._check_lease()
            while self._retry_heap and self._retry_heap[0][0] <= time.time():
                _, task_id = heapq.heappop(self._retry_heap)
                self._pending_release.append(self.graph.records[task_id])
            cursor = self._results_cursor
            reply = await self.redis.xreadgroup(
                GROUP_COORDINATOR, "coordinator", {self.keys.results: cursor}, count=1000, block=50
            )
            ids = []
            for entry_id, fields in reply[0][1] if reply else []:
                ids.append(entry_id)
                self._apply(fields)
            if cursor == "0" and not ids:
                self._results_cursor = ">"
            # Records first (a task released now may read its dependencies' records), and always a fenced write
            # before the acknowledgement: a coordinator that lost its lease must not acknowledge what it cannot record.
            if ids or self._dirty:
                await self._flush()
            await self._release_pending()
            if ids:
                await self.redis.xack(self.keys.results, GROUP_COORDINATOR, *ids)
            for node in self._dead_nodes():
                await self._replace_node(node)
            if now - last_reap > 1.0:
                # Results read by a coordinator that has since stepped down (it never acknowledged them) wait in the
                # group's pending list under the same consumer name: re-read it now and then.
                self._results_cursor = "0"
                moved = await reaper.reclaim(self.redis, self.keys, self._queues())
                self.reassignments += moved
                self.metrics.reassignments.inc(moved)
                last_reap = now
            if self._dirty:
                await self._flush()
            if now - last_state > 0.5:
                await self._refresh(now)
                last_state = now
        await self._flush()

    def _dead_nodes(self) -> list[str]:
        """Nodes whose supervisor has exited (our children), or whose adopted supervisor's pid is gone."""
        dead = [n for n, p in self.supervisors.items() if p.poll() is not None]
        dead += [n for n, pid in self.adopted.items() if not takeover.running(pid)]
        return sorted(set(dead) - self.failed_nodes)

    async def _replace_node(self, node: str) -> None:
        """A node's supervisor died with its processes (failure scenario 4): move its workers to healthy worker
        nodes with free slots (fewest workers first); their supervisors start them from the placement hash. The
        entries the dead workers held are taken over by the moved workers (same consumer names) or the reaper."""
        self.failed_nodes.add(node)
        slots = {n.name: n.worker_slots for n in self.plan.cluster.worker_nodes if n.name not in self.failed_nodes}
        moved: dict[str, str] = {}
        for worker_id in sorted(w for w, n in self.placement.items() if n == node):
            load = {n: sum(1 for v in self.placement.values() if v == n) for n in slots}
            free = sorted((load[n], n) for n in slots if load[n] < slots[n] and n in self.supervisors)
            move = {"worker": worker_id, "from": node, "to": free[0][1] if free else None, "at": time.time()}
            self.moves.append(move)
            # placed, or "" (no healthy node has a free slot: the worker's type carries on with the others)
            moved[worker_id] = self.placement[worker_id] = free[0][1] if free else ""
        if moved:
            await self.redis.hset(self.keys.placement, mapping=moved)
        self._events.append(
            (
                CH_COORDINATOR,
                Envelope(
                    run_id=self.run_id,
                    sender="coordinator",
                    to="all",
                    type=MessageType.control,
                    context={"event": "node-failed", "node": node, "moved": moved},
                ),
            )
        )
        self.metrics.node_failures.inc()

    def _queues(self) -> list[str]:
        return sorted({self.keys.queue(w.worker_type) for w in self.plan.workers})

    def _handle(self, out: Outcome) -> None:
        self._pending_release.extend(out.release)
        for rec in out.ended:
            self._dirty.add(rec.task.id)
            self.metrics.tasks.labels(rec.task.master, rec.state.value).inc()
            if rec.duration_s is not None:
                self.metrics.duration.labels(rec.task.master).observe(rec.duration_s)

    def _apply(self, f: dict[str, str]) -> None:
        out_data = json.loads(f.get("output") or "{}")
        handoffs = out_data.pop("handoffs", []) if isinstance(out_data, dict) else []
        out = self.graph.apply(
            f["task_id"],
            int(f["attempt"]),
            f["ok"] == "1",
            worker=f["worker"],
            started=float(f["started"]),
            finished=float(f["finished"]),
            output=out_data,
            error=f.get("error", ""),
            retryable=f.get("retryable") == "1",
            now=time.time(),
            skipped=f["ok"] == "skip",
        )
        self._dirty.add(f["task_id"])
        if out.retry_at is not None:
            heapq.heappush(self._retry_heap, (out.retry_at, f["task_id"]))
            self.metrics.retries.inc()
        self._handle(out)
        if not out.duplicate and f.get("redelivered") == "1":  # a restarted worker took over its own dead entry
            self.reassignments += 1
            self.metrics.reassignments.inc()
        if not out.duplicate:
            for h in handoffs:
                self._admit_handoff(self.graph.records[f["task_id"]], h)

    def _admit_handoff(self, source: TaskRecord, h: dict[str, Any]) -> None:
        """A master hands work to another: admit it as a task if the receiver exists, is staffed and can pay."""
        to, kind = str(h.get("to")), str(h.get("kind"))
        line = next((b for b in self.plan.budget.lines if b.master == to), None)
        staffed = any(w.worker_type == h.get("worker_type") for w in self.plan.workers)
        committed = sum(r.task.estimate.tokens for r in self.graph.records.values() if r.task.master == to)
        tokens = int(h.get("estimate_tokens", 0))
        if line is None or not staffed:
            decision = f"rejected: {to} is not active in this plan or has no {h.get('worker_type')} worker"
        elif committed + tokens > line.base + line.worker_pool:
            decision = f"rejected: {to} budget {line.base + line.worker_pool:,} cannot cover {committed + tokens:,}"
        else:
            decision = "admitted"
        task_id = f"{kind}:{source.task.target or 'run'}" + (f":{h['key']}" if h.get("key") else "")
        record = {
            "from": source.task.master,
            "to": to,
            "task": task_id,
            "source_task": source.task.id,
            "reason": h.get("reason", ""),
            "decision": decision,
        }
        self.handoffs.append(record)
        env = Envelope(
            run_id=self.run_id,
            sender=f"{source.task.master}-master",
            to=f"{to}-master",
            type=MessageType.handoff,
            task_id=task_id,
            context=record,
        )
        self._events.append((master_channel(to), env))
        if decision == "admitted" and task_id not in self.graph.records:
            task = Task(
                id=task_id,
                master=to,
                kind=kind,
                worker_type=str(h["worker_type"]),
                target=source.task.target,
                params=dict(h.get("params", {})),
                requires_model=bool(h.get("requires_model")),
                estimate=Estimate(seconds=float(h.get("estimate_seconds", 30)), tokens=tokens),
                origin=f"handoff:{source.task.master}",
            )
            rec = self.graph.add(task)
            out = Outcome()
            self.graph._ready(rec, out)
            self._handle(out)

    async def _release_pending(self) -> None:
        if not self._pending_release and not self._events:
            return
        if self._pending_release:
            await self._flush()  # a fenced write first: a coordinator that lost its lease releases nothing
        pipe = self.redis.pipeline(transaction=False)
        now = time.time()
        for rec in self._pending_release:
            self.graph.mark_released(rec, now)
            self._dirty.add(rec.task.id)
            pipe.xadd(
                self.keys.inbox(rec.task.master),
                {
                    "task": rec.task.model_dump_json(),
                    "attempt": str(rec.attempt),
                    "released_ts": repr(now),
                    "target_path": self.targets.get(rec.task.target or "", ""),
                },
            )
        for channel, env in self._events:
            events.emit(pipe, self.keys, channel, env)
        self._pending_release = []
        self._events = []
        await pipe.execute()

    async def _flush(self) -> None:
        """Write changed task records under the leadership token (refused if a newer coordinator exists)."""
        self._check_lease()
        dirty, self._dirty = self._dirty, set()
        await self.lease.hset(self.keys.tasks, {i: self.graph.records[i].to_json() for i in sorted(dirty)})

    async def _refresh(self, now: float) -> None:
        """Ledger figures into the metrics, live state files and display; the run-level counters into Redis (fenced)
        for a coordinator that may take over."""
        if not await self.lease.still_held():
            raise LeadershipLost(f"lost the leadership lease of run {self.run_id}")
        await self.lease.hset(self.keys.coordinator, {"state": json.dumps(takeover.snapshot(self))})
        ledger = Ledger(self.redis, self.keys)
        for level in ["run", *(f"master:{line.master}" for line in self.plan.budget.lines)]:
            use = token_use(await ledger.account(level))
            self.token_use[level.removeprefix("master:")] = use
            if level != "run":
                name = level.removeprefix("master:")
                self.metrics.tokens_used.labels(name).set(use["used"])
                self.metrics.tokens_remaining.labels(name).set(use["remaining"])
                self.metrics.token_efficiency.labels(name).set(use["efficiency"])
        depth: dict[str, int] = {}
        for rec in self.graph.records.values():
            if rec.state is TaskState.released:
                depth[rec.task.worker_type] = depth.get(rec.task.worker_type, 0) + 1
        for w in {w.worker_type for w in self.plan.workers}:
            self.metrics.queue_depth.labels(w).set(depth.get(w, 0))
        self._processes = await self.redis.hgetall(self.keys.processes)
        self._running = await self.redis.hgetall(self.keys.running)
        for node in {w.node for w in self.plan.workers}:
            self.metrics.workers_alive.labels(node).set(
                sum(
                    1
                    for v in self._processes.values()
                    if (p := json.loads(v))["node"] == node and p["alive"] and p["kind"] == "worker"
                )
            )
        self._write_state("running")

    # ------------------------------------------------------- phases 4 and 5
    async def _aggregate(self) -> dict[str, Any]:
        """Phase 4: per-master results (from the aggregation task when it ran, else merged here)."""
        from cortex.toolset.aggregate import merge

        raw = await self.redis.hgetall(self.keys.aggregate)
        if raw:
            return {m: json.loads(v) for m, v in raw.items()}
        return merge([r.to_dict() for r in self.graph.records.values()])

    def _all_required_ok(self) -> bool:
        return all(
            r.state is TaskState.succeeded
            for r in self.graph.records.values()
            if not r.task.optional and r.task.origin == "plan"
        )

    async def _finish(self, aggregate: dict[str, Any], status: str) -> RunResult:
        """Phase 5: report, archive, stop processes, delete the run's keys."""
        await self._stop_nodes()
        self._running = {}
        self._processes = await self.redis.hgetall(self.keys.processes)
        nodes = {k: json.loads(v) for k, v in (await self.redis.hgetall(self.keys.nodes)).items()}
        ledger = Ledger(self.redis, self.keys)
        self.orphan_reservations = await ledger.release_orphans()  # every process has stopped: none can commit
        tokens = {line.master: await ledger.account(f"master:{line.master}") for line in self.plan.budget.lines}
        tokens["run"] = await ledger.account("run")
        self.token_use = {k: token_use(v) for k, v in tokens.items()}
        self.degradations = [json.loads(d) for d in await self.redis.lrange(self.keys.degradations, 0, -1)]
        self.model_usage = report.model_usage(await self.redis.hgetall(self.keys.model_usage), self.prices)
        event_log = await events.read_events(self.redis, self.keys)
        data = report.build(self, aggregate, nodes, tokens, status)
        if self.model:
            await self._summarise(data, ledger)
        run_dir = self.state_dir / "runs" / self.run_id
        final = statefiles.snapshot(self, status)
        final[statefiles.CURRENT]["finished_at"] = time.time()
        result = report.write(data, self.plan, run_dir, self.state_dir, event_log, final)
        async for key in self.redis.scan_iter(match=self.keys.pattern(), count=500):
            await self.redis.delete(key)
        self.report_paths = result
        self._write_state(status, finished=True)
        return RunResult(self.run_id, status, result["report_md"], result["report_json"], result["archive"], data)

    async def _summarise(self, data: dict[str, Any], ledger: Ledger) -> None:
        """The executive summary by the fallback master's model, from the report data; its tokens join the
        report's figures."""
        from cortex.agents.summary import write_summary

        name = self.plan.roster.routing.fallback
        master = next(m for m in self.plan.roster.masters if m.name == name)
        data["executive_summary"] = await write_summary(
            self.redis, self.keys, master, self.model or "", dict(os.environ), data
        )
        data["tokens"] = {line.master: await ledger.account(f"master:{line.master}") for line in self.plan.budget.lines}
        data["tokens"]["run"] = await ledger.account("run")
        self.token_use = {k: token_use(v) for k, v in data["tokens"].items()}
        self.model_usage = report.model_usage(await self.redis.hgetall(self.keys.model_usage), self.prices)
        data["models"] = self.model_usage

    async def _stop_nodes(self) -> None:
        """Stop every node supervisor: our own children by signal, and those adopted in a take-over through the
        run's stop key; wait for all of them to exit. Once per run."""
        if self._nodes_stopped:
            return
        self._nodes_stopped = True
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
        with contextlib.suppress(Exception):
            await takeover.wait_for_adopted(self)

    # ------------------------------------------------------------ state files
    def _write_state(self, status: str, *, finished: bool = False) -> None:
        if self.stepped_down:
            return  # the state files belong to the coordinator that leads now
        docs = statefiles.snapshot(self, status)
        if finished:
            docs[statefiles.CURRENT]["finished_at"] = time.time()
        statefiles.write_all(self.state_dir, docs)
        if self.on_update:
            self.on_update(docs[statefiles.CURRENT])
