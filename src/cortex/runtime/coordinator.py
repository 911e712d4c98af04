"""The coordinator: the loop that drives a run through its phases.

0 pre-flight, 1 master activation, 2 worker distribution, 3 parallel execution, 4 aggregation, 5 reporting and
cleanup (``models.phase.Phase``). ``Coordinator.run`` moves through them in order, ``take_over`` starts at
execution; ``_enter`` is the only place the phase changes. The work of each phase lives in its own module:
``preflight``, ``nodes`` (start, watch, replace, stop), ``dispatch`` (results, releases, handoffs), ``finish``
(aggregation, end figures) and ``report``. The run's records and counters are one ``RunState`` that this class
owns; the report, the state files and a take-over read that value, never this object.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aredis

from cortex.coord import events
from cortex.coord.connection import connect, redact_url
from cortex.coord.events import Outbox
from cortex.coord.keys import CH_CONFLICTS, CH_COORDINATOR, GROUP_COORDINATOR, GROUP_MASTERS, RUNS, RunKeys
from cortex.coord.ledger import Ledger
from cortex.errors import FencedWriteRefused, LeadershipLost, PreflightFailed, RunInterrupted
from cortex.models import Plan
from cortex.models.messages import Envelope, MessageType
from cortex.models.phase import Phase
from cortex.models.report import Report
from cortex.models.state import Check
from cortex.models.task import TaskState
from cortex.observability.metrics import RunMetrics
from cortex.runtime import finish, reaper, report, statefiles, takeover
from cortex.runtime.dispatch import Dispatcher
from cortex.runtime.leadership import Leadership
from cortex.runtime.nodes import Nodes, child_env
from cortex.runtime.preflight import run_checks
from cortex.runtime.process import ensure_group
from cortex.runtime.runstate import RunState


@dataclass
class RunResult:
    """Where the run's report and archive are, and how it ended."""

    run_id: str
    status: str
    report_md: Path
    report_json: Path
    archive: Path
    report: Report = field(repr=False)


