"""Fault injectors and what "recovered" means for each. Every injector acts on real processes (signals) or the
real Redis server, then waits for the condition that shows the system took the fault in (polling Redis and the
process table with a deadline: there is no event to wait on)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aredis

from cortex.coord.keys import leader_resource, lock_key
from cortex.toolset.chaos import ChaosKeys

if TYPE_CHECKING:
    from cortex.chaos.target import Target

FAULTS = (
    "kill-worker",
    "pause-worker",
    "kill-master",
    "kill-node",
    "restart-redis",
    "stop-catalog",
    "pause-coordinator",
)
RECOVERY_TIMEOUT_S = 90.0
POLL_S = 0.05
CATALOG_OUTAGE_S = 3.0
"""How long ``stop-catalog`` keeps the catalog API down."""


@dataclass
class Fault:
    """One injected fault: what, on whom, when (seconds since execution began) and how long recovery took."""

    kind: str
    target: str
    at_s: float
    recovered_s: float | None = None
    detail: str = ""
    exit_code: int | None = None
    """For ``pause-coordinator``: how the paused coordinator exited once resumed (4: it stepped down)."""


async def _processes(redis: aredis.Redis, target: Target) -> dict[str, dict[str, Any]]:
    return {k: json.loads(v) for k, v in (await redis.hgetall(target.keys.processes)).items()}


async def _busy(redis: aredis.Redis, target: Target, among: set[str]) -> list[str]:
    """The workers of ``among`` running a task, those whose task has started if any (a ``chaos.work`` handler
    counted it): a worker that has claimed a task and not begun it yet would leave nothing to run again."""
    running = await redis.hgetall(target.keys.running)
    counted = await redis.hmget(ChaosKeys(target.run_id).executions, list(running)) if running else []
    begun = {w for w, n in zip(running.values(), counted, strict=True) if n and w in among}
    return sorted(begun or {w for w in running.values() if w in among})


async def _until(
    target: Target, check: Any, timeout_s: float = RECOVERY_TIMEOUT_S, *, past_end: bool = False
) -> float | None:
    """Seconds until ``await check()`` is true, or None after ``timeout_s`` or when the run ended first (unless
    ``past_end``: recovery that may complete as the run shuts down)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s and (past_end or not target.finished()):
        try:
            if await check():
                return time.monotonic() - start
        except (OSError, aredis.RedisError):
            pass  # Redis itself may be the thing recovering
        await asyncio.sleep(POLL_S)
    return None


async def _kill_process(redis: aredis.Redis, target: Target, kind: str, rng: random.Random) -> Fault | None:
    """SIGKILL a live master or worker (a worker that is running a task when there is one)."""
    procs = await _processes(redis, target)
    live = [p for p in procs.values() if p["kind"] == kind and p["alive"] and p["pid"] and p["restarts"] < 4]
    if kind == "worker":
        busy = await _busy(redis, target, {p["id"] for p in live})
        live = [p for p in live if p["id"] in busy] or live
    if not live:
        return None
    victim = rng.choice(sorted(live, key=lambda p: str(p["id"])))
    os.kill(victim["pid"], signal.SIGKILL)
    fault = Fault(f"kill-{kind}", victim["id"], target.elapsed(), detail=f"pid {victim['pid']} on {victim['node']}")

    async def back() -> bool:
        p = (await _processes(redis, target)).get(victim["id"], {})
        return bool(p.get("alive") and p.get("pid") != victim["pid"]) and bool(
            await redis.exists(target.keys.heartbeat(victim["id"]))
        )

    fault.recovered_s = await _until(target, back)
    return fault


async def _pause_worker(redis: aredis.Redis, target: Target, rng: random.Random) -> Fault | None:
    """SIGSTOP a busy worker until its entries have been requeued (its heartbeat lease expired), then SIGCONT it:
    whatever it settles late must be refused."""
    procs = await _processes(redis, target)
    busy = await _busy(redis, target, {w for w, p in procs.items() if p.get("alive") and p["pid"]})
    if not busy:
        return None
    victim = procs[rng.choice(busy)]
    queue = target.keys.queue(victim["worker_type"])
    from cortex.coord.keys import GROUP_WORKERS

    held = await redis.xpending_range(queue, GROUP_WORKERS, min="-", max="+", count=100, consumername=victim["id"])
    os.kill(victim["pid"], signal.SIGSTOP)
    fault = Fault("pause-worker", victim["id"], target.elapsed(), detail=f"{len(held)} entr(ies) held when stopped")

    async def requeued() -> bool:
        left = await redis.xpending_range(queue, GROUP_WORKERS, min="-", max="+", count=100, consumername=victim["id"])
        return not {e["message_id"] for e in left} & {e["message_id"] for e in held}

    try:
        fault.recovered_s = await _until(target, requeued)
    finally:
        os.kill(victim["pid"], signal.SIGCONT)
    return fault


