"""Phase 3's moving parts: results in, task records out (fenced), releases to the masters' inboxes, handoffs
admitted, and the events that describe all of it.

The order of one turn matters (``step``): read results; apply them; then, in one fenced script, write the changed
records under the leadership token, release what became ready, and only then acknowledge the results. A task
released now may read its dependencies' records (the aggregation task does), and a coordinator that lost its lease
writes, releases and acknowledges nothing: the results it read stay pending for the coordinator that leads.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import json
import time
from typing import Any

import redis.asyncio as aredis

from cortex.coord.events import Outbox
from cortex.coord.keys import CH_CONFLICTS, CH_COORDINATOR, CH_LINEAGE, GROUP_COORDINATOR, RunKeys, master_channel
from cortex.models.handoff import Handoff, HandoffDecision
from cortex.models.messages import Envelope, MessageType
from cortex.models.result import Outcome, TaskResult
from cortex.models.task import TaskState
from cortex.observability.metrics import RunMetrics
from cortex.runtime import cache, reaper
from cortex.runtime.entries import Entries
from cortex.runtime.graphrun import Changes
from cortex.runtime.handoffs import decide
from cortex.runtime.leadership import Leadership
from cortex.runtime.lineage import task_lineage
from cortex.runtime.records import TaskRecord
from cortex.runtime.runstate import RunState

FLUSH_EVERY_S = 0.1
"""While results keep coming, how long a released task's record may wait to be written (``flush_if_due``): a
coordinator taking over within it releases the task again (its first result counts, the other is a duplicate)."""
RELEASE_SLICE = 250
"""The most tasks one fenced script releases (``release``)."""
GATHER_S = 0.005
"""After a turn that read results, how long the coordinator lets the next ones gather before reading again
(``step``). Settles release the tasks that follow a success, so a dependent's start does not wait for this; what
the coordinator releases itself (retries, tasks that wait for every task, dependents of failures) waits at most
this long more. One result per turn, as a chain of tasks delivers them, cost the coordinator 1.6-1.7 ms of CPU per
task on the cores the hops wait for; gathered, about 1.1 ms (BENCHMARKS.md)."""


class Dispatcher:
    """Applies results to the run's state and sends what follows from them."""

    def __init__(
        self,
        state: RunState,
        redis: aredis.Redis,
        keys: RunKeys,
        leadership: Leadership,
        outbox: Outbox,
        metrics: RunMetrics,
    ) -> None:
        self.state, self.redis, self.keys, self.leadership = state, redis, keys, leadership
        self.outbox, self.metrics = outbox, metrics
        self.dirty: set[str] = set()
        """Task records changed since the last fenced write."""
        self.retries: list[tuple[float, str]] = []
        """Tasks waiting out a retry backoff: (when, task id), a heap."""
        self.cursor = ">"
        """``0`` re-reads results this consumer read and never acknowledged (after a take-over)."""
        self.lineage: list[dict[str, Any]] = []
        """Lineage of the tasks ended since the last release, announced with it."""
        self.ended: dict[str, list[dict[str, Any]]] = {}
        """By master: the results of its tasks ended since the last release, announced with it."""
        self.node_of = {w.worker_id: w.node for w in state.plan.workers}
        self.reuse = False
        """Reuse recorded results (incremental runs): set by the coordinator from its options and the plan."""
        self.missed: set[str] = set()
        """Tasks whose recorded result was looked for and not found: they run."""
        self.busy = False
        """The last turn read results."""
        self._flush_at = 0.0
        self._scripts = 0
        self._in_flight: tuple[str, list[str], list[list[str]]] | None = None
        """The release script being sent: its mark, its tasks and its events (``recover``)."""
        self._resend: list[list[str]] = []
        self.entries = Entries(keys, state.plan.targets)
        # the metrics' children by label values: ``labels()`` validates and locks, a tenth of a busy turn's time
        self._ended = functools.cache(metrics.tasks.labels)
        self._took = functools.cache(metrics.duration.labels)

    # ----------------------------------------------------------------------------------- applying
    def take(self, changes: Changes) -> None:
        """Announce the tasks a change ended (what it made ready waits in ``GraphRun.ready``)."""
        for rec in changes.ended:
            self.dirty.add(rec.task.id)
            self._ended(rec.task.master, rec.state.value).inc()
            if rec.duration_s is not None:
                self._took(rec.task.master).observe(rec.duration_s)
            self._completed(rec)

    def _completed(self, rec: TaskRecord) -> None:
        """A task ended: queue its result for its master's channel and its lineage edges, both sent with the
        next release (``_announce``)."""
        ended: dict[str, Any] = {
            "task_id": rec.task.id,
            "state": rec.state.value,
            "attempt": rec.attempt,
            "worker": rec.worker,
            "duration_s": rec.duration_s,
        }
        if rec.error or rec.reason:
            ended["why"] = rec.error or rec.reason
        self.ended.setdefault(rec.task.master, []).append(ended)
        nodes, edges = task_lineage(rec, self.node_of)
        self.lineage.append(
            {"task": rec.task.id, "worker": rec.worker, "master": rec.task.master, "nodes": nodes, "edges": edges}
        )

    def _announce(self) -> None:
        """The results and lineage edges of the tasks that ended since the last release: one result message per
        master and one lineage message, per turn. A busy coordinator ends thousands of tasks a second; a message
        per task cost it, Redis and every master (which hears its own channel) more than the tasks themselves."""
        run_id = self.state.run_id
        ended, self.ended = self.ended, {}
        for master, tasks in ended.items():
            self.outbox.add(
                master_channel(master),
                Envelope(
                    run_id=run_id,
                    sender="coordinator",
                    to=f"{master}-master",
                    type=MessageType.result,
                    task_id=str(tasks[0]["task_id"]) if len(tasks) == 1 else None,
                    context={"tasks": tasks},
                ),
            )
        if not self.lineage:
            return
        tasks, self.lineage = self.lineage, []
        self.outbox.add(
            CH_LINEAGE,
            Envelope(
                run_id=run_id,
                sender="coordinator",
                to="all",
                type=MessageType.lineage,
                task_id=str(tasks[0]["task"]) if len(tasks) == 1 else None,
                context={"recorded_in": "run", "tasks": tasks},
            ),
        )

    def _conflict(self, task_id: str | None, **context: object) -> None:
        self.outbox.add(
            CH_CONFLICTS,
            Envelope(
                run_id=self.state.run_id,
                sender="coordinator",
                to="all",
                type=MessageType.conflict,
                task_id=task_id,
                context=dict(context),
            ),
        )

    def apply(self, result: TaskResult) -> None:
        """Apply one result read from the results stream."""
        graph = self.state.graph
        changes = graph.apply(result, time.time())
        self.dirty.add(result.task_id)
        if changes.duplicate:
            rec = graph.records.get(result.task_id)
            self._conflict(
                result.task_id,
                event="duplicate-result",
                worker=result.worker,
                attempt=result.attempt,
                resolution="ignored: only the first result of a task's current attempt is applied"
                + (f" (the task is {rec.state.value}, attempt {rec.attempt})" if rec else ""),
            )
            return
        if changes.retry_at is not None:
            heapq.heappush(self.retries, (changes.retry_at, result.task_id))
            self.metrics.retries.inc()
        graph.records[result.task_id].handoffs = list(result.handoffs)
        self.take(changes)
        if result.redelivered:  # a restarted worker took over its own dead entry
            self.state.reassignments += 1
            self.metrics.reassignments.inc()
        for h in result.handoffs:
            self.admit_handoff(graph.records[result.task_id], h)

    def admit_handoff(self, source: TaskRecord, h: Handoff) -> HandoffDecision:
        """Decide on one handoff, record the decision, tell the receiving master, and admit the task."""
        state = self.state
        decision, task = decide(state.plan, state.graph.records, state.handoffs, source, h)
        state.handoffs.append(decision)
        self.metrics.handoffs.labels(decision.decision).inc()
        self.outbox.add(
            master_channel(h.to),
            Envelope(
                run_id=state.run_id,
                sender=f"{source.task.master}-master",
                to=f"{h.to}-master",
                type=MessageType.handoff,
                task_id=decision.task,
                context=decision.model_dump(by_alias=True),
            ),
        )
        if decision.decision.startswith("duplicate"):
            self._conflict(
                decision.task, event="duplicate-handoff", source_task=source.task.id, resolution=decision.decision
            )
        if task is not None:
            self.take(state.graph.admit(task))
        return decision

    # ----------------------------------------------------------------------------------- sending
    def due_retries(self, now: float) -> None:
        """Queue the tasks whose retry backoff has passed."""
        while self.retries and self.retries[0][0] <= now:
            _, task_id = heapq.heappop(self.retries)
            self.state.graph.retry_due(task_id)

    async def flush_if_due(self, now: float) -> None:
        """``flush`` on a turn that read no result, or ``FLUSH_EVERY_S`` after the last: while results keep
        coming, records of released tasks go out with the next release's script (a task that ends meanwhile is
        written once, as it ended), not in a round trip of their own after every turn."""
        if self.dirty and (not self.busy or now >= self._flush_at):
            await self.flush()

    async def flush(self) -> None:
        """Write changed task records under the leadership token (refused if a newer coordinator exists)."""
        self._flush_at = time.monotonic() + FLUSH_EVERY_S
        dirty, self.dirty = self.dirty, set()
        records = self.state.graph.records
        await self.leadership.hset(self.keys.tasks, {i: records[i].to_json() for i in sorted(dirty)})

    async def release(self, *, ack: list[str] | None = None) -> None:
        """Send the ready tasks to their masters' inboxes, with the changed task records, the events waiting in the
        outbox and the acknowledgement of the results ``ack``: one fenced script (one per ``RELEASE_SLICE`` tasks,
        the acknowledgement in the last), so one round trip, and nothing of it when a newer coordinator holds the
        run (a coordinator that lost its lease releases nothing, and leaves the results it read unacknowledged for
        the one that leads)."""
        if self.reuse and self.state.graph.ready:
            await self._reuse_recorded()
        self._announce()
        ready = list(self.state.graph.ready.values())
        if not ready and not len(self.outbox) and not ack and not self.dirty and not self._resend:
            return
        # the records as the results left them; the released ones are written on the next flush, off the path from
        # a result to the release it causes (serialising them here cost a chain about half a millisecond a hop)
        dirty, self.dirty = self.dirty, set()
        records = self.state.graph.records
        mapping = {i: records[i].to_json() for i in sorted(dirty)}
        tail, self._resend = self._resend + self.outbox.drain_commands(), []
        if ack:  # after the releases: a result is acknowledged only once what it made ready is sent
            tail.append(["XACK", self.keys.results, GROUP_COORDINATOR, *ack])
        # many ready at once (a wide graph's start) go in slices, each its own fenced script: the first tasks reach
        # the masters while the coordinator still packs the rest, and Redis is never held by one long script
        for start in range(0, max(1, len(ready)), RELEASE_SLICE):
            part = ready[start : start + RELEASE_SLICE]
            commands = self._releases(part)
            events = tail if start + RELEASE_SLICE >= len(ready) else []
            self._scripts += 1
            mark = f"{self.leadership.token}:{self._scripts}"
            self._in_flight = (mark, [r.task.id for r in part], events)
            commands += [*events, ["HSET", self.keys.coordinator, "released", mark]]
            await self.leadership.hset_then(self.keys.tasks, mapping, commands)
            self._in_flight, mapping = None, {}

    async def recover(self) -> None:
        """After a Redis outage: did the release script in flight when Redis went away run? A script runs whole or
        not at all, and its mark is written with it; when the mark is not there (the server died before running
        it, or lost it on restart), its tasks are released again and its events sent again. Before, they stayed
        released in the coordinator's eyes and waited for the stall check (two minutes) to notice."""
        if self._in_flight is None:
            return
        (mark, task_ids, events), self._in_flight = self._in_flight, None
        if await self.redis.hget(self.keys.coordinator, "released") == mark:
            return
        self.entries.forget_armed()
        graph = self.state.graph
        for task_id in task_ids:
            if graph.records[task_id].state is TaskState.released:
                graph.requeue(graph.records[task_id], "its release was lost with Redis's outage; released again")
        self._resend = [c for c in events if c[0] != "XACK"]  # results not acknowledged are read again anyway

    def _releases(self, ready: list[TaskRecord]) -> list[list[str]]:
        """Mark ``ready`` released; the commands that add them to their masters' inboxes."""
        now = time.time()
        stamp = repr(now)
        commands: list[list[str]] = []
        for rec in ready:
            self.state.graph.mark_released(rec, now)
            self.dirty.add(rec.task.id)
            commands.append(self.entries.release(rec, stamp))
            commands += self.entries.arm(self.state.graph, rec.task.id)
        return commands

    def released_by_settle(self, task_ids: list[str], at: float) -> None:
        """A worker's settle released ``task_ids`` (read from its result entry, before its result is applied: the
        result must not release them again)."""
        graph = self.state.graph
        for task_id in task_ids:
            if graph.released_by_settle(task_id, at) is not None:
                self.dirty.add(task_id)
            else:
                rec = graph.records.get(task_id)
                self._conflict(
                    task_id,
                    event="released-after-decided",
                    resolution="a superseded attempt's late success released it; its result will be a duplicate"
                    + (f" (the task is {rec.state.value})" if rec else ""),
                )

    async def _reuse_recorded(self) -> None:
        """End the ready tasks whose recorded result can be reused with that result, as if a worker had sent it
        (its handoffs admitted again, its dependents made ready, which may be reused in turn). A task is reused on
        its first attempt only, and only when every task it depends on was reused too."""
        graph = self.state.graph
        while True:
            candidates = [
                rec
                for rec in graph.ready.values()
                if rec.task.cache_key
                and rec.attempt == 0
                and rec.task.id not in self.missed
                and all(graph.records[d].reused_from for d in rec.task.depends_on)
            ]
            if not candidates:
                return
            found = await cache.lookup(self.redis, self.state.state_dir, [r.task.cache_key or "" for r in candidates])
            for rec in candidates:
                entry = found.get(rec.task.cache_key or "")
                if entry is None:
                    self.missed.add(rec.task.id)
                    continue
                now = time.time()
                graph.mark_released(rec, now)
                rec.reused_from = entry.run_id
                self.apply(
                    TaskResult(
                        task_id=rec.task.id,
                        attempt=rec.attempt,
                        worker="cache",
                        started=now,
                        finished=now,
                        outcome=Outcome.succeeded,
                        output=entry.output,
                        handoffs=entry.handoffs,
                    )
                )
                rec.dispatch_latency_s.clear()  # nothing was dispatched

    async def reap(self) -> None:
        """Requeue the entries of dead workers; re-read results a stepped-down coordinator read and never
        acknowledged (they wait in the group's pending list under the same consumer name)."""
        self.cursor = "0"
        queues = sorted({self.keys.queue(w.worker_type) for w in self.state.plan.workers})
        for task_id, consumer in await reaper.reclaim(self.redis, self.keys, queues):
            self.state.reassignments += 1
            self.metrics.reassignments.inc()
            env = Envelope(
                run_id=self.state.run_id,
                sender="coordinator",
                to="all",
                type=MessageType.control,
                task_id=task_id,
                context={"event": "reassigned", "from_worker": consumer, "why": "its heartbeat lapsed"},
            )
            self.outbox.add(CH_COORDINATOR, env)

    async def step(self) -> None:
        """One turn of phase 3 (see the module's docstring for why in this order)."""
        self.due_retries(time.time())
        cursor = self.cursor
        if self.busy:
            await asyncio.sleep(GATHER_S)
        reply = await self.redis.xreadgroup(
            GROUP_COORDINATOR, "coordinator", {self.keys.results: cursor}, count=1000, block=50
        )
        ids = []
        for entry_id, fields in reply[0][1] if reply else []:
            ids.append(entry_id)
            if "released" in fields:
                self.released_by_settle(json.loads(fields["released"]), float(fields["released_ts"]))
            self.apply(TaskResult.model_validate_json(fields["result"]))
        if cursor == "0" and not ids:
            self.cursor = ">"
        self.busy = bool(ids)
        # two round trips per turn that has results: the read, then records, releases, events and acknowledgements
        # in one fenced script (four round trips of their own cost a chain of tasks about a millisecond a hop)
        await self.release(ack=ids)