class Coordinator:
    """Runs one plan. ``on_update`` is called with ``current-execution.json``'s content after every refresh (for a
    live display)."""

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
        self.url = redis_url
        self.model = model
        self.metrics_port = metrics_port
        self.connect_attempts = connect_attempts
        self.catalog_url, self.catalog_token = catalog_url, catalog_token
        self.on_update = on_update
        self.prices = prices or {}
        run_id = run_id or time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.state = RunState.new(plan, run_id, state_dir, model_configured=model is not None)
        self.state.redis_display = redact_url(redis_url)
        self.keys = RunKeys(run_id)
        self.metrics = RunMetrics()
        self.outbox = Outbox(self.keys)
        self.stop_requested = False
        self.stepped_down = False
        self.executing = asyncio.Event()
        """Set when phase 3 (parallel execution) begins."""

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.state.run_id

    # ------------------------------------------------------------------------------------- the loop
    async def run(self) -> RunResult:
        """Run every phase; always stop processes and the lease, also on error or Ctrl-C."""
        return await self._lead(self._start)

    async def take_over(self, wait_s: float = 60.0) -> RunResult:
        """Continue a run whose coordinator stopped renewing its lease (crashed, paused, partitioned): wait up to
        ``wait_s`` for the lease, rebuild the run from Redis, adopt its processes and finish it."""
        return await self._lead(lambda: self._take(wait_s))

    async def _lead(self, begin: Callable[[], Awaitable[None]]) -> RunResult:
        self.redis: aredis.Redis = await connect(self.url, attempts=self.connect_attempts)
        self.leadership = Leadership(self.redis, self.run_id, on_conflict=self._fenced_out)
        self.nodes = Nodes(self.state, self.redis, self.keys, self.outbox, self.metrics)
        self.dispatch = Dispatcher(self.state, self.redis, self.keys, self.leadership, self.outbox, self.metrics)
        try:
            await begin()
            if self.state.phase < Phase.execution:
                await self._enter(Phase.execution)
            await self._execute()
            await self._enter(Phase.aggregation)
            results = await finish.aggregate(self.redis, self.keys, self.state)
            await self._enter(Phase.reporting)
            return await self._finish(results, "succeeded" if self.state.all_required_succeeded else "failed")
        except (LeadershipLost, FencedWriteRefused) as exc:
            # Another coordinator leads this run now: its processes, state files and keys are not ours to touch.
            self.stepped_down = True
            raise LeadershipLost(
                f"run {self.run_id}: a newer coordinator holds the leadership lease (this one had token "
                f"{self.leadership.token}); stepped down, leaving the run's processes to it"
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
                await self.nodes.stop()
            await self.leadership.close()
            await self.redis.aclose()

    async def _enter(self, phase: Phase) -> None:
        """The one place the phase changes: recorded, announced on the coordinator's channel, written to state."""
        self._check_stop()
        self.state.enter(phase, time.time())
        self.metrics.phase.set(int(phase))
        await self._broadcast({"event": "phase", "phase": int(phase), "name": phase.name})
        self._write_state("running")
        if phase is Phase.execution:
            self.executing.set()

    async def _broadcast(self, context: dict[str, Any]) -> None:
        env = Envelope(run_id=self.run_id, sender="coordinator", to="all", type=MessageType.control, context=context)
        with contextlib.suppress(Exception):  # an announcement never fails the run
            await events.publish(self.redis, self.keys, CH_COORDINATOR, env)

    async def _fenced_out(self, event: str, details: dict[str, Any]) -> None:
        """The leadership lease refused a write: another coordinator leads. Say so on the conflicts channel."""
        env = Envelope(
            run_id=self.run_id,
            sender="coordinator",
            to="all",
            type=MessageType.conflict,
            context={"event": event, **details, "resolution": "this coordinator steps down"},
        )
        with contextlib.suppress(Exception):
            await events.publish(self.redis, self.keys, CH_CONFLICTS, env)

    def request_stop(self) -> None:
        """Ask the run to stop at its next step (safe to call from a signal handler on the loop)."""
        self.stop_requested = True

    def _check_stop(self) -> None:
        if self.stop_requested:
            raise RunInterrupted(f"run {self.run_id} interrupted")

    # ------------------------------------------------------------------------------ phases 0 to 2
    async def _start(self) -> None:
        """Phases 0 to 2: pre-flight, masters, workers."""
        state = self.state
        await self._enter(Phase.preflight)
        state.checks = await run_checks(
            self.redis,
            self.url,
            state.plan,
            model=self.model,
            catalog_url=self.catalog_url,
            catalog_token=self.catalog_token,
            state_dir=state.state_dir,
        )
        got = await self.leadership.try_acquire()
        detail = (
            f"lease held with fencing token {self.leadership.token}" if got else "another coordinator holds this run"
        )
        state.checks.append(Check(name="leadership", ok=got, detail=detail))
        if not all(c.ok for c in state.checks):
            raise PreflightFailed(state.checks)
        await self._setup()
        env = child_env(self.url, str(state.state_dir), self.model, self.catalog_url, self.catalog_token)
        await self._enter(Phase.activation)
        await self.nodes.start(env, masters=True, check_stop=self._check_stop)
        await self._enter(Phase.distribution)
        await self.nodes.start(env, masters=False, check_stop=self._check_stop)

    async def _setup(self) -> None:
        """Store the plan, create the streams' consumer groups and allocate the ledger."""
        plan = self.state.plan
        await self.redis.set(self.keys.plan, plan.model_dump_json())
        await self.redis.zadd(RUNS, {self.run_id: self.state.started_at})
        for m in plan.masters:
            await ensure_group(self.redis, self.keys.inbox(m.master), GROUP_MASTERS)
        await ensure_group(self.redis, self.keys.results, GROUP_COORDINATOR)
        alloc = {"run": plan.budget.total}
        for line in plan.budget.lines:
            alloc[f"master:{line.master}"] = line.base + line.worker_pool
            alloc.update({f"worker:{w}": b for w, b in line.workers.items()})
        await Ledger(self.redis, self.keys).allocate(alloc)
        if self.metrics_port:
            self.metrics.serve(self.metrics_port)

    async def _take(self, wait_s: float) -> None:
        """Take-over: acquire the lease once its holder stops renewing it, restore the run, adopt its nodes."""
        await self.leadership.take_over(wait_s)
        self.state.took_over_at = time.time()
        self.dispatch.take(await takeover.restore(self.state, self.redis, self.keys))
        self.dispatch.dirty.update(self.state.graph.records)  # written again under our token at the first flush
        self.dispatch.cursor = "0"  # results the previous leader read and never acknowledged come first
        await self.nodes.adopt()
        detail = f"taken over with fencing token {self.leadership.token}"
        self.state.checks.append(Check(name="leadership", ok=True, detail=detail))
        await self._enter(Phase.execution)

    # --------------------------------------------------------------------------------- phase 3
    async def _execute(self) -> None:
        """Phase 3: release ready tasks, apply results, retry, reclaim from dead workers, until all ended."""
        if self.state.took_over_at is None:  # a run taken over had its releases restored instead
            self.dispatch.take(self.state.graph.initial())
        await self.dispatch.release()
        last_state = last_reap = 0.0
        while not self.state.graph.done:
            now = time.monotonic()
            self._check_stop()
            self.leadership.check()
            await self.dispatch.step()
            for node in self.nodes.dead():
                await self.nodes.replace(node)
            if now - last_reap > 1.0:
                await self._reap()
                last_reap = now
            if self.dispatch.dirty:
                await self.dispatch.flush()
            if now - last_state > 0.5:
                await self._refresh()
                last_state = now
        await self.dispatch.flush()
        await self.dispatch.release()  # the last events (completions, lineage) go out

    async def _reap(self) -> None:
        """Requeue the entries of dead workers; re-read results a stepped-down coordinator read and never
        acknowledged (they wait in the group's pending list under the same consumer name)."""
        self.dispatch.cursor = "0"
        queues = sorted({self.keys.queue(w.worker_type) for w in self.state.plan.workers})
        moved = await reaper.reclaim(self.redis, self.keys, queues)
        for task_id, consumer in moved:
            self.state.reassignments += 1
            self.metrics.reassignments.inc()
            env = Envelope(
                run_id=self.run_id,
                sender="coordinator",
                to="all",
                type=MessageType.control,
                task_id=task_id,
                context={"event": "reassigned", "from_worker": consumer, "why": "its heartbeat lapsed"},
            )
            self.outbox.add(CH_COORDINATOR, env)

    async def _refresh(self) -> None:
        """Ledger figures into the metrics, live state files and display; the run-level counters into Redis (fenced)
        for a coordinator that may take over."""
        state = self.state
        await self.leadership.confirm()
        await self.leadership.hset(self.keys.coordinator, {"state": state.snapshot().model_dump_json(by_alias=True)})
        ledger = Ledger(self.redis, self.keys)
        for level in ["run", *(f"master:{line.master}" for line in state.plan.budget.lines)]:
            use = (await ledger.account(level)).use()
            name = level.removeprefix("master:")
            state.token_use[name] = use
            if level != "run":
                self.metrics.tokens_used.labels(name).set(use.used)
                self.metrics.tokens_remaining.labels(name).set(use.remaining)
                self.metrics.token_efficiency.labels(name).set(use.efficiency)
        depth: dict[str, int] = {}
        for rec in state.graph.records.values():
            if rec.state is TaskState.released:
                depth[rec.task.worker_type] = depth.get(rec.task.worker_type, 0) + 1
        for w in {w.worker_type for w in state.plan.workers}:
            self.metrics.queue_depth.labels(w).set(depth.get(w, 0))
        await self.nodes.read_processes()
        state.running = await self.redis.hgetall(self.keys.running)
        for node in {w.node for w in state.plan.workers}:
            alive = sum(1 for p in state.processes.values() if p.node == node and p.alive and p.kind == "worker")
            self.metrics.workers_alive.labels(node).set(alive)
        self._write_state("running")

    # --------------------------------------------------------------------------------- phase 5
    async def _finish(self, results: dict[str, Any], status: str) -> RunResult:
        """Phase 5: stop processes, measure, report, archive, delete the run's keys."""
        state = self.state
        await self.nodes.stop()
        state.running = {}
        await self.nodes.read_processes()
        end = await finish.end_figures(self.redis, self.keys, state, self.prices)
        built = report.build(state, results, end, status)
        if self.model:
            await finish.summarise(self.redis, self.keys, state, built, self.model, self.prices)
        state.token_use = {k: v.use() for k, v in built.tokens.items()}
        run_dir = state.state_dir / "runs" / self.run_id
        await self._broadcast({"event": "run-ended", "status": status, "report": str(run_dir / "report.md")})
        event_log = await events.read_events(self.redis, self.keys)
        paths = report.write(
            built, state.plan, run_dir, state.state_dir, event_log, statefiles.snapshot(state, status, finished=True)
        )
        async for key in self.redis.scan_iter(match=self.keys.pattern(), count=500):
            await self.redis.delete(key)
        state.report_paths = paths.model_dump()
        self._write_state(status, finished=True)
        return RunResult(
            self.run_id, status, Path(paths.report_md), Path(paths.report_json), Path(paths.archive), built
        )

    # ------------------------------------------------------------------------------ state files
    def _write_state(self, status: str, *, finished: bool = False) -> None:
        if self.stepped_down:
            return  # the state files belong to the coordinator that leads now
        docs = statefiles.snapshot(self.state, status, finished=finished)
        statefiles.write_all(self.state.state_dir, docs)
        if self.on_update:
            self.on_update(docs[statefiles.CURRENT])
