"""Cortex side by side with Celery, RQ and ARQ on one Redis server, in one run: no-op throughput with 4 workers and
the idle chain hop (a task's end to the start of the task that depends on it), with the ratios.

Each system gets the same embedded Redis (unix socket, no append-only file), emptied between measurements, and 4
worker processes started before the clock starts:

- Cortex: its engine as ``cortex run`` drives it (coordinator, node agents, one master, 4 workers); throughput is
  N independent no-op tasks over the measured execution phase; the chain is N no-op tasks, each depending on the
  one before; its times come from the report.
- Celery: 4 ``celery worker --pool solo`` processes; throughput from the first enqueue until every job counted
  itself; the chain is a Celery ``chain``.
- RQ: 4 ``rq worker --worker-class rq.worker.SimpleWorker`` processes; the chain uses ``depends_on``.
- ARQ: 4 ``arq`` workers polling every 10 ms (``max_jobs=1``); ARQ has no dependencies, so each link enqueues
  the next as it ends.

The peers' jobs make one Redis call to be counted or timed (``bench/peers_jobs.py``); Cortex's make none.
Needs the ``bench`` extra: ``pip install -e '.[bench]'``.

    python bench/bench_peers.py [--tasks 2000] [--chain 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from _common import bench_plan, machine, task
from cortex.coord.server import EmbeddedRedis
from cortex.models.task import Task
from cortex.runtime.coordinator import Coordinator

BENCH = Path(__file__).resolve().parent
WORKERS = 4


def percentiles(values: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``values`` (milliseconds)."""
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return pick(0.5), pick(0.99)


def hops_of(times: list[tuple[float, float]]) -> list[float]:
    """Milliseconds from each link's end to the next link's start, ``times`` in chain order."""
    return [(b[0] - a[1]) * 1000 for a, b in zip(times, times[1:], strict=False)]


# ------------------------------------------------------------------------------------------------- Cortex
def cortex_report(url: str, tasks: list[Task]) -> dict[str, Any]:
    """Run ``tasks`` through the engine on the shared server; every task must succeed."""
    with tempfile.TemporaryDirectory(prefix="cortex-bench-peers-") as state:
        result = asyncio.run(Coordinator(bench_plan(tasks, WORKERS), url, Path(state)).run())
    report = result.report.model_dump(mode="json")
    assert all(t["state"] == "succeeded" for t in report["tasks"])
    return report


def cortex_run(url: str, n: int, chain_n: int) -> tuple[float, list[float]]:
    report = cortex_report(url, [task(f"t{i:06d}") for i in range(n)])
    rate = float(n / report["phases"]["measured_s"]["execution"])
    report = cortex_report(url, [task(f"c{i:05d}", deps=[f"c{i - 1:05d}"] if i else []) for i in range(chain_n)])
    links = sorted(report["tasks"], key=lambda t: t["id"])
    return rate, hops_of([(t["started_at"], t["finished_at"]) for t in links])


