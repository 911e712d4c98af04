"""The jobs bench_peers.py gives Celery, RQ and ARQ: a no-op that counts itself, and a chain link that records
when it started and ended (and, for ARQ, which has no dependencies, enqueues the next link itself).

Every job makes one extra Redis call to be counted (``INCR``) or timed (``HSET``); Cortex's tasks make none (its
figures come from its own records), so the peers carry that small cost. Configured from the environment:
``PEERS_REDIS_SOCKET`` (the unix socket of the shared server).
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery

SOCKET = os.environ.get("PEERS_REDIS_SOCKET", "/nonexistent")
DONE = "peers:done"
TIMES = "peers:times"
_client: redis.Redis | None = None


def client() -> redis.Redis:
    """One connection per worker process, made on first use."""
    global _client
    if _client is None:
        _client = redis.Redis(unix_socket_path=SOCKET)
    return _client


def noop() -> None:
    """The no-op job: counted, nothing else."""
    client().incr(DONE)


def link(i: int) -> None:
    """A chain link: its start and end, recorded after the fact so the recording is outside the hop."""
    started = time.time()
    client().hset(TIMES, str(i), f"{started} {time.time()}")


# --- Celery --------------------------------------------------------------------------------------------------
app = Celery("peers", broker=f"redis+socket://{SOCKET}", backend=None)
app.conf.update(task_ignore_result=True, worker_prefetch_multiplier=4, broker_connection_retry_on_startup=True)
celery_noop = app.task(name="peers.noop")(noop)
celery_link = app.task(name="peers.link")(link)


# --- ARQ ----------------------------------------------------------------------------------------------------
async def arq_noop(ctx: dict[str, Any]) -> None:
    await ctx["redis"].incr(DONE)


async def arq_link(ctx: dict[str, Any], i: int, last: int) -> None:
    started = ended = time.time()  # a no-op: it ends as it starts, and its end releases the next link
    if i < last:  # ARQ has no dependencies: a link enqueues the next one as it ends
        await ctx["redis"].enqueue_job("arq_link", i + 1, last)
    await ctx["redis"].hset(TIMES, str(i), f"{started} {ended}")


def _arq_settings() -> Any:
    from arq.connections import RedisSettings

    class WorkerSettings:
        functions = [arq_noop, arq_link]
        redis_settings = RedisSettings(unix_socket_path=SOCKET)
        poll_delay = 0.01
        max_jobs = 1
        keep_result = 0

    return WorkerSettings


WorkerSettings = _arq_settings()
