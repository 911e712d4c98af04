"""The node supervisor: starts the node's master and worker processes, restarts them when they die
(exponential backoff with jitter, up to a cap), reports their status and the CPU and memory they use.

Children are forked from the supervisor, which has already imported the runtime, and run the same functions as
``cortex master`` and ``cortex worker`` (what a Kubernetes pod runs). A fresh interpreter per process would cost
about 0.45 s of CPU each, which on a 2-core machine made starting 23 processes take most of ten seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.process
import os
import random
import signal
import time
from dataclasses import dataclass, field

import psutil
import redis

from cortex.coord.keys import RunKeys, leader_resource, lock_key
from cortex.models import Plan

ORPHAN_GRACE_S = 12.0
"""How long a supervisor whose coordinator died waits for another to take the run over (a lease is 10 s)."""
MAX_RESTARTS = 5
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 10.0


@dataclass
class Child:
    """One supervised process."""

    id: str
    kind: str
    worker_type: str | None = None
    proc: multiprocessing.process.BaseProcess | None = None
    restarts: int = 0
    next_start: float = 0.0
    cpu_done_s: float = 0.0
    """CPU seconds of this child's earlier incarnations."""
    cpu_now_s: float = 0.0
    ps: psutil.Process | None = field(default=None, repr=False)


def _children(plan: Plan, node: str) -> list[Child]:
    out = [Child(id=f"master-{m.master}", kind="master") for m in plan.masters if m.node == node]
    out += [Child(id=w.worker_id, kind="worker", worker_type=w.worker_type) for w in plan.workers if w.node == node]
    return out


def _child_main(url: str, run_id: str, child_id: str, kind: str, worker_type: str | None) -> None:
    """Body of a forked child: the same coroutine ``cortex master`` or ``cortex worker`` runs."""
    from cortex.config import Settings
    from cortex.runtime.master import run_master
    from cortex.runtime.worker import WorkerServices, run_worker

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)  # the supervisor's handlers are not the child's
    outage_s = Settings().redis_outage_s
    if kind == "master":
        asyncio.run(run_master(url, run_id, child_id.removeprefix("master-"), outage_s=outage_s))
    else:
        assert worker_type is not None
        services = WorkerServices.from_settings()
        asyncio.run(run_worker(url, run_id, child_id, worker_type, services=services, outage_s=outage_s))


