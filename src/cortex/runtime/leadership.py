"""The coordinator's leadership of a run: a fenced lease, renewed in the background, under whose token every
record of the run is written. Losing it to a newer coordinator (one that took the run over, with a newer token)
means stepping down: one coordinator per run is the split-brain guard of failure scenario 7.

A lease that merely lapsed (Redis was away longer than the lease, or the process was paused) is taken back with
the same token when no newer one was issued meanwhile: nobody else can have led the run. A Redis outage is waited
out up to ``outage_s``; only a newer token makes this coordinator step down."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import RedisError

from cortex.coord.keys import leader_resource
from cortex.coord.locks import ConflictHook, FencedLock
from cortex.coord.outage import DEFAULT_OUTAGE_S
from cortex.errors import LeadershipLost

LEASE_TTL_MS = 10_000


class Leadership:
    """The lease of run ``run_id`` held by this process."""

    def __init__(
        self,
        redis: aredis.Redis,
        run_id: str,
        *,
        on_conflict: ConflictHook | None = None,
        outage_s: float = DEFAULT_OUTAGE_S,
    ) -> None:
        self.run_id = run_id
        self.outage_s = outage_s
        owner = f"coord-{os.getpid()}"
        self.lease = FencedLock(
            redis, leader_resource(run_id), ttl_ms=LEASE_TTL_MS, owner=owner, on_conflict=on_conflict
        )
        self.lost = False
        self._keeper: asyncio.Task[None] | None = None

    @property
    def token(self) -> int:
        """The fencing token of the lease (0 before it was acquired)."""
        return self.lease.token

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; start renewing it when taken."""
        got = await self.lease.try_acquire()
        if got:
            self._keeper = asyncio.create_task(self._keep())
        return got

    async def take_over(self, wait_s: float) -> None:
        """Wait up to ``wait_s`` for the current holder to stop renewing, then take the lease with a newer token."""
        deadline = time.monotonic() + wait_s
        while not await self.try_acquire():  # noqa: ASYNC110  (Redis does not announce a lease running out)
            if time.monotonic() > deadline:
                raise LeadershipLost(
                    f"run {self.run_id} still has a live coordinator after {wait_s:.0f} s; not taken over"
                )
            await asyncio.sleep(0.2)

    async def _keep(self) -> None:
        """Renew every third of the TTL (taking a lapsed lease back when no newer token exists). Refused: a newer
        coordinator leads, the lease is lost. Redis unreachable: keep trying through the outage (the coordinator's
        loop gives up on the run once the outage outlasts ``outage_s``)."""
        while True:
            await asyncio.sleep(LEASE_TTL_MS / 3000)
            try:
                ok = await self.lease.reclaim()
            except RedisError:
                continue
            if not ok:
                self.lost = True
                return

    def check(self) -> None:
        """Raise ``LeadershipLost`` once the keeper found the lease lost."""
        if self.lost:
            raise LeadershipLost(f"lost the leadership lease of run {self.run_id}; stepping down")

    async def confirm(self) -> None:
        """Ask Redis that the lease is still ours and no newer token exists (before writing files); a lease that
        lapsed with no newer token since is taken back."""
        if not await self.lease.still_held() and not await self.lease.reclaim():
            self.lost = True
            raise LeadershipLost(f"lost the leadership lease of run {self.run_id}")

    async def hset(self, key: str, mapping: dict[str, Any]) -> None:
        """A fenced HSET: refused (``FencedWriteRefused``) when a newer coordinator holds the run."""
        self.check()
        await self.lease.hset(key, mapping)

    async def hset_then(self, key: str, mapping: dict[str, str], commands: list[list[str]]) -> None:
        """A fenced HSET and the commands that follow from it, in one atomic round trip (or none of it)."""
        self.check()
        await self.lease.hset_then(key, mapping, commands)

    async def close(self) -> None:
        """Stop renewing and give the lease up (best effort: it expires by itself)."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.lease.release(), 2)
