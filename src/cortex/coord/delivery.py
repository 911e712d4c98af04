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

# KEYS: queue, results, running, committed. ARGV: group, entry id, task id, ok, effects JSON, result JSON.
# Returns 0 when the entry was already settled (the result is dropped), 1 when settled, 2 when effects applied.
_SETTLE = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HDEL', KEYS[3], ARGV[3])
local applied = 0
if ARGV[4] == '1' and redis.call('HSETNX', KEYS[4], ARGV[3], ARGV[2]) == 1 then
  for _, c in ipairs(cjson.decode(ARGV[5])) do redis.call(unpack(c)) end
  applied = 1
end
redis.call('XADD', KEYS[2], '*', 'effects_applied', tostring(applied), 'result', ARGV[6])
return 1 + applied
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
        """Settle ``settles`` in one round trip, each atomically by itself (ack, result, and effects when first to
        succeed); what each returned (0: the entry was already settled, its result dropped).

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
        pipe = self._redis.pipeline(transaction=False)
        for queue, entry_id, result, effects in settles:
            ok = "1" if result.outcome is Outcome.succeeded else "0"
            keys = [queue, self.keys.results, self.keys.running, self.keys.committed]
            args = [GROUP_WORKERS, entry_id, result.task_id, ok, to_json(effects), result.model_dump_json()]
            pipe.evalsha(self._settle.sha, len(keys), *keys, *args)
        return [int(r) for r in await pipe.execute()]

    async def requeue(self, queue: str, entry_id: str, dead_consumer: str) -> bool:
        """Requeue ``entry_id`` unless someone settled it first."""
        return bool(await self._requeue(keys=[queue], args=[GROUP_WORKERS, entry_id, dead_consumer]))
