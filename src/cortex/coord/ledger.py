"""The token ledger: run > master > worker accounts in Redis hashes, changed only by Lua scripts.

Each account holds ``allocated``, ``used`` and ``reserved``. A reservation holds tokens at every level at once or
fails at once; committing moves the real usage from reserved to used and releases the rest. So
``allocated = used + reserved + remaining`` holds at every level at every moment.
"""

from __future__ import annotations

import redis.asyncio as aredis

from cortex.coord.keys import RunKeys
from cortex.errors import BudgetExceeded
from cortex.models.state import LedgerAccount

# KEYS: accounts (run, master, worker...), reservations hash. ARGV: reservation id, tokens.
# Returns 0 on success, the 1-based index of the first account that cannot cover the reservation, or -1 when the
# id is already held (reusing it would orphan the first reservation's tokens).
_RESERVE = """
if redis.call('HEXISTS', KEYS[#KEYS], ARGV[1]) == 1 then return -1 end
local n = tonumber(ARGV[2])
for i = 1, #KEYS - 1 do
  local a = redis.call('HMGET', KEYS[i], 'allocated', 'used', 'reserved')
  if (tonumber(a[1]) or 0) - (tonumber(a[2]) or 0) - (tonumber(a[3]) or 0) < n then return i end
end
for i = 1, #KEYS - 1 do redis.call('HINCRBY', KEYS[i], 'reserved', n) end
redis.call('HSET', KEYS[#KEYS], ARGV[1], n .. '|' .. table.concat(KEYS, ',', 1, #KEYS - 1))
return 0
"""
# KEYS: accounts, reservations hash. ARGV: reservation id, tokens used. Returns tokens released, -1 if unknown.
# Usage is what the provider reported, charged in full: a call that used more than its reservation (the estimate
# was low) is recorded as ``overrun`` as well, never hidden.
_COMMIT = """
local held = tonumber(string.match(redis.call('HGET', KEYS[#KEYS], ARGV[1]) or '', '^(%d+)|'))
if not held then return -1 end
local used = tonumber(ARGV[2])
local released = math.max(0, held - used)
for i = 1, #KEYS - 1 do
  redis.call('HINCRBY', KEYS[i], 'reserved', -held)
  redis.call('HINCRBY', KEYS[i], 'used', used)
  redis.call('HINCRBY', KEYS[i], 'released', released)
  if used > held then redis.call('HINCRBY', KEYS[i], 'overrun', used - held) end
end
redis.call('HDEL', KEYS[#KEYS], ARGV[1])
return released
"""

# KEYS: reservations hash. Releases every reservation still held (its holder died before committing) at each
# account it was made on (stored with it); returns how many there were.
_RELEASE_ORPHANS = """
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local held, accounts = string.match(all[i + 1], '^(%d+)|(.*)$')
  for account in string.gmatch(accounts, '[^,]+') do
    redis.call('HINCRBY', account, 'reserved', -tonumber(held))
    redis.call('HINCRBY', account, 'released', tonumber(held))
  end
end
redis.call('DEL', KEYS[1])
return #all / 2
"""


class Ledger:
    """Accounts of one run. Levels are ``run``, ``master:<name>`` and ``worker:<id>``."""

    def __init__(self, redis: aredis.Redis, keys: RunKeys) -> None:
        self.redis = redis
        self.keys = keys
        self._reserve = redis.register_script(_RESERVE)
        self._commit = redis.register_script(_COMMIT)
        self._orphans = redis.register_script(_RELEASE_ORPHANS)

    def _accounts(self, master: str, worker: str | None) -> list[str]:
        levels = ["run", f"master:{master}"] + ([f"worker:{worker}"] if worker else [])
        return [self.keys.ledger(level) for level in levels]

    async def allocate(self, allocations: dict[str, int]) -> None:
        """Set each level's allocation (``{"run": n, "master:x": n, "worker:y": n}``); used/reserved start at 0."""
        pipe = self.redis.pipeline(transaction=True)
        for level, amount in allocations.items():
            pipe.hset(
                self.keys.ledger(level),
                mapping={"allocated": amount, "used": 0, "reserved": 0, "released": 0},
            )
        await pipe.execute()

    async def reserve(self, reservation_id: str, tokens: int, *, master: str, worker: str | None = None) -> None:
        """Hold ``tokens`` at every level, or raise ``BudgetExceeded`` naming the level that cannot cover it."""
        accounts = self._accounts(master, worker)
        failed = int(
            await self._reserve(keys=[*accounts, self.keys.ledger("reservations")], args=[reservation_id, tokens])
        )
        if failed < 0:
            raise ValueError(f"reservation id {reservation_id!r} is already held; ids must be unique")
        if failed:
            level = accounts[failed - 1].rsplit(":ledger:", 1)[1]
            snap = await self.account(level)
            raise BudgetExceeded(level, tokens, snap.remaining)

    async def commit(self, reservation_id: str, used: int, *, master: str, worker: str | None = None) -> int:
        """Charge the ``used`` tokens of a reservation and release the rest of it; returns how many were released.
        Usage above the reservation is charged too, and counted as ``overrun``."""
        accounts = self._accounts(master, worker)
        return int(await self._commit(keys=[*accounts, self.keys.ledger("reservations")], args=[reservation_id, used]))

    async def release_orphans(self) -> int:
        """At the end of a run: give back every reservation whose holder died before committing it."""
        return int(await self._orphans(keys=[self.keys.ledger("reservations")]))

    async def account(self, level: str) -> LedgerAccount:
        """``allocated``, ``used``, ``reserved``, ``released`` and ``overrun`` of one level (zeros when absent)."""
        return (await self.accounts([level]))[level]

    async def accounts(self, levels: list[str]) -> dict[str, LedgerAccount]:
        """Several accounts in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for level in levels:
            pipe.hgetall(self.keys.ledger(level))
        raws = await pipe.execute()
        return {
            level: LedgerAccount(**{k: int(raw.get(k, 0)) for k in LedgerAccount.model_fields})
            for level, raw in zip(levels, raws, strict=True)
        }
