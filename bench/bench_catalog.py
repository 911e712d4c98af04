"""Catalog benchmark: 100,000 assets with lineage in Redis, the API in its own processes (``cortex catalog serve
--workers N``, with a read token required and sent), requests over HTTP on loopback. Prints p50/p99 of
client-observed and server-side (Server-Timing) latency for get by id, filtered list, search and lineage at depth
3, one request at a time; then get-by-id throughput with concurrent client processes, each holding keep-alive
connections (a minimal HTTP/1.1 client: the load generator shares the machine's cores with the server).

    python bench/bench_catalog.py [--assets 100000] [--requests 2000] [--clients 2] [--connections 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis.asyncio as aredis

from _common import machine
from cortex.catalog.config import new_token
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


def loop_name() -> str:
    """The event loop uvicorn picks ("auto": uvloop when installed)."""
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def measure(base: str, token: str, n: int, name: str, path: Callable[[random.Random], str]) -> None:
    rng = random.Random(7)
    client_ms, server_ms = [], []
    with httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"}) as c:
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


async def _connection(
    host: str, port: int, token: str, deadline: float, top: int, rng: random.Random, lat: list[float]
) -> int:
    """One keep-alive HTTP/1.1 connection issuing get-by-id requests until ``deadline``: a minimal client (httpx
    spent more CPU per request than the server, on the same two cores), checking every status."""
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:
        while time.monotonic() < deadline:
            path = f"/assets/a{rng.randrange(top):06d}"
            t = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12]
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            lat.append((time.perf_counter() - t) * 1000)
            if status != b"200":
                raise RuntimeError(f"GET {path}: status {status.decode()}")
            done += 1
    finally:
        writer.close()
    return done


def _hammer(args: tuple[str, int, int, int, int, str, int]) -> tuple[int, list[float]]:
    host, port, seconds, seed, connections, token, top = args
    lat: list[float] = []

    async def run() -> int:
        deadline = time.monotonic() + seconds
        counts = await asyncio.gather(
            *(
                _connection(host, port, token, deadline, top, random.Random(seed * 100 + i), lat)
                for i in range(connections)
            )
        )
        return sum(counts)

    return asyncio.run(run()), lat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--connections", type=int, default=4, help="keep-alive connections per client process")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="catalog worker processes (cortex catalog serve)")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    token, spec = new_token("bench", ["read"])  # auth kept: every request carries a bearer token, checked
    with EmbeddedRedis(appendonly=False) as server, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(load(server.url, args.assets))
        config = Path(tmp, "catalog.json")
        config.write_text(json.dumps({"tokens": [json.loads(spec.model_dump_json())]}))
        port = free_port()
        env = {**os.environ, "CORTEX_REDIS_URL": server.url}
        serve = ["catalog", "serve", "--config", str(config), "--port", str(port), "--workers", str(args.workers)]
        api = subprocess.Popen(
            [sys.executable, "-m", "cortex", *serve], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
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
            print(
                f"catalog: {args.workers} worker process(es), uvicorn loop {loop_name()}; bearer token on every request"
            )
            measure(base, token, n, "get by id", lambda r: f"/assets/a{r.randrange(top):06d}")
            measure(
                base,
                token,
                n,
                "list type+tag, 50 per page",
                lambda r: f"/assets?type={r.choice(TYPES)}&tag=tier1&limit=50",
            )
            measure(
                base,
                token,
                n,
                "search two words",
                lambda r: f"/search?q={r.choice(WORDS)}+tier{r.randrange(3)}&limit=20",
            )
            measure(base, token, n, "lineage depth 3 (both)", lambda r: f"/lineage/a{r.randrange(top):06d}?depth=3")
            jobs = [("127.0.0.1", port, args.seconds, s, args.connections, token, top) for s in range(args.clients)]
            with multiprocessing.get_context("spawn").Pool(args.clients) as pool:
                results = pool.map(_hammer, jobs)
            rate = sum(c for c, _ in results) / args.seconds
            lat = [x for _, ls in results for x in ls]
            cores = os.cpu_count() or 1
            print(
                f"throughput, get by id, {args.clients} client processes x {args.connections} connections "
                f"(clients on the same {cores} cores): {rate:,.0f} requests/s ({rate / cores:,.0f} per core), "
                f"p50 {pct(lat, 0.5):.2f} ms, p99 {pct(lat, 0.99):.2f} ms under that load",
                flush=True,
            )
        finally:
            api.terminate()
            api.wait(10)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
