"""A worker process: claims tasks from its type's queue stream, runs them, reports results.

Delivery is at least once: after a restart the worker first re-reads the entries it had claimed and not
acknowledged; the coordinator records only the first result of each task attempt. The worker obeys control
messages on its channel (drain, resume, cancel; ``runtime.control``) and announces each task it claims there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aredis

from cortex.coord import events
from cortex.coord.connection import Sent, connect, send
from cortex.coord.delivery import Delivery, Settle
from cortex.coord.keys import GROUP_WORKERS, RunKeys, worker_channel
from cortex.coord.outage import DEFAULT_OUTAGE_S, REDIS_DOWN, wait_for_redis
from cortex.models.messages import Envelope, MessageType
from cortex.models.result import Outcome, TaskResult
from cortex.models.task import Task
from cortex.observability import logs
from cortex.runtime.control import Control
from cortex.runtime.process import (
    Cursor,
    dispatched,
    ensure_group,
    entry_routing,
    heartbeat,
    lifecycle,
    stop_on_signals,
)
from cortex.runtime.taskrun import execute
from cortex.toolset.context import Services

_COUNT_EACH = "for _, field in ipairs(ARGV) do redis.call('HINCRBY', KEYS[1], field, 1) end"
"""Add one to each field ``ARGV`` names in hash ``KEYS[1]`` (sent as ``EVAL``: a server that lost its scripts in a
restart still runs it)."""
TIMED_OUT = "its timeout"
"""What cancels a task that ran out of time (``Worker._run``)."""
QUICK_TASK_S = 0.005
"""Tasks faster than this let the worker prefetch more; a slower one drops prefetch back to 1."""
MAX_PREFETCH = 32
SLOW_FLUSH_S = 0.01
"""Results are sent at once after a task that took longer than this, so no finished work waits on a batch; and a
task running longer than this hands the rest of its batch back to the queue."""


@dataclass
class WorkerServices:
    """The settings a worker builds its tasks' ``Services`` from, read at the process edge."""

    catalog_url: str | None = None
    catalog_token: str | None = None
    state_dir: Path = Path(".cortex")
    osv_path: Path | None = None
    osv_api: str | None = None
    model: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    target_index_url: str | None = None
    target_find_links: list[str] = field(default_factory=list)

    @classmethod
    def from_settings(cls) -> WorkerServices:
        """From ``CORTEX_*`` variables (what the supervisor passes down)."""
        from cortex.config import Settings

        s = Settings()
        links = [p for p in (s.target_find_links or "").split(os.pathsep) if p]
        return cls(
            s.catalog_url,
            s.catalog_token,
            s.state_dir,
            s.osv_path,
            s.osv_api,
            s.model,
            dict(os.environ),
            s.target_index_url,
            links,
        )

    def build(self, worker_id: str) -> Services:
        """The services of worker ``worker_id`` (its own catalog cache and write queue: no two processes append
        to the same file)."""
        catalog = None
        if self.catalog_url:
            from cortex.catalog.client import CatalogClient

            cache = self.state_dir / "catalog-cache" / worker_id
            catalog = CatalogClient(self.catalog_url, cache, token=self.catalog_token)
        return Services(
            self.state_dir,
            self.osv_path,
            self.osv_api,
            self.model,
            self.env,
            catalog,
            self.target_index_url,
            list(self.target_find_links),
        )


