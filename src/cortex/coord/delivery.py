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

import redis.asyncio as aredis
from pydantic_core import to_json
from redis.exceptions import NoScriptError

from cortex.coord.keys import GROUP_WORKERS, RunKeys
from cortex.models.result import Outcome, TaskResult

# KEYS: queue, results, running, committed, claimed-at. ARGV: group, then five per entry: entry id, task id, ok,
# effects JSON, result JSON. Returns per entry 0 when it was already settled (its result is dropped), 1 when settled,
# 2 when its effects were applied too.
_SETTLE = """
local out = {}
for i = 2, #ARGV, 5 do
  local entry, task = ARGV[i], ARGV[i + 1]
  local done = 0
  if redis.call('XACK', KEYS[1], ARGV[1], entry) == 1 then
    redis.call('HDEL', KEYS[3], task)
    redis.call('HDEL', KEYS[5], task)
    local applied = 0
    if ARGV[i + 2] == '1' and redis.call('HSETNX', KEYS[4], task, entry) == 1 then
      for _, c in ipairs(cjson.decode(ARGV[i + 3])) do redis.call(unpack(c)) end
      applied = 1
    end
    redis.call('XADD', KEYS[2], '*', 'effects_applied', tostring(applied), 'result', ARGV[i + 4])
    done = 1 + applied
  end
  out[#out + 1] = done
end
return out
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


class Delivery:
    """The settle and requeue scripts bound to one run's keys."""

    def __init__(self, redis: aredis.Redis, keys: RunKeys) -> None:
        self.keys = keys
        self._redis = redis
        self._settle = redis.register_script(_SETTLE)
        self._requeue = redis.register_script(_REQUEUE)

    async def settle(self, settles: list[Settle]) -> list[int]:
        """Settle ``settles`` in one round trip, each entry by the same atomic steps (ack, result, and effects when
        first to succeed); what each returned (0: the entry was already settled, its result dropped). One script
        call settles a queue's whole batch: a call per entry cost a worker a fifth of its time per no-op task.

        Sent as ``EVALSHA``, not through a pipeline's script handling (which asks ``SCRIPT EXISTS`` first: a round
        trip more on the path from every task's end to its dependents' release). A server that lost its scripts
        (a restart) answers ``NOSCRIPT``: the script is loaded and everything sent again, which settles nothing
        twice (an entry the first send settled is refused by its ``XACK``, and shows 0)."""
        if not settles:
            return []
        try:
            return await self._send(settles)
        except NoScriptError:
            await self._redis.script_load(_SETTLE)
            return await self._send(settles)

    async def _send(self, settles: list[Settle]) -> list[int]:
        by_queue: dict[str, list[int]] = {}  # the positions of each queue's entries in ``settles``
        for n, (queue, *_) in enumerate(settles):
            by_queue.setdefault(queue, []).append(n)
        pipe = self._redis.pipeline(transaction=False)
        for queue, positions in by_queue.items():
            args: list[str | bytes] = [GROUP_WORKERS]
            for n in positions:
                _, entry_id, result, effects = settles[n]
                ok = "1" if result.outcome is Outcome.succeeded else "0"
                args += [entry_id, result.task_id, ok, to_json(effects), result.model_dump_json()]
            keys = [queue, self.keys.results, self.keys.running, self.keys.committed, self.keys.claimed_at]
            pipe.evalsha(self._settle.sha, len(keys), *keys, *args)
        out = [0] * len(settles)
        for positions, replies in zip(by_queue.values(), await pipe.execute(), strict=True):
            for n, reply in zip(positions, replies, strict=True):
                out[n] = int(reply)
        return out

    async def requeue(self, queue: str, entry_id: str, dead_consumer: str) -> bool:
        """Requeue ``entry_id`` unless someone settled it first."""
        return bool(await self._requeue(keys=[queue], args=[GROUP_WORKERS, entry_id, dead_consumer]))
