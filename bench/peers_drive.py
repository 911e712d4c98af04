"""The peers' side of bench_peers.py, run in the peers' own environment (``bench_peers.py`` makes it: Celery, RQ
and ARQ pin redis-py below 6, Cortex needs 8): one system's no-op throughput and idle chain hops against the shared
server, printed as one JSON object (``{"rate": tasks/s, "hops": [ms, ...]}``). Imports nothing of Cortex.

    <peers venv>/bin/python bench/peers_drive.py {celery|rq|arq} SOCKET TASKS CHAIN
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

BENCH = Path(__file__).resolve().parent
WORKERS = 4


def hops_of(times: list[tuple[float, float]]) -> list[float]:
    """Milliseconds from each link's end to the next link's start, ``times`` in chain order."""
    return [(b[0] - a[1]) * 1000 for a, b in zip(times, times[1:], strict=False)]


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


def main() -> None:
    system, socket, n, chain_n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    os.environ["PEERS_REDIS_SOCKET"] = socket  # before peers_jobs is imported: it reads it once
    rate, hops = {"celery": celery_run, "rq": rq_run, "arq": arq_run}[system](socket, n, chain_n)
    print(json.dumps({"rate": rate, "hops": hops}))


if __name__ == "__main__":
    main()
