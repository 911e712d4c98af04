"""Coordination primitives against a real Redis: fenced locks, leadership, the ledger, the embedded server."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest
import redis.asyncio as aredis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError, ResponseError

from cortex.coord.batch import Atomic
from cortex.coord.connection import client, redact_url, send
from cortex.coord.keys import RunKeys
from cortex.coord.ledger import Ledger
from cortex.coord.locks import FencedLock
from cortex.coord.server import EmbeddedRedis
from cortex.errors import BudgetExceeded, FencedWriteRefused


async def test_lock_is_exclusive_until_released(redis: aredis.Redis) -> None:
    a = FencedLock(redis, "repo:x", ttl_ms=5000)
    b = FencedLock(redis, "repo:x", ttl_ms=5000)
    assert await a.try_acquire()
    assert not await b.try_acquire()
    await a.release()
    assert await b.try_acquire()
    assert b.token > a.token


async def test_holder_whose_lease_expired_cannot_write(redis: aredis.Redis) -> None:
    old = FencedLock(redis, "file:a.py", ttl_ms=50)
    assert await old.try_acquire()
    await old.hset("h", {"v": "old"})
    await redis.delete("cortex:lock:file:a.py")  # the lease lapses (as if its TTL ran out while paused)
    new = FencedLock(redis, "file:a.py", ttl_ms=5000)
    assert await new.try_acquire()
    with pytest.raises(FencedWriteRefused):
        await old.hset("h", {"v": "stale"})
    assert not await old.renew()
    await new.hset("h", {"v": "new"})
    assert await redis.hget("h", "v") == "new"


async def test_contending_increments_under_the_lock_lose_no_update(redis: aredis.Redis) -> None:
    async def bump(i: int) -> None:
        lock = FencedLock(redis, "counter", ttl_ms=5000, owner=f"w{i}")
        for _ in range(20):
            await lock.acquire(timeout_s=30)
            value = int(await redis.hget("c", "n") or 0)
            await asyncio.sleep(0)  # yield inside the critical section to invite interleaving
            await lock.hset("c", {"n": value + 1})
            await lock.release()

    await asyncio.gather(*(bump(i) for i in range(8)))
    assert int(await redis.hget("c", "n")) == 160


async def test_ledger_reservations_never_exceed_any_level_and_balance(redis: aredis.Redis) -> None:
    keys = RunKeys("r1")
    ledger = Ledger(redis, keys)
    await ledger.allocate({"run": 1000, "master:m": 600, "worker:w1": 400, "worker:w2": 400})

    async def spend(worker: str, i: int) -> bool:
        try:
            await ledger.reserve(f"{worker}-{i}", 30, master="m", worker=worker)
        except BudgetExceeded:
            return False
        await ledger.commit(f"{worker}-{i}", 20, master="m", worker=worker)
        return True

    results = await asyncio.gather(*(spend(w, i) for w in ("w1", "w2") for i in range(20)))
    master = await ledger.account("master:m")
    assert master.used + master.reserved <= 600
    assert master.reserved == 0
    assert master.used == 20 * sum(results)
    assert master.released == 10 * sum(results)  # each reservation of 30 released the 10 it did not use
    assert not all(results)  # the master level ran out before the workers did
    assert (await ledger.account("run")).used == master.used
    over = 600 - master.used + 1  # the run level could cover it, the master level cannot
    with pytest.raises(BudgetExceeded, match="exceeds master:m"):
        await ledger.reserve("big", over, master="m")
    assert (await ledger.account("master:m")).reserved == 0  # the failed reservation held nothing anywhere
    assert (await ledger.account("run")).reserved == 0


async def test_reservations_of_holders_that_died_are_released_at_the_end(redis: aredis.Redis) -> None:
    ledger = Ledger(redis, RunKeys("r2"))
    await ledger.allocate({"run": 1000, "master:m": 600, "worker:w1": 400})
    await ledger.reserve("dead-holder", 300, master="m", worker="w1")  # never committed: its worker was killed
    await ledger.reserve("live", 50, master="m")
    with pytest.raises(ValueError, match="already held"):
        await ledger.reserve("live", 50, master="m")  # a reused id would orphan the first reservation
    await ledger.commit("live", 40, master="m")
    assert await ledger.release_orphans() == 1
    for level, used in (("run", 40), ("master:m", 40), ("worker:w1", 0)):
        account = await ledger.account(level)
        assert (account.used, account.reserved) == (used, 0), level
    assert (await ledger.account("worker:w1")).released == 300
    assert await ledger.release_orphans() == 0


def test_redact_url_hides_passwords() -> None:
    assert redact_url("redis://user:pw@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact_url("unix:///tmp/x.sock") == "unix:///tmp/x.sock"


async def test_a_holder_whose_lease_expired_learns_it_before_an_unfenced_write(redis: aredis.Redis) -> None:
    from cortex.coord.keys import lock_key

    a = FencedLock(redis, "file:/shared/counter.json", ttl_ms=60_000, owner="a")
    assert await a.try_acquire() and await a.still_held()
    await redis.delete(lock_key(a.resource))  # the lease runs out (a was paused past its TTL)
    assert not await a.still_held()  # expired, even before anyone else takes it
    b = FencedLock(redis, a.resource, ttl_ms=60_000, owner="b")
    assert await b.try_acquire() and b.token > a.token
    assert await b.still_held() and not await a.still_held()
    assert not await a.renew()  # and it cannot take the lease back by renewing


async def test_usage_above_the_reservation_is_charged_and_shown_as_overrun(redis: aredis.Redis) -> None:
    ledger = Ledger(redis, RunKeys("r3"))
    await ledger.allocate({"run": 1000, "master:m": 1000})
    await ledger.reserve("call-1", 100, master="m")
    assert await ledger.commit("call-1", 130, master="m") == 0  # the provider reported more than estimated
    account = await ledger.account("master:m")
    assert (account.used, account.reserved, account.released, account.overrun) == (130, 0, 0, 30)


async def test_commands_sent_ahead_of_their_replies_land_even_if_the_sender_dies_at_once(
    redis: aredis.Redis, redis_server: EmbeddedRedis
) -> None:
    """``connection.send`` (a worker's claim): once it returns, the commands are Redis's, whatever happens to the
    sender; the replies come in order, an error reply raises and the client stays usable."""
    sent = await send(redis, [["SET", "k", "v"], ["INCR", "n"], ["HSET", "h", "a", "1", "b", "2"]])
    assert await sent.replies() == ["OK", 1, 2]
    assert await sent.replies() == ["OK", 1, 2]  # read once, kept
    both = await send(redis, [["INCR", "m"], ["INCR", "m"], ["INCR", "m"]])
    first, second = await asyncio.gather(both.replies(), both.replies())  # a worker's hand-back and its settle
    assert first == second == [1, 2, 3]
    bad = await send(redis, [["INCR", "k"], ["INCR", "n"]])
    with pytest.raises(ResponseError):
        await bad.replies()
    await bad.close()
    assert await redis.get("n") == "2"  # the command after the error still ran; the pool still serves
    script = (
        "import asyncio, os, signal, sys\n"
        "from cortex.coord.connection import connect, send\n"
        "async def main():\n"
        "    r = await connect(sys.argv[1])\n"
        "    await send(r, [['HINCRBY', 'executions', 't1', '1'], ['SET', 'claimed', 'yes']])\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "asyncio.run(main())\n"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, redis_server.url)
    assert await asyncio.wait_for(proc.wait(), 30) == -signal.SIGKILL
    for _ in range(100):  # the server reads what the dead process wrote
        if await redis.get("claimed"):
            break
        await asyncio.sleep(0.01)
    assert (await redis.get("claimed"), await redis.hget("executions", "t1")) == ("yes", "1")


async def test_commands_sent_after_unread_ones_run_after_them_even_past_a_health_check(
    redis_server: EmbeddedRedis,
) -> None:
    """``Sent.then`` (a worker's settle after its claim): written after the first commands on their connection, so
    run after them, its own replies returned; also after the connection sat idle past the client's health-check
    interval (a check's PING would take the first commands' reply for its own, then reconnect and wait forever)."""
    r = aredis.Redis.from_url(redis_server.url, decode_responses=True, health_check_interval=1)
    try:
        claim = await send(r, [["SET", "claim", "in"], ["INCR", "c"]])
        await asyncio.sleep(1.3)  # a task that ran longer than the interval
        assert await asyncio.wait_for(claim.then([["GET", "claim"], ["INCR", "c"]]), 5) == ["in", 2]
        assert await claim.replies() == ["OK", 1]
        assert await claim.then([["GET", "claim"]]) is None  # read: nothing can follow on that connection
        bad = await send(r, [["INCR", "claim"]])  # an error among the first replies is theirs, not the settle's
        assert await asyncio.wait_for(bad.then([["GET", "claim"]]), 5) == ["in"]
        with pytest.raises(ResponseError):
            await bad.replies()
    finally:
        await r.aclose()


async def test_the_clients_commands_are_packed_by_hiredis_as_redis_py_packs_them(redis_server: EmbeddedRedis) -> None:
    """``connection.client`` packs with hiredis's C packer: the bytes are redis-py's own, and what redis-py refuses
    (None, a bool) is refused the same way, leaving the client usable."""
    r = client(redis_server.url)
    try:
        conn = r.connection_pool.make_connection()
        assert type(conn).__name__.startswith("HiredisPacked")
        for args in [
            ("SET", "k", "v"),
            ("CLIENT SETNAME", "cortex-test"),
            (b"HSET", "h", "é", 0.1, 1796192882.8527324, -3, 10**20, b"\x00\xff"),
            ("XADD", "s", "*", "x" * 70_000, "1e-05"),
        ]:
            assert b"".join(conn.pack_command(*args)) == b"".join(Connection().pack_command(*args))
        await r.delete("packed")
        await r.execute_command("HSET", "packed", "é", 0.1, "n", 7)
        assert await r.hgetall("packed") == {"é": "0.1", "n": "7"}
        for bad in (None, True):
            with pytest.raises(DataError):
                await r.execute_command("SET", "k", bad)
        assert await r.ping()
    finally:
        await r.aclose()


async def test_a_batch_of_commands_runs_in_order_in_one_call_also_after_the_server_lost_its_scripts(
    redis: aredis.Redis,
) -> None:
    """``batch.Atomic`` (a master's dispatch): the commands run in order, whatever their lengths."""
    atomic = Atomic(redis)
    fields = [x for i in range(300) for x in (f"f{i}", str(i))]  # one command of 602 arguments
    await atomic.run([["SET", "a", "1"], ["INCR", "a"], ["XADD", "s", "*", *fields], ["XADD", "s", "*", "k", "v"]])
    assert await redis.get("a") == "2"
    entries = await redis.xrange("s")
    assert [len(f) for _, f in entries] == [300, 1] and entries[0][1]["f299"] == "299"
    await redis.script_flush()  # a restarted server: the script is loaded again
    await atomic.run([["INCR", "a"]])
    assert await redis.get("a") == "3"
