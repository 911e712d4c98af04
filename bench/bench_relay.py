"""The floor under a chain hop: how long a message takes from this process through N relay processes and back,
over Redis streams, each relay doing the least a Cortex process does per hop (a blocking ``XREAD`` with redis-py's
asyncio client and hiredis, then an ``XADD`` onward). An idle chain hop in Cortex is the two-relay case: the
worker's result (this process's ``XADD``) wakes the coordinator, whose release wakes the master, whose dispatch
wakes a worker (this process's read): what its p50 could be if no process did any work of its own.

    python bench/bench_relay.py [--rounds 500]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

import redis.asyncio as aredis

from _common import machine
from cortex.coord.server import EmbeddedRedis


async def relay(url: str, inbound: str, outbound: str) -> None:
    """Pass every message on ``inbound`` to ``outbound`` until one says stop."""
    redis = aredis.Redis.from_url(url)
    last = "0-0"  # each case has streams of its own: from their start, so nothing sent before this read is missed
    try:
        while True:
            for _, entries in await redis.xread({inbound: last}, block=0, count=10):
                for entry_id, fields in entries:
                    last = entry_id
                    if b"stop" in fields:
                        return
                    await redis.xadd(outbound, fields)
    finally:
        await redis.aclose()


async def drive(url: str, relays: int, rounds: int) -> list[float]:
    """Round trips (ms) of ``rounds`` messages through ``relays`` processes, one message at a time."""
    redis = aredis.Redis.from_url(url)
    last, took = "0-0", []
    for i in range(rounds + 50):  # the first 50 wait for the relays to start and warm up: not counted
        start = time.perf_counter()
        await redis.xadd(f"relay{relays}:0", {"i": i})
        reply = await redis.xread({f"relay{relays}:{relays}": last}, block=30_000)
        last = reply[0][1][-1][0]
        if i >= 50:
            took.append((time.perf_counter() - start) * 1000)
    for k in range(relays):
        await redis.xadd(f"relay{relays}:{k}", {"stop": 1})
    await redis.aclose()
    return sorted(took)


def _streams(relays: int, k: int) -> tuple[str, str]:
    """What relay ``k`` of the ``relays``-relay case reads and writes."""
    return f"relay{relays}:{k}", f"relay{relays}:{k + 1}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--role", nargs=3, help=argparse.SUPPRESS)  # url, inbound, outbound: run as a relay
    args = parser.parse_args()
    if args.role:
        asyncio.run(relay(*args.role))
        return
    print(f"machine: {machine()}")
    with EmbeddedRedis(appendonly=False) as server:
        for relays in (1, 2, 3):
            procs = [
                subprocess.Popen([sys.executable, __file__, "--role", server.url, *_streams(relays, k)])
                for k in range(relays)
            ]
            took = asyncio.run(drive(server.url, relays, args.rounds))
            for p in procs:
                p.wait(timeout=30)
            p50, p99 = took[len(took) // 2], took[int(len(took) * 0.99)]
            print(f"{relays} relay(s): round trip p50 {p50:.3f} ms, p99 {p99:.3f} ms ({relays + 1} passes via Redis)")


if __name__ == "__main__":
    main()