# ------------------------------------------------------------------------------------------------- peers
@contextmanager
def workers(argv: list[str], socket: str) -> Iterator[None]:
    """``WORKERS`` processes of ``argv``, given a second to start, stopped (and reaped) afterwards."""
    env = {**os.environ, "PEERS_REDIS_SOCKET": socket, "PYTHONPATH": str(BENCH)}
    procs = [
        subprocess.Popen(argv, cwd=BENCH, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(WORKERS)
    ]
    try:
        time.sleep(3.0)  # imports and registration; the clock starts after
        assert all(p.poll() is None for p in procs), f"a worker of {argv[0]} exited at start"
        yield
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wait_until(check: Callable[[], bool], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the peer did not finish in time")
        time.sleep(0.002)


def peer_times(r: redis.Redis, n: int) -> list[tuple[float, float]]:
    import peers_jobs

    wait_until(lambda: r.hlen(peers_jobs.TIMES) >= n)
    raw = r.hgetall(peers_jobs.TIMES)
    out = []
    for i in range(n):
        started, ended = raw[str(i).encode()].split()
        out.append((float(started), float(ended)))
    return out


def celery_run(socket: str, n: int, chain_n: int) -> tuple[float, list[float]]:
    from celery import chain

    import peers_jobs

    argv = [sys.executable, "-m", "celery", "-A", "peers_jobs", "worker", "--pool", "solo", "--loglevel", "WARNING"]
    r = redis.Redis(unix_socket_path=socket)
    with workers(argv, socket):
        started = time.monotonic()
        for _ in range(n):
            peers_jobs.celery_noop.delay()
        wait_until(lambda: int(r.get(peers_jobs.DONE) or 0) >= n)
        rate = n / (time.monotonic() - started)
        chain(*(peers_jobs.celery_link.si(i) for i in range(chain_n))).delay()
        hops = hops_of(peer_times(r, chain_n))
    return rate, hops


def rq_run(socket: str, n: int, chain_n: int) -> tuple[float, list[float]]:
    from rq import Queue

    import peers_jobs

    r = redis.Redis(unix_socket_path=socket)
    argv = [sys.executable, "-m", "rq.cli", "worker", "--worker-class", "rq.worker.SimpleWorker", "--url",
            f"unix://{socket}", "--quiet"]  # fmt: skip
    queue = Queue(connection=r)
    with workers(argv, socket):
        started = time.monotonic()
        for _ in range(n):
            queue.enqueue(peers_jobs.noop)
        wait_until(lambda: int(r.get(peers_jobs.DONE) or 0) >= n)
        rate = n / (time.monotonic() - started)
        previous = None
        for i in range(chain_n):
            previous = queue.enqueue(peers_jobs.link, i, depends_on=previous)
        hops = hops_of(peer_times(r, chain_n))
    return rate, hops


def arq_run(socket: str, n: int, chain_n: int) -> tuple[float, list[float]]:
    from arq import create_pool

    import peers_jobs

    r = redis.Redis(unix_socket_path=socket)
    argv = [sys.executable, "-m", "arq", "peers_jobs.WorkerSettings"]

    async def enqueue(jobs: list[tuple[str, tuple[int, ...]]]) -> None:
        pool = await create_pool(peers_jobs.WorkerSettings.redis_settings)
        for name, args in jobs:
            await pool.enqueue_job(name, *args)
        await pool.aclose()

    with workers(argv, socket):
        started = time.monotonic()
        asyncio.run(enqueue([("arq_noop", ())] * n))
        wait_until(lambda: int(r.get(peers_jobs.DONE) or 0) >= n)
        rate = n / (time.monotonic() - started)
        asyncio.run(enqueue([("arq_link", (0, chain_n - 1))]))
        hops = hops_of(peer_times(r, chain_n))
    return rate, hops


PEERS = {"Celery (solo pool)": celery_run, "RQ (SimpleWorker)": rq_run, "ARQ (10 ms poll)": arq_run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--chain", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    try:
        import arq  # noqa: F401
        import celery  # noqa: F401
        import rq  # noqa: F401
    except ImportError as exc:
        sys.exit(f"the peers are not installed ({exc}): pip install -e '.[bench]'")
    print(f"machine: {machine()}")
    print(f"{WORKERS} workers each, {args.tasks} no-op tasks, a chain of {args.chain}; median of {args.repeat} runs")
    results: dict[str, tuple[float, float, float]] = {}
    with EmbeddedRedis(appendonly=False) as server:
        socket = server.url.removeprefix("unix://")
        os.environ["PEERS_REDIS_SOCKET"] = socket  # before peers_jobs is imported here: it reads it once
        r = redis.Redis(unix_socket_path=socket)
        systems: dict[str, Callable[[], tuple[float, list[float]]]] = {
            "Cortex": lambda: cortex_run(server.url, args.tasks, args.chain),
            **{name: (lambda m=measure: m(socket, args.tasks, args.chain)) for name, measure in PEERS.items()},
        }
        for name, measure in systems.items():
            runs = []
            for _ in range(args.repeat):
                r.flushall()
                rate, hops = measure()
                runs.append((rate, percentiles(hops)))
            print(f"  {name}: {[round(x[0]) for x in runs]} tasks/s", flush=True)
            results[name] = (
                statistics.median(x[0] for x in runs),
                statistics.median(x[1][0] for x in runs),
                statistics.median(x[1][1] for x in runs),
            )
    best = max(v[0] for k, v in results.items() if k != "Cortex")
    print(f"{'system':<20} {'tasks/s':>8} {'hop p50 ms':>11} {'hop p99 ms':>11}")
    for name, (rate, p50, p99) in results.items():
        print(f"{name:<20} {rate:>8.0f} {p50:>11.2f} {p99:>11.2f}")
    cortex = results["Cortex"]
    print(f"Cortex throughput / best peer's: {cortex[0] / best:.2f}x (target 5x); chain hop p50 {cortex[1]:.2f} ms "
          f"(target <= 2 ms), p99 {cortex[2]:.2f} ms (target <= 5 ms)")  # fmt: skip


if __name__ == "__main__":
    main()