class Worker:
    """One worker: its queue, its control, the task it is running."""

    def __init__(self, redis: aredis.Redis, keys: RunKeys, worker_id: str, worker_type: str, services: Services):
        self.redis, self.keys, self.worker_id, self.services = redis, keys, worker_id, services
        self.queue = keys.queue(worker_type)
        self.delivery = Delivery(redis, keys)
        self.control = Control(redis, keys, worker_id)
        self.control.on_cancel = self._cancel
        self.current: tuple[str, asyncio.Task[None]] | None = None
        """The task running now, and the asyncio task that runs it (the worker's own)."""
        self.cancelled_by: str | None = None
        self.handed_back = False
        """The rest of the current batch went back to the queue."""
        self._claim: Sent | None = None
        """The current batch's announcement (``_announce``), until its replies are read."""
        self._background: set[asyncio.Future[None]] = set()

    def _cancel(self, task_id: str, by: str) -> bool:
        if self.current is None or self.current[0] != task_id or self.cancelled_by:
            return False
        self.cancelled_by = by
        self.current[1].cancel()  # thrown into the handler where it waits; ``_run`` turns it into the result
        return True

    def _hand_back_soon(self, rest: list[tuple[str, dict[str, str]]]) -> None:
        """Timer callback: the running task is slow, so the rest of its batch goes back to the queue now."""
        self.handed_back = True
        job = asyncio.ensure_future(self._hand_back(rest))
        self._background.add(job)
        job.add_done_callback(self._background.discard)

    async def _run(
        self, fields: dict[str, str], task_id: str, rest: list[tuple[str, dict[str, str]]]
    ) -> tuple[TaskResult, list[list[str]]]:
        """Execute one entry. A cancel message for it, or its timeout, cancels this (the worker's) asyncio task
        while it waits in the handler; that cancellation is taken back here and the task ends failed (a timed-out
        task may be retried, a cancelled one is not). ``rest`` (the batch's entries not started yet) goes back to
        the queue once this task has run for ``SLOW_FLUSH_S``: other workers may be idle meanwhile. Both are
        plain timers: ``asyncio.timeout`` cost an eighth of a worker's time per no-op task."""
        me = asyncio.current_task()
        assert me is not None, "a worker runs inside an asyncio task"
        task = Task.model_validate_json(fields["task"])
        self.current, self.cancelled_by = (task_id, me), None
        loop = asyncio.get_running_loop()
        deadline = loop.call_later(task.timeout_s, self._cancel, task_id, TIMED_OUT)
        timer = loop.call_later(SLOW_FLUSH_S, self._hand_back_soon, rest) if rest else None
        started = time.time()
        try:
            return await execute(self.redis, self.keys, self.worker_id, task, fields, self.services)
        except asyncio.CancelledError:
            if self.cancelled_by is None or me.cancelling() > 1:
                raise  # the worker itself is being stopped
            me.uncancel()
            timed_out = self.cancelled_by == TIMED_OUT
            result = TaskResult(
                task_id=task_id,
                attempt=int(fields["attempt"]),
                worker=self.worker_id,
                started=started,
                finished=time.time(),
                outcome=Outcome.failed,
                error=f"timed out after {task.timeout_s:g} s" if timed_out else f"cancelled by {self.cancelled_by}",
                retryable=timed_out,
                cancelled_by=None if timed_out else self.cancelled_by,
                released_ts=float(fields["released_ts"]) if fields.get("released_ts") else None,
            )
            return result, []
        finally:
            self.current = None
            deadline.cancel()
            if timer is not None:
                timer.cancel()

    async def _announce(self, claimed: dict[str, dict[str, str]]) -> Sent:
        """Mark the claimed tasks running and say so on the worker's channel: one message per claim, which may
        hold a prefetched batch. Written before the first task starts (so a worker killed in it was counted), its
        replies read after: the claim's round trip is not on the path from one task's release to its start."""
        tasks = [{"task_id": fields_task_id(f), "attempt": int(f["attempt"])} for f in claimed.values()]
        ids = [str(t["task_id"]) for t in tasks]
        claimed_at = repr(time.time())
        commands = [
            ["HSET", self.keys.running, *(x for i in ids for x in (i, self.worker_id))],
            ["HSET", self.keys.claimed_at, *(x for i in ids for x in (i, claimed_at))],
            # counted when claimed, uncounted when handed back; one command for the batch (a command per task was
            # a tenth of a worker's time per no-op task)
            ["EVAL", _COUNT_EACH, "1", self.keys.executions, *ids],
        ]
        env = Envelope(
            run_id=self.keys.run_id,
            sender=self.worker_id,
            to=self.worker_id,
            type=MessageType.task,
            task_id=ids[0] if len(ids) == 1 else None,
            context={"event": "assigned", "tasks": tasks},
        )
        commands += events.as_commands(self.keys, worker_channel(self.worker_id), env)
        return await send(self.redis, commands)

    async def _hand_back(self, entries: list[tuple[str, dict[str, str]]], *, announced: bool = True) -> None:
        """Entries claimed and not started go back to the queue for another worker (a drain arrived, or a task of
        the batch turned out slow); ``announced`` ones were counted as executions, which they were not."""
        if announced and self._claim is not None:
            await self._claim.replies()  # the counts this undoes are in before it
        for entry_id, fields in entries:
            if await self.delivery.requeue(self.queue, entry_id, self.worker_id):
                task_id = fields_task_id(fields)
                pipe = self.redis.pipeline(transaction=False)
                pipe.hdel(self.keys.running, task_id)
                pipe.hdel(self.keys.claimed_at, task_id)
                if announced:
                    pipe.hincrby(self.keys.executions, task_id, -1)  # never started
                await pipe.execute()

    async def serve(self, stop: asyncio.Event, prefetch: int, *, outage_s: float = DEFAULT_OUTAGE_S) -> None:
        """Claim, run and settle entries until ``stop``; while draining, claim nothing. A Redis outage is waited
        out (up to ``outage_s``); then the worker re-reads its own unsettled entries first."""
        await ensure_group(self.redis, self.queue, GROUP_WORKERS)
        cursor = Cursor()  # our own unacknowledged entries first (after a restart), then new ones
        count = prefetch
        while not stop.is_set():
            try:
                count = await self._turn(cursor, count, prefetch)
            except REDIS_DOWN:
                await wait_for_redis(self.redis, outage_s)
                await ensure_group(self.redis, self.queue, GROUP_WORKERS)  # a server that lost its data lost it too
                cursor.value = "0"

    async def _turn(self, cursor: Cursor, count: int, prefetch: int) -> int:
        """One read of the queue and the tasks it brought; returns the prefetch for the next read."""
        if self.control.draining:
            self.control.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.control.changed.wait(), 0.5)
            return count
        redelivered = cursor.pending
        reply = await self.redis.xreadgroup(
            GROUP_WORKERS, self.worker_id, {self.queue: cursor.value}, count=count, block=500
        )
        entries = reply[0][1] if reply else []
        cursor.after_read(bool(entries))
        gone = [entry_id for entry_id, fields in entries if not fields]
        if gone:  # pending entries the stream no longer holds (trimmed, or lost with a crashed server)
            await self.redis.xack(self.queue, GROUP_WORKERS, *gone)
            entries = [(i, f) for i, f in entries if f]
        if not entries:
            return count
        if self.control.draining:  # the drain arrived while the read was waiting: take none of it
            await self._hand_back(entries, announced=False)
            return count
        self._claim = claim = await self._announce(dict(entries))
        try:
            quick = await self._run_batch(entries, redelivered)
        finally:
            self._claim = None
            await claim.close()  # read by now, unless the batch broke off (Redis away, the worker stopping)
        return min(MAX_PREFETCH, count * 2) if quick else prefetch

    async def _run_batch(self, entries: list[tuple[str, dict[str, str]]], redelivered: bool) -> bool:
        """Run a claimed batch in order and settle each task; True when every task was quick."""
        settles: list[Settle] = []  # sent together, each atomic by itself
        quick, self.handed_back = True, False
        for i, (entry_id, fields) in enumerate(entries):
            if self.control.draining:
                await self._hand_back(entries[i:])
                break
            result, effects = await self._run(fields, fields_task_id(fields), entries[i + 1 :])
            # delivered before, to an incarnation that died or a reply that was lost
            result.redelivered = redelivered
            settles.append((self.queue, entry_id, result, effects))
            took = result.finished - result.started
            quick = quick and took < QUICK_TASK_S
            if took >= SLOW_FLUSH_S:
                await self._settle(settles)
                settles = []
            if self.handed_back:
                break  # the rest of the batch went back to the queue while this task ran
        await self._settle(settles)
        return quick

    async def _settle(self, settles: list[Settle]) -> None:
        """Send the results of the tasks that ended, then log them (after: the line is not on the path from a
        task's end to its dependents' release). One ``tasks-ended`` line per settle (a prefetched batch of quick
        tasks, or one slow task): a line per task was a fifth of a worker's time per no-op task."""
        if not settles:
            return
        # after the claim, on its connection while its replies are unread: the claim is in before the result that
        # ends it, without a wait for its replies on the path from the task's end to its dependents' release
        settled = await self.delivery.settle(settles, after=self._claim)
        if self._claim is not None:
            await self._claim.replies()  # an error the claim met is raised here, as before
        direct = [r for r in settled.released if r.direct]
        if direct:  # the masters' events for what went straight to a queue (the inbox's entries, they dispatch)
            by_master: dict[str, list[tuple[str, str, int, int]]] = {}
            for r in direct:
                by_master.setdefault(r.master, []).append((r.task_id, r.worker_type, 1, r.priority))
            commands = [c for m, tasks in by_master.items() for c in dispatched(self.keys, m, self.worker_id, tasks)]
            await (await send(self.redis, commands)).replies()
        results = [s[2] for s in settles]
        failed = any(r.outcome is Outcome.failed for r in results)
        logs.event("tasks-ended", logging.WARNING if failed else logging.INFO, tasks=[_ended(r) for r in results])