class Supervisor:
    """Supervises one node's processes until SIGTERM, the run's stop key, or the run has had no coordinator for
    a while (its parent gone and nobody holding the run's lease)."""

    def __init__(self, url: str, run_id: str, node: str) -> None:
        self.url = url
        self.keys = RunKeys(run_id)
        self.node = node
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        plan = Plan.model_validate_json(self._read_plan())
        self.run_id = run_id
        self.plan = plan
        self.children = _children(plan, node)
        self._fork = multiprocessing.get_context("fork")
        self.stopping = False
        self.parent = os.getppid()
        self.orphaned_at: float | None = None
        self.peak_rss = 0

    def _read_plan(self) -> str:
        """The run's plan, waiting out a Redis outage (up to ``CORTEX_REDIS_OUTAGE_S``) at start."""
        from cortex.config import Settings

        deadline = time.monotonic() + Settings().redis_outage_s
        while True:
            try:
                return self.redis.get(self.keys.plan) or "{}"
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # Redis is away: nothing to do until it answers

    def _start(self, child: Child) -> None:
        child.proc = self._fork.Process(
            target=_child_main, args=(self.url, self.run_id, child.id, child.kind, child.worker_type), name=child.id
        )
        child.proc.start()
        assert child.proc.pid is not None
        child.ps = psutil.Process(child.proc.pid)
        child.cpu_now_s = 0.0

    def _reap(self, child: Child, now: float) -> None:
        """Handle an exited child: count it and schedule its restart with backoff and jitter."""
        child.cpu_done_s += child.cpu_now_s
        child.proc = None
        if child.restarts >= MAX_RESTARTS:
            return
        delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**child.restarts) * random.uniform(0.75, 1.25)
        child.restarts += 1
        child.next_start = now + delay

    def _orphaned(self, now: float, led: bool) -> bool:
        """The run has no coordinator: the one that started us is gone and no other has held the run's lease (as
        one taking the run over would) for ``ORPHAN_GRACE_S``."""
        if os.getppid() == self.parent or led:
            self.orphaned_at = None
            return False
        self.orphaned_at = self.orphaned_at or now
        return now - self.orphaned_at > ORPHAN_GRACE_S

    def _reconcile(self) -> None:
        """Start the workers the coordinator moved to this node from a failed one (the placement hash)."""
        mine = {c.id for c in self.children}
        types = {w.worker_id: w.worker_type for w in self.plan.workers}
        for worker_id, node in sorted(self.redis.hgetall(self.keys.placement).items()):
            if node == self.node and worker_id not in mine and worker_id in types:
                child = Child(id=worker_id, kind="worker", worker_type=types[worker_id])
                self.children.append(child)
                self._start(child)

    def _sample(self) -> None:
        rss = 0
        for c in self.children:
            if c.ps is not None and c.proc is not None:
                try:
                    t = c.ps.cpu_times()
                    c.cpu_now_s = t.user + t.system
                    rss += c.ps.memory_info().rss
                except psutil.Error:
                    pass
        self.peak_rss = max(self.peak_rss, rss)
        status = {
            c.id: json.dumps(
                {
                    "id": c.id,
                    "node": self.node,
                    "kind": c.kind,
                    "worker_type": c.worker_type,
                    "pid": c.proc.pid if c.proc else None,
                    "alive": c.proc is not None,
                    "restarts": c.restarts,
                }
            )
            for c in self.children
        }
        usage = {
            "cpu_s": round(sum(c.cpu_done_s + c.cpu_now_s for c in self.children), 3),
            "rss_mib": round(rss / 2**20, 1),
            "peak_rss_mib": round(self.peak_rss / 2**20, 1),
            "processes": sum(1 for c in self.children if c.proc is not None),
            "supervisor_pid": os.getpid(),
        }
        pipe = self.redis.pipeline(transaction=False)
        if status:
            pipe.hset(self.keys.processes, mapping=status)
        pipe.hset(self.keys.nodes, self.node, json.dumps(usage))
        pipe.execute()

    def run(self) -> None:
        """Start every child, then watch: restart the dead, sample usage, stop everything on SIGTERM."""
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stopping", True))
        for c in self.children:
            self._start(c)
        last_sample = 0.0
        while not self.stopping:
            now = time.monotonic()
            for c in self.children:
                if c.proc is not None and c.proc.exitcode is not None:
                    self._reap(c, now)
                elif c.proc is None and c.restarts <= MAX_RESTARTS and c.next_start and now >= c.next_start:
                    c.next_start = 0.0
                    self._start(c)
            if now - last_sample >= 0.5:
                try:
                    self._reconcile()
                    self._sample()
                    ended = bool(self.redis.exists(self.keys.stop))
                    led = bool(self.redis.exists(lock_key(leader_resource(self.run_id))))
                except redis.RedisError:  # Redis restarting (or gone with the run): decide on the parent alone
                    ended = led = False
                self.stopping = ended or self._orphaned(now, led)
                last_sample = now
            time.sleep(0.05)  # the supervision tick: child exits are polled, there is no event to wait on
        self.shutdown()

    def shutdown(self) -> None:
        """SIGTERM every child, wait up to 5 s, then SIGKILL the rest; record final usage."""
        live = [c.proc for c in self.children if c.proc is not None and c.proc.exitcode is None]
        for proc in live:
            proc.terminate()
        deadline = time.monotonic() + 5
        for proc in live:
            proc.join(timeout=max(0.1, deadline - time.monotonic()))
            if proc.exitcode is None:
                proc.kill()
                proc.join()
        # The coordinator may already have stopped the server; usage was sampled moments ago.
        with contextlib.suppress(redis.RedisError):
            self._sample()
        self.redis.close()


def run_supervisor(url: str, run_id: str, node: str) -> None:
    """Entry point of ``cortex supervisor``."""
    import cortex.runtime.master
    import cortex.runtime.worker
    import cortex.toolset.registry

    cortex.toolset.registry.known_kinds()  # import every handler once, before forking, so children share them
    del cortex.runtime.master, cortex.runtime.worker
    Supervisor(url, run_id, node).run()
