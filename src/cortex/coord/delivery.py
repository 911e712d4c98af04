"""Exactly-once effects over at-least-once delivery.

A queue entry can be delivered twice: the reaper requeues the entry of a worker whose heartbeat expired, and that
worker may only have been paused (SIGSTOP, a long GC, a partition) and finish later. Both sides therefore settle an
entry with a Lua script whose first step is ``XACK``: it returns 1 for exactly one caller, and only that caller
goes on. The worker's settle also applies the task's Redis effects (``TaskContext.effects``) in the same atomic
step, and only for the first successful settle of a task in the run (a ``committed`` marker), so a task that
ran twice still changed the world once.

The scripts touch keys built from their arguments (the effects name their own keys), which is fine on a single
server or a primary with replicas; Redis Cluster would need the run's keys in one hash slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aredis
from pydantic_core import to_json
from redis.exceptions import NoScriptError

from cortex.coord.connection import Sent
from cortex.coord.keys import GROUP_WORKERS, RunKeys
from cortex.models.result import Outcome, TaskResult

# KEYS: queue, results, running, committed, claimed-at, release:next, release:waits, release:entry, control. ARGV:
# group, then five per entry: entry id, task id, ok, effects JSON, result JSON. A release is stamped with the
# server's time as the script runs (a time the worker took before sending could precede the settle of another
# dependency that ran first, as it did on a loaded host). Returns two lists: per
# entry 0 when it was already settled (its result dropped), 1 when settled, 2 when its effects were applied too;
# and five values per task the settles released: its id, master, worker type, priority, and 1 when it went
# straight to its queue (0: to its master's inbox, the master drains).
_SETTLE = """
local out, released = {}, {}
local clock = redis.call('TIME')
local now = clock[1] .. '.' .. string.format('%06d', tonumber(clock[2]))
for i = 2, #ARGV, 5 do
  local entry, task = ARGV[i], ARGV[i + 1]
  local done = 0
  if redis.call('XACK', KEYS[1], ARGV[1], entry) == 1 then
    redis.call('HDEL', KEYS[3], task)
    redis.call('HDEL', KEYS[5], task)
    local applied, these = 0, {}
    if ARGV[i + 2] == '1' and redis.call('HSETNX', KEYS[4], task, entry) == 1 then
      for _, c in ipairs(cjson.decode(ARGV[i + 3])) do redis.call(unpack(c)) end
      applied = 1
      local after = redis.call('HGET', KEYS[6], task)
      if after then
        for _, d in ipairs(cjson.decode(after)) do
          if redis.call('HINCRBY', KEYS[7], d, -1) == 0 then
            local e = cjson.decode(redis.call('HGET', KEYS[8], d))
            local direct = redis.call('HEXISTS', KEYS[9], 'master-' .. e[1]) == 0
            redis.call('XADD', direct and e[5] or e[4], '*', 'attempt', '1', 'released_ts', now,
              unpack(e, 6))
            these[#these + 1] = d
            for _, v in ipairs({d, e[1], e[2], e[3], direct and 1 or 0}) do released[#released + 1] = v end
          end
        end
      end
    end
    local fields = {'effects_applied', tostring(applied), 'result', ARGV[i + 4]}
    if #these > 0 then
      for _, v in ipairs({'released', cjson.encode(these), 'released_ts', now}) do fields[#fields + 1] = v end
    end
    redis.call('XADD', KEYS[2], '*', unpack(fields))
    done = 1 + applied
  end
  out[#out + 1] = done
end
return {out, released}
"""

# KEYS: queue. ARGV: group, entry id, dead consumer. Requeues a copy marked with where it came from; returns 1, or
# 0 when the entry was settled meanwhile (its worker was alive after all) or trimmed away.
_REQUEUE = """
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 or #e == 0 then return 0 end
local fields = {}
local src = e[1][2]
for i = 1, #src, 2 do
  if src[i] ~= 'reassigned_from' then
    fields[#fields + 1] = src[i]
    fields[#fields + 1] = src[i + 1]
  end
end
fields[#fields + 1] = 'reassigned_from'
fields[#fields + 1] = ARGV[3]
redis.call('XADD', KEYS[1], '*', unpack(fields))
return 1
"""


Settle = tuple[str, str, TaskResult, list[list[str]]]
"""One entry to settle: its queue, its entry id, the task's result and the task's Redis effects."""


@dataclass(frozen=True)
class Released:
    """A task a settle released (its dependencies had all settled a success)."""

    task_id: str
    master: str
    worker_type: str
    priority: int
    direct: bool
    """Added to its worker type's queue (True), or to its master's inbox because the master drains."""


@dataclass
class Settled:
    """What one settle call did."""

    done: list[int]
    """Per entry, in order: 0 already settled (its result dropped), 1 settled, 2 settled with its effects."""
    released: list[Released] = field(default_factory=list)


class Delivery:
    """The settle and requeue scripts bound to one run's keys."""

    def __init__(self, redis: aredis.Redis, keys: RunKeys) -> None:
        self.keys = keys
        self._redis = redis
        self._settle = redis.register_script(_SETTLE)
        self._requeue = redis.register_script(_REQUEUE)

    async def settle(self, settles: list[Settle], *, after: Sent | None = None) -> Settled:
        """Settle ``settles`` in one round trip, each entry by the same atomic steps (ack, result, and when first to
        succeed its effects and the release of the dependents that waited only for it); what each entry did and
        what was released. One script call settles a queue's whole batch: a call per entry cost a worker a fifth of
        its time per no-op task. ``after``: commands whose replies are not read yet (a worker's claim), which the
        settle must follow: it is written after them on their connection, so Redis runs it after them without a
        wait for their replies (waiting was a fifth of a no-op chain's hop).

        Releasing in the settle takes the coordinator and the master off the path from a task's end to its
        dependent's start (one process wakes per hop instead of three): the coordinator arms a task's dependents
        when it releases the task (``release_*`` keys) and learns what a settle released from the result entry's
        ``released`` field. Only a first successful settle releases, so a dependent is released this way once.

        Sent as ``EVALSHA``, not through a pipeline's script handling (which asks ``SCRIPT EXISTS`` first: a round
        trip more on the path from every task's end to its dependents' release). A server that lost its scripts
        (a restart) answers ``NOSCRIPT``: the script is loaded and everything sent again, which settles nothing
        twice (an entry the first send settled is refused by its ``XACK``, and shows 0)."""
        if not settles:
            return Settled([])
        try:
            return await self._send(settles, after)
        except NoScriptError:
            await self._redis.script_load(_SETTLE)
            return await self._send(settles, None)

    async def _send(self, settles: list[Settle], after: Sent | None) -> Settled:
        by_queue: dict[str, list[int]] = {}  # the positions of each queue's entries in ``settles``
        for n, (queue, *_) in enumerate(settles):
            by_queue.setdefault(queue, []).append(n)
        calls: list[list[Any]] = []
        for queue, positions in by_queue.items():
            args: list[str | bytes] = [GROUP_WORKERS]
            for n in positions:
                _, entry_id, result, effects = settles[n]
                ok = "1" if result.outcome is Outcome.succeeded else "0"
                args += [entry_id, result.task_id, ok, to_json(effects), result.model_dump_json()]
            k = self.keys
            keys = [queue, k.results, k.running, k.committed, k.claimed_at]
            keys += [k.release_next, k.release_waits, k.release_entry, k.control]
            calls.append(["EVALSHA", self._settle.sha, len(keys), *keys, *args])
        replies = await after.then(calls) if after is not None else None
        if replies is None:
            pipe = self._redis.pipeline(transaction=False)
            for call in calls:
                pipe.execute_command(*call)
            replies = await pipe.execute()
        out = Settled([0] * len(settles))
        for positions, (done, released) in zip(by_queue.values(), replies, strict=True):
            for n, reply in zip(positions, done, strict=True):
                out.done[n] = int(reply)
            for i in range(0, len(released), 5):
                task_id, master, worker_type, priority, direct = released[i : i + 5]
                out.released.append(Released(task_id, master, worker_type, int(priority), direct == 1))
        return out

    async def requeue(self, queue: str, entry_id: str, dead_consumer: str) -> bool:
        """Requeue ``entry_id`` unless someone settled it first."""
        return bool(await self._requeue(keys=[queue], args=[GROUP_WORKERS, entry_id, dead_consumer]))
