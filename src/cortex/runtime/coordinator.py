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
import logging
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
from cortex.coord.keys import CH_CONFLICTS, CH_COORDINATOR, RunKeys
from cortex.coord.outage import REDIS_DOWN, wait_for_redis
from cortex.errors import (
    CortexError,
    FencedWriteRefused,
    LeadershipLost,
    PreflightFailed,
    RunErrored,
    RunInterrupted,
    StartFailed,
)
from cortex.models import Plan
from cortex.models.messages import Envelope, MessageType
from cortex.models.phase import Phase
from cortex.models.report import Outage, Report
from cortex.models.state import Check
from cortex.observability import logs
from cortex.observability.annotations import Annotations
from cortex.observability.metrics import RunMetrics
from cortex.runtime import ending, finish, gauges, runindex, setup, statefiles, takeover
from cortex.runtime.dispatch import Dispatcher
from cortex.runtime.leadership import Leadership
from cortex.runtime.nodes import Nodes, child_env
from cortex.runtime.options import RunOptions
from cortex.runtime.preflight import run_checks
from cortex.runtime.process import HEARTBEAT_TTL_MS, frozen_heap
from cortex.runtime.runstate import RunState
from cortex.runtime.stalls import Stalls
from cortex.toolset.workdirs import reclaim_run


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
    live display); ``notice`` with what an operator should read now (nodes awaited, processes moved)."""

    def __init__(
        self,
        plan: Plan,
        redis_url: str,
        state_dir: Path,
        options: RunOptions | None = None,
        *,
        run_id: str | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.url = redis_url
        self.o = o = options or RunOptions()
        self.on_update, self.notice = on_update, notice
        run_id = run_id or time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.state = RunState.new(plan, run_id, state_dir, model_configured=o.model is not None)
        self.state.redis_display = redact_url(redis_url)
        self.keys = RunKeys(run_id)
        self.metrics = RunMetrics()
        self.outbox = Outbox(self.keys)
        self.stop_requested = False
        self.stepped_down = False
        self.executing = asyncio.Event()
        """Set when phase 3 (parallel execution) begins."""
        self._current: dict[str, Any] = {}
        self._writer = statefiles.Writer(self.state.state_dir)
        """The live state document last written."""
        self.annotations = Annotations(o.grafana_url, o.grafana_token) if o.grafana_url else None

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
        self.redis: aredis.Redis = await connect(self.url, attempts=self.o.connect_attempts)
        self.leadership = Leadership(self.redis, self.run_id, on_conflict=self._fenced_out, outage_s=self.o.outage_s)
        self.nodes = Nodes(
            self.state,
            self.redis,
            self.keys,
            self.outbox,
            self.metrics,
            pool=self.o.pool,
            node_wait_s=self.o.node_wait_s,
            notice=self.notice,
        )
        self.dispatch = Dispatcher(self.state, self.redis, self.keys, self.leadership, self.outbox, self.metrics)
        self.dispatch.reuse = self.o.reuse and self.state.plan.cache_fingerprint is not None
        self.stalls = Stalls(self.state, self.redis, self.keys, self.outbox, self.o.stall_s)
        self.reap_after = 0.0
        log_file = self.state.state_dir / "runs" / self.run_id / "logs" / "coordinator.jsonl"
        self.log = logs.attach(log_file, "coordinator", self.o.log_level)
        try:
            await begin()
            if self.state.phase < Phase.execution:
                await self._enter(Phase.execution)
            with frozen_heap():
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
        except PreflightFailed:
            with contextlib.suppress(Exception):
                self._write_state("aborted")
            raise  # nothing was started: nothing to report
        except (RunInterrupted, asyncio.CancelledError, KeyboardInterrupt) as exc:
            with contextlib.suppress(Exception):
                self._write_state("aborted")
            with contextlib.suppress(Exception):
                await self.nodes.stop()
                await asyncio.to_thread(reclaim_run, self.state.state_dir, self.run_id, self.state.plan)
            if isinstance(exc, RunInterrupted) or not self.stop_requested:
                raise
            raise RunInterrupted(f"run {self.run_id} interrupted") from exc
        except Exception as exc:
            if self.stop_requested:  # whatever broke while stopping (a child hit by the same Ctrl-C) is the stop
                with contextlib.suppress(Exception):
                    self._write_state("aborted")
                raise RunInterrupted(f"run {self.run_id} interrupted") from exc
            raise await self._end_in_error(exc) from exc
        finally:
            if not self.stepped_down:
                await self.nodes.stop()
            await self.leadership.close()
            await self.redis.aclose()
            self._writer.close()
            logs.detach(self.log)

    async def _end_in_error(self, exc: Exception) -> CortexError:
        """The run broke: end it with a report and an archive that say ``status: error`` and why. A failure to
        start processes keeps its own exit code; anything else is ``RunErrored``."""
        why = f"run {self.run_id} ended in error: {type(exc).__name__}: {exc}"
        logs.event("run-error", logging.ERROR, error=why)
        try:
            _, paths = await ending.close_in_error(self._ending(), exc)
            self._write_state("error", finished=True)
            report_md: str | None = paths.report_md
        except Exception:  # not even the report could be written (a full disk): the message still says why
            report_md = None
        if isinstance(exc, StartFailed):
            return StartFailed(f"{exc}; report: {report_md}" if report_md else str(exc))
        return RunErrored(why, report_md)

    async def _enter(self, phase: Phase) -> None:
        """The one place the phase changes: recorded, announced on the coordinator's channel, written to state."""
        self._check_stop()
        self.state.enter(phase, time.time())
        logs.event("phase", run_id=self.run_id, phase=int(phase), phase_name=phase.name)
        self.metrics.phase.set(int(phase))
        await self._broadcast({"event": "phase", "phase": int(phase), "name": phase.name})
        if self.annotations is not None:
            await self.annotations.phase(self.run_id, int(phase), phase.name, time.time())
        self._write_state("running")
        await self._index()
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
            model=self.o.model,
            catalog_url=self.o.catalog_url,
            catalog_token=self.o.catalog_token,
            state_dir=state.state_dir,
            pool=self.o.pool,
        )
        got = await self.leadership.try_acquire()
        detail = (
            f"lease held with fencing token {self.leadership.token}" if got else "another coordinator holds this run"
        )
        state.checks.append(Check(name="leadership", ok=got, detail=detail))
        if not all(c.ok for c in state.checks):
            raise PreflightFailed(state.checks)
        await self.nodes.place(self._check_stop)
        await self._setup()
        env = self._child_env()
        await self._enter(Phase.activation)
        await self.nodes.start(env, masters=True, check_stop=self._check_stop)
        await self._enter(Phase.distribution)
        await self.nodes.start(env, masters=False, check_stop=self._check_stop)

    def _child_env(self) -> dict[str, str]:
        return child_env(self.url, str(self.state.state_dir), self.o.model, self.o.catalog_url, self.o.catalog_token)

    async def _setup(self) -> None:
        """Phase 0's end: the run's keys (``setup.prepare``), its gauges and its metrics endpoint."""
        await setup.prepare(self.redis, self.keys, self.state, self.nodes.pool, self.o)
        gauges.start(self.metrics, self.state)
        if self.o.metrics_port:
            self.metrics.serve(self.o.metrics_port, self.o.metrics_host)

    async def _take(self, wait_s: float) -> None:
        """Take-over: acquire the lease once its holder stops renewing it, restore the run, adopt its nodes."""
        await self.leadership.take_over(wait_s)
        self.state.took_over_at = time.time()
        self.dispatch.take(await takeover.restore(self.state, self.redis, self.keys))
        self.dispatch.dirty.update(self.state.graph.records)  # written again under our token at the first flush
        self.dispatch.cursor = "0"  # results the previous leader read and never acknowledged come first
        self.nodes.use_pool(await self.redis.hget(self.keys.settings, "pool"))
        restarted = await self.nodes.adopt(self._child_env())
        detail = f"taken over with fencing token {self.leadership.token}"
        if restarted:
            detail += f"; started again the node agents of {', '.join(restarted)} (they had stopped)"
        self.state.checks.append(Check(name="leadership", ok=True, detail=detail))
        await self._enter(Phase.execution)

    # --------------------------------------------------------------------------------- phase 3
    async def _execute(self) -> None:
        """Phase 3: release ready tasks, apply results, retry, reclaim from dead workers, until all ended."""
        if self.state.took_over_at is None:  # a run taken over had its releases restored instead
            self.dispatch.take(self.state.graph.initial())
        await self.dispatch.release()
        last_state = 0.0
        last_ok = time.monotonic()
        while not self.state.graph.done:
            now = time.monotonic()
            self._check_stop()
            self.leadership.check()
            try:
                await self.dispatch.step()
                if now > self.reap_after:  # once a second, and not until agents beat again after an outage
                    for node in await self.nodes.dead():
                        await self.nodes.replace(node)
                    await self.dispatch.reap()
                    self.reap_after = now + 1.0
                await self.dispatch.flush_if_due(now)
                if now - last_state > 0.5:
                    await self._refresh()
                    last_state = now
                stall = await self.stalls.check(now)
                if stall is not None:
                    self.dispatch.dirty.update(stall.requeued)
                last_ok = time.monotonic()
            except REDIS_DOWN as exc:
                await self._ride_out(exc, last_ok)
        await self.dispatch.release()  # the last records and events (completions, lineage) go out
        await self._refresh()  # the gauges as the phase ended (the last refresh may predate the last results)

    async def _ride_out(self, exc: BaseException, last_ok: float) -> None:
        """Redis went away: wait for it (up to ``outage_s``, then the run ends in error), take the lease back if
        no newer coordinator exists, and resume: unacknowledged results read again, every record written again
        (a server restarted from its append-only file may have lost the last writes), and no worker's entries
        reclaimed until the workers have had a heartbeat's time to beat again."""
        # measured from the last turn that reached Redis: the client's own retries spent the first seconds
        outage = Outage(began=time.time() - (time.monotonic() - last_ok), error=f"{type(exc).__name__}: {exc}"[:300])
        self.state.outages.append(outage)
        self.metrics.redis_up.set(0)
        logs.event("redis-outage", logging.WARNING, error=outage.error)
        outage.lasted_s = round(await wait_for_redis(self.redis, self.o.outage_s, since=last_ok), 3)
        logs.event("redis-back", lasted_s=outage.lasted_s)
        self.metrics.redis_up.set(1)
        await self.leadership.confirm()  # a newer token meanwhile: LeadershipLost, this coordinator steps down
        await self.dispatch.recover()
        self.dispatch.cursor = "0"
        self.dispatch.dirty.update(self.state.graph.records)
        self.reap_after = time.monotonic() + HEARTBEAT_TTL_MS / 1000 + 1.0
        self.stalls.progressed(time.monotonic())

    async def _refresh(self) -> None:
        """The metrics (``gauges``), live state files and display; the run-level counters into Redis (fenced) for
        a coordinator that may take over."""
        state = self.state
        await self.leadership.confirm()
        await self.leadership.hset(self.keys.coordinator, {"state": state.snapshot().model_dump_json(by_alias=True)})
        await self.nodes.read_processes()
        state.running = await self.redis.hgetall(self.keys.running)
        held = list(state.running)  # only these: claimed-at may also hold tasks of workers that died holding them
        since = await self.redis.hmget(self.keys.claimed_at, held) if held else []
        state.claimed_at = {task: at for task, at in zip(held, since, strict=True) if at is not None}
        quiet_s = time.monotonic() - self.stalls.last_progress
        await gauges.refresh(self.metrics, state, self.redis, self.keys, quiet_s)
        self._write_state("running", background=True)
        await self._index()

    async def _index(self) -> None:
        """The live state into the run index, for ``cortex status`` on any host (a failure never fails the run)."""
        with contextlib.suppress(Exception):
            await runindex.publish_state(self.redis, self.run_id, self._current)

    # --------------------------------------------------------------------------------- phase 5
    async def _finish(self, results: dict[str, Any], status: str) -> RunResult:
        """Phase 5 (``ending.close``): a run whose fixes are not all on their branches failed."""

        if self.annotations is not None:
            a = self.annotations
            said = f"{a.sent} sent to {a.url}" + (
                f", {len(a.failed)} failed: {'; '.join(a.failed[:3])}" if a.failed else ""
            )
            self.state.notes.append(f"Grafana annotations of the phases: {said}")

        async def announce(final: str, report_md: Path) -> None:
            await self._broadcast({"event": "run-ended", "status": final, "report": str(report_md)})

        built, paths = await ending.close(
            self._ending(), results, status, prices=self.o.prices, model=self.o.model, on_ended=announce
        )
        status = built.status
        logs.event("run-ended", run_id=self.run_id, status=status, report=paths.report_md)
        self._write_state(status, finished=True)
        return RunResult(
            self.run_id, status, Path(paths.report_md), Path(paths.report_json), Path(paths.archive), built
        )

    def _ending(self) -> ending.Ending:
        return ending.Ending(self.state, self.redis, self.keys, self.nodes)

    # ------------------------------------------------------------------------------ state files
    def _write_state(self, status: str, *, finished: bool = False, background: bool = False) -> None:
        """Snapshot the run and write the live state files (``background``: see ``statefiles.Writer``)."""
        if self.stepped_down:
            return  # the state files belong to the coordinator that leads now
        docs = statefiles.snapshot(self.state, status, finished=finished)
        self._writer.write(docs, background=background)
        self._current = docs[statefiles.CURRENT]
        if self.on_update:
            self.on_update(docs[statefiles.CURRENT])
