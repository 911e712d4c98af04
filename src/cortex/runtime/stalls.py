"""Run-level stall detection: when nothing has progressed for ``stall_s`` (no task ended, none was released), the
coordinator looks at every released task and every process, says what it found in the event stream, and acts.

A released task a live worker holds is a long task: it is named and left to finish or time out. A released task
no live worker holds went nowhere (its release was lost in a Redis crash, or the master it went to is stuck): it
is released again as a new attempt. Masters and workers without a heartbeat are named; their supervisors restart
them, and a node whose supervisor is gone is replaced by the coordinator's node watch.
"""

from __future__ import annotations

import time

import redis.asyncio as aredis

from cortex.coord.events import Outbox
from cortex.coord.keys import CH_COORDINATOR, RunKeys
from cortex.models.messages import Envelope, MessageType
from cortex.models.report import Stall
from cortex.models.task import TaskState
from cortex.runtime.runstate import RunState

DEFAULT_STALL_S = 120.0


class Stalls:
    """Watches one run's progress."""

    def __init__(self, state: RunState, redis: aredis.Redis, keys: RunKeys, outbox: Outbox, stall_s: float) -> None:
        self.state, self.redis, self.keys, self.outbox = state, redis, keys, outbox
        self.stall_s = stall_s
        self.last_progress = time.monotonic()
        self._seen = -1

    def progressed(self, now: float) -> None:
        """Start counting quiet time from ``now`` (a take-over, the end of a Redis outage)."""
        self.last_progress = now

    async def check(self, now: float) -> Stall | None:
        """Note progress; after ``stall_s`` without any, look and act (then wait ``stall_s`` again). Returns the
        stall when there was one."""
        seen = self.state.graph.progress
        if seen != self._seen:
            self._seen, self.last_progress = seen, now
            return None
        if now - self.last_progress < self.stall_s:
            return None
        stall = await self.unstick(now - self.last_progress)
        self.last_progress = now
        return stall

    async def unstick(self, quiet_s: float) -> Stall:
        """Name what is stuck, release again what no live worker holds; returns what was found."""
        graph = self.state.graph
        running: dict[str, str] = await self.redis.hgetall(self.keys.running)
        ids = [f"master-{m.master}" for m in self.state.plan.masters] + [w.worker_id for w in self.state.plan.workers]
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.exists(self.keys.heartbeat(i))
        alive = {i for i, ok in zip(ids, await pipe.execute(), strict=True) if ok}
        stall = Stall(at=time.time(), quiet_s=round(quiet_s, 3), silent=sorted(set(ids) - alive))
        for rec in sorted(graph.records.values(), key=lambda r: r.task.id):
            if rec.state is not TaskState.released:
                continue
            holder = running.get(rec.task.id)
            if holder in alive:
                stall.running[rec.task.id] = str(holder)
            else:
                graph.requeue(rec, f"stalled: released {quiet_s:.0f} s ago and held by no live worker; released again")
                stall.requeued.append(rec.task.id)
        self.state.stalls.append(stall)
        env = Envelope(
            run_id=self.state.run_id,
            sender="coordinator",
            to="all",
            type=MessageType.control,
            context={"event": "stalled", **stall.model_dump(mode="json")},
        )
        self.outbox.add(CH_COORDINATOR, env)
        return stall
