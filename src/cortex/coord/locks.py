"""Fenced locks and leases. A holder gets a token from a monotonic counter; writes carry it and are refused by
Redis itself once a newer token exists for the resource, so a holder whose lease expired cannot write.

The scripts document their KEYS and ARGV. Acquiring sets the resource's fence to the new token at once, so an
old holder is fenced out even before the new holder writes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import RedisError

from cortex.coord.batch import RUN_COMMANDS, flat
from cortex.coord.keys import FENCE_COUNTER, fence_key, lock_key
from cortex.errors import FencedWriteRefused

# KEYS: lock, fence counter, resource fence. ARGV: owner, ttl ms. Returns the new token, or 0 when held by another.
_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur and string.match(cur, '^(.-)|') ~= ARGV[1] then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
redis.call('SET', KEYS[3], token)
return token
"""
# KEYS: lock. ARGV: owner|token, ttl ms. Returns 1 when renewed, 0 when the lease is gone or someone else's.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: lock, resource fence. ARGV: owner|token, ttl ms, token. Renews our lease, or takes it back when it lapsed
# (expired during a Redis outage or a pause) and no newer token was issued since: nobody else can have held it.
# Returns 1 when the lease is ours (again), 0 when someone else holds it or a newer token exists.
_RECLAIM = """
local cur = redis.call('GET', KEYS[1])
if cur then
  if cur == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  return 0
end
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
# KEYS: lock. ARGV: owner|token. Deletes only our own lease.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: resource fence, hash. ARGV: token, the number of fields n, n field-value pairs, then commands as
# ``batch.flat`` lays them out (the releases, events and acknowledgements that follow from the write). The fenced
# HSET of the fields, then the commands; none of it when a newer token exists. Flat arguments, packed by hiredis:
# as JSON documents, the records (JSON themselves) were escaped by the client and unescaped by the script, which
# cost Redis more than the writes. HSET takes 100 fields a call (Lua's unpack has a stack limit).
_FENCED_BATCH = (
    """
local fence = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) < fence then return -1 end
local last = 2 + 2 * tonumber(ARGV[2])
for i = 3, last, 200 do redis.call('HSET', KEYS[2], unpack(ARGV, i, math.min(i + 199, last))) end
local i = last + 1
"""
    + RUN_COMMANDS
    + "return 1\n"
)


ConflictHook = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Told of each contention: ``lock-wait`` (someone else holds it), ``lock-acquired`` (after waiting) and
``fenced-write-refused`` (a newer holder exists), with the details."""


class FencedLock:
    """A lease on ``resource`` for ``ttl_ms``. ``token`` is valid until a newer holder acquires. ``on_conflict``, if
    given, hears of every contention (the runtime publishes them on the conflicts channel)."""

    def __init__(
        self,
        redis: aredis.Redis,
        resource: str,
        *,
        ttl_ms: int,
        owner: str | None = None,
        on_conflict: ConflictHook | None = None,
    ) -> None:
        self.redis = redis
        self.resource = resource
        self.ttl_ms = ttl_ms
        self.owner = owner or uuid.uuid4().hex
        self.on_conflict = on_conflict
        self.token = 0
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._reclaim = redis.register_script(_RECLAIM)
        self._batch = redis.register_script(_FENCED_BATCH)

    @property
    def _value(self) -> str:
        return f"{self.owner}|{self.token}"

    async def try_acquire(self) -> bool:
        """Take the lease if it is free (or already ours); a new token each time."""
        keys = [lock_key(self.resource), FENCE_COUNTER, fence_key(self.resource)]
        token = int(await self._acquire(keys=keys, args=[self.owner, self.ttl_ms]))
        if token:
            self.token = token
        return bool(token)

    async def acquire(self, timeout_s: float = 30.0, poll_s: float = 0.005) -> None:
        """Wait until the lease is ours; ``TimeoutError`` after ``timeout_s``."""
        if await self.try_acquire():
            return
        started = time.monotonic()
        await self._conflict("lock-wait", holder=await self.holder())
        while not await self.try_acquire():  # noqa: ASYNC110  (Redis does not notify a release; poll)
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"lock on {self.resource!r} not acquired within {timeout_s} s")
            await asyncio.sleep(poll_s)
        await self._conflict("lock-acquired", waited_s=round(time.monotonic() - started, 4), token=self.token)

    @contextlib.asynccontextmanager
    async def held(self, timeout_s: float = 30.0) -> AsyncIterator[None]:
        """Hold the lease for the block: acquired (waiting up to ``timeout_s``), renewed every third of its TTL
        while the block runs, released at the end. A holder killed mid-block stops renewing, so the lease runs out
        within one TTL instead of blocking others for as long as the work might have taken."""
        await self.acquire(timeout_s)
        keeper = asyncio.create_task(self._keep_renewing())
        try:
            yield
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            await self.release()

    async def _keep_renewing(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            with contextlib.suppress(RedisError):  # an outage: try again; the lease runs out if it outlasts it
                await self.renew()

    async def holder(self) -> str | None:
        """Who holds the lease now (its owner name), or None."""
        value = await self.redis.get(lock_key(self.resource))
        return None if value is None else str(value).rsplit("|", 1)[0]

    async def _conflict(self, event: str, **details: Any) -> None:
        if self.on_conflict is not None:
            await self.on_conflict(event, {"resource": self.resource, "owner": self.owner, **details})

    async def renew(self) -> bool:
        """Extend the lease; False means it was lost (expired or taken) and the holder must stop writing."""
        return bool(self.token) and bool(
            await self._renew(keys=[lock_key(self.resource)], args=[self._value, self.ttl_ms])
        )

    async def reclaim(self) -> bool:
        """Renew the lease, or take it back with the same token if it lapsed and no newer token exists since (a
        Redis outage outlasted the lease: nobody else held it). False: someone else holds it, or held it."""
        if not self.token:
            return False
        keys = [lock_key(self.resource), fence_key(self.resource)]
        return bool(await self._reclaim(keys=keys, args=[self._value, self.ttl_ms, self.token]))

    async def still_held(self) -> bool:
        """The lease is still ours and no newer token exists: check this right before a write the store cannot
        fence itself (a file). The write after the check is not atomic with it; keep it short."""
        value, fence = await self.redis.mget(lock_key(self.resource), fence_key(self.resource))
        return bool(self.token) and value == self._value and int(fence or 0) == self.token

    async def release(self) -> None:
        """Give the lease up if it is still ours."""
        if self.token:
            await self._release(keys=[lock_key(self.resource)], args=[self._value])

    async def hset(self, key: str, mapping: dict[str, Any]) -> None:
        """HSET ``mapping`` into ``key`` under this lock's token; ``FencedWriteRefused`` if a newer token exists."""
        await self.hset_then(key, mapping, [])

    async def hset_then(self, key: str, mapping: dict[str, Any], commands: list[list[str]]) -> None:
        """``hset``, then ``commands`` (each a Redis command as strings), atomically and in one round trip; none
        of it when a newer token exists (``FencedWriteRefused``)."""
        args: list[Any] = [self.token, len(mapping)]
        for field, value in mapping.items():
            args += (field, value)
        args += flat(commands)
        if int(await self._batch(keys=[fence_key(self.resource), key], args=args)) < 0:
            await self._refused(key)

    async def _refused(self, key: str) -> None:
        newest = await self.redis.get(fence_key(self.resource))
        await self._conflict("fenced-write-refused", key=key, token=self.token, newest_token=int(newest or 0))
        raise FencedWriteRefused(self.resource, self.token)
