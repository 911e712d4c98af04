"""Catalog benchmark: 100,000 assets with lineage in Redis, the API in its own process (uvicorn), requests over
HTTP on loopback. Prints p50/p99 of client-observed and server-side (Server-Timing) latency for get by id,
filtered list, search and lineage at depth 3, and throughput with concurrent client processes.

    python bench/bench_catalog.py [--assets 100000] [--requests 2000] [--clients 4]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis.asyncio as aredis

from _common import machine
from cortex.catalog.store import CatalogStore
from cortex.coord.server import EmbeddedRedis
from cortex.models.assets import Asset, LineageEdge

TYPES = ["repository", "package", "image", "workload", "service", "workflow"]
WORDS = ["payments", "inventory", "auth", "web", "search", "billing", "ledger", "orders", "users", "catalog"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(url: str, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    redis = aredis.Redis.from_url(url, decode_responses=True, max_connections=64)
    store = CatalogStore(redis)

    def asset(i: int) -> Asset:
        w = rng.choice(WORDS)
        return Asset(
            id=f"a{i:06d}",
            type=TYPES[i % len(TYPES)],
            name=f"{w}-{i}",
            namespace=f"ns{i % 20}",
            owner=f"team-{i % 50}",
            tags=[w, f"tier{i % 3}"],
            health={"status": rng.choice(["healthy", "degraded", "unknown"])},
        )

    started = time.perf_counter()
    for lo in range(0, n, 64):
        await asyncio.gather(*(store.upsert(asset(i)) for i in range(lo, min(n, lo + 64))))
    edges = [(i, rng.randrange(i)) for i in range(1, n) for _ in range(2 if i % 3 else 1)]
    for lo in range(0, len(edges), 64):
        await asyncio.gather(
            *(
                store.link(LineageEdge(upstream=f"a{u:06d}", downstream=f"a{d:06d}", relation="feeds"))
                for d, u in edges[lo : lo + 64]
            )
        )
    print(f"loaded {n:,} assets and {len(edges):,} edges in {time.perf_counter() - started:.1f} s", flush=True)
    await redis.aclose()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


def measure(base: str, n: int, name: str, path: Callable[[random.Random], str]) -> None:
    rng = random.Random(7)
    client_ms, server_ms = [], []
    with httpx.Client(base_url=base, timeout=30) as c:
        for _ in range(50):  # warm-up
            c.get(path(rng))
        for _ in range(n):
            t = time.perf_counter()
            r = c.get(path(rng))
            client_ms.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
            server_ms.append(float(r.headers["server-timing"].split("dur=")[1]))
    print(
        f"{name:<28} client p50 {pct(client_ms, 0.5):6.2f} ms  p99 {pct(client_ms, 0.99):6.2f} ms   "
        f"server p50 {pct(server_ms, 0.5):6.2f} ms  p99 {pct(server_ms, 0.99):6.2f} ms",
        flush=True,
    )


def _hammer(args: tuple[str, int, int]) -> int:
    base, seconds, seed = args
    rng = random.Random(seed)
    done = 0
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=base, timeout=30) as c:
        while time.monotonic() < deadline:
            c.get(f"/assets/a{rng.randrange(100_000):06d}")
            done += 1
    return done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    with EmbeddedRedis(appendonly=False) as server:
        asyncio.run(load(server.url, args.assets))
        port = free_port()
        env = {**os.environ, "CORTEX_REDIS_URL": server.url}
        api = subprocess.Popen(
            [sys.executable, "-m", "cortex", "catalog", "serve", "--read-open", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("catalog API did not start")
                time.sleep(0.1)  # waiting for the server process to listen
            n, top = args.requests, args.assets
            measure(base, n, "get by id", lambda r: f"/assets/a{r.randrange(top):06d}")
            measure(
                base, n, "list type+tag, 50 per page", lambda r: f"/assets?type={r.choice(TYPES)}&tag=tier1&limit=50"
            )
            measure(base, n, "search two words", lambda r: f"/search?q={r.choice(WORDS)}+tier{r.randrange(3)}&limit=20")
            measure(base, n, "lineage depth 3 (both)", lambda r: f"/lineage/a{r.randrange(top):06d}?depth=3")
            with multiprocessing.get_context("spawn").Pool(args.clients) as pool:
                counts = pool.map(_hammer, [(base, args.seconds, s) for s in range(args.clients)])
            print(
                f"throughput, {args.clients} client processes, get by id: {sum(counts) / args.seconds:,.0f} requests/s",
                flush=True,
            )
        finally:
            api.terminate()
            api.wait(10)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