def _ended(result: TaskResult) -> dict[str, str | int | float]:
    """What a worker's log says of a task that ended."""
    line: dict[str, str | int | float] = {
        "task": result.task_id,
        "attempt": result.attempt,
        "outcome": result.outcome.value,
        "s": round(result.finished - result.started, 3),
    }
    if result.error:
        line["error"] = result.error
    return line


def fields_task_id(fields: dict[str, str]) -> str:
    """The task id of a queue entry, without validating the whole task."""
    return entry_routing(fields)[0]


async def run_worker(
    url: str,
    run_id: str,
    worker_id: str,
    worker_type: str,
    *,
    prefetch: int = 1,
    services: WorkerServices | None = None,
    outage_s: float = DEFAULT_OUTAGE_S,
) -> None:
    """Serve the queue of ``worker_type`` as consumer ``worker_id`` until SIGTERM.

    Prefetch adapts: while tasks finish in under ``QUICK_TASK_S`` the worker claims up to ``MAX_PREFETCH``
    entries per read and reports their results in one pipeline; one slow task drops it back to ``prefetch`` and
    hands the rest of its batch back to the queue, so long tasks are never hoarded by one worker while others
    idle.
    """
    redis = await connect(url, wait_s=outage_s)  # started (or restarted) while Redis is away: wait for it
    keys = RunKeys(run_id)
    stop = asyncio.Event()
    stop_on_signals(stop)
    svc = (services or WorkerServices()).build(worker_id)
    worker = Worker(redis, keys, worker_id, worker_type, svc)
    beat = asyncio.create_task(heartbeat(redis, keys, worker_id, stop))
    follow = asyncio.create_task(worker.control.follow(stop))
    try:
        async with lifecycle(redis, keys, worker_id, worker_channel(worker_id), {"worker_type": worker_type}):
            await worker.serve(stop, prefetch, outage_s=outage_s)
    finally:
        stop.set()
        await beat
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
        if svc.catalog is not None:
            with contextlib.suppress(Exception):  # last chance for writes queued while the API was down
                await asyncio.wait_for(svc.catalog.replay(), 3)
            await svc.catalog.aclose()
        await redis.aclose()