async def _kill_node(redis: aredis.Redis, target: Target, rng: random.Random) -> Fault | None:
    """SIGKILL a worker node's agent and every process it started (its process group)."""
    pids = await target.agent_pids(redis)
    nodes = sorted(n for n in pids if n in target.worker_nodes())
    if len(nodes) < 2:
        return None  # the last worker node: nowhere to move its workers
    node = rng.choice(nodes)
    pid = pids[node]
    moved = [p["id"] for p in (await _processes(redis, target)).values() if p["node"] == node and p["kind"] == "worker"]
    os.killpg(pid, signal.SIGKILL)
    fault = Fault("kill-node", node, target.elapsed(), detail=f"node agent pid {pid} and {len(moved)} worker(s)")

    async def replaced() -> bool:
        """Every worker the coordinator could place (within the healthy nodes' slots) runs on its new node."""
        placement = await redis.hgetall(target.keys.placement)
        if any(w not in placement or placement[w] == node for w in moved):
            return False  # the coordinator has not decided yet
        procs = await _processes(redis, target)
        for w in moved:
            p = procs.get(w, {})
            if placement[w] and not (p.get("alive") and p["node"] == placement[w]):
                return False
            if placement[w] and not await redis.exists(target.keys.heartbeat(w)):
                return False
        return True

    fault.recovered_s = await _until(target, replaced)
    unplaced = [w for w, n in (await redis.hgetall(target.keys.placement)).items() if w in moved and not n]
    if unplaced:
        fault.detail += f"; no free slot for {', '.join(sorted(unplaced))}"
    return fault


async def _restart_redis(redis: aredis.Redis, target: Target) -> Fault:
    """SIGKILL the Redis server and start it again on its append-only file."""
    before = int(await redis.xlen(target.keys.results))
    await asyncio.to_thread(target.server.crash_and_restart)
    fault = Fault("restart-redis", "redis", target.elapsed(), detail=f"{before} results settled before")

    async def flowing() -> bool:
        return int(await redis.xlen(target.keys.results)) > before

    fault.recovered_s = await _until(target, flowing)
    return fault


async def _stop_catalog(target: Target) -> Fault | None:
    """Stop the catalog API for ``CATALOG_OUTAGE_S``, start it again on the same port; recovered once every
    worker's queue of catalog writes has been replayed."""
    if target.catalog is None:
        return None
    await asyncio.to_thread(target.catalog.stop)
    fault = Fault("stop-catalog", target.catalog.url, target.elapsed(), detail=f"down for {CATALOG_OUTAGE_S:.0f} s")
    await asyncio.sleep(CATALOG_OUTAGE_S)  # the outage itself
    await asyncio.to_thread(target.catalog.start)
    queues = target.state_dir / "catalog-cache"

    async def drained() -> bool:
        return not any(f.stat().st_size for f in queues.glob("*/pending-writes.jsonl"))

    fault.recovered_s = await _until(target, drained, past_end=True)
    return fault


async def _pause_coordinator(redis: aredis.Redis, target: Target) -> Fault | None:
    """SIGSTOP the leading coordinator; a standby (``cortex takeover``) takes the run over once the lease lapses;
    then SIGCONT the old one, which must find it lost the lease and exit without touching the run."""
    old = target.leader()
    if old.poll() is not None:
        return None
    os.kill(old.pid, signal.SIGSTOP)
    fault = Fault("pause-coordinator", f"coordinator pid {old.pid}", target.elapsed())
    new = target.launch("takeover", target.run_id, "--wait", "120")
    lease = lock_key(leader_resource(target.run_id))

    async def taken() -> bool:
        return str(await redis.get(lease) or "").startswith(f"coord-{new.pid}|")

    try:
        fault.recovered_s = await _until(target, taken)
    finally:
        os.kill(old.pid, signal.SIGCONT)
    try:
        code = await asyncio.to_thread(old.wait, 60)
    except subprocess.TimeoutExpired:
        old.kill()
        code = await asyncio.to_thread(old.wait)
    fault.detail = f"taken over by pid {new.pid}; the old coordinator, resumed, exited with {code}"
    fault.exit_code = code
    return fault


async def inject(kind: str, redis: aredis.Redis, target: Target, rng: random.Random) -> Fault | None:
    """Inject one fault of ``kind``; None when there is nothing to inject it into right now."""
    if kind in ("kill-worker", "kill-master"):
        return await _kill_process(redis, target, kind.removeprefix("kill-"), rng)
    if kind == "pause-worker":
        return await _pause_worker(redis, target, rng)
    if kind == "kill-node":
        return await _kill_node(redis, target, rng)
    if kind == "restart-redis":
        return await _restart_redis(redis, target)
    if kind == "stop-catalog":
        return await _stop_catalog(target)
    if kind == "pause-coordinator":
        return await _pause_coordinator(redis, target)
    raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
