"""The node supervisor: starts the node's master and worker processes, restarts them when they die
(exponential backoff with jitter, up to a cap), reports their status and the CPU and memory they use."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import psutil
import redis

from cortex.coord.keys import RunKeys
from cortex.models import Plan

MAX_RESTARTS = 5
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 10.0


@dataclass
class Child:
    """One supervised process."""

    id: str
    kind: str
    argv: list[str]
    worker_type: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    cpu_done_s: float = 0.0
    """CPU seconds of this child's earlier incarnations."""
    cpu_now_s: float = 0.0
    ps: psutil.Process | None = field(default=None, repr=False)


def _children(plan: Plan, run_id: str, node: str) -> list[Child]:
    base = [sys.executable, "-m", "cortex"]
    out = [
        Child(
            id=f"master-{m.master}",
            kind="master",
            argv=[*base, "master", "--run", run_id, "--name", m.master],
        )
        for m in plan.masters
        if m.node == node
    ]
    out += [
        Child(
            id=w.worker_id,
            kind="worker",
            worker_type=w.worker_type,
            argv=[*base, "worker", "--run", run_id, "--id", w.worker_id, "--type", w.worker_type],
        )
        for w in plan.workers
        if w.node == node
    ]
    return out


class Supervisor:
    """Supervises one node's processes until SIGTERM or until its parent (the coordinator) goes away."""

    def __init__(self, url: str, run_id: str, node: str) -> None:
        self.url = url
        self.keys = RunKeys(run_id)
        self.node = node
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        plan = Plan.model_validate_json(self.redis.get(self.keys.plan) or "{}")
        self.children = _children(plan, run_id, node)
        self.stopping = False
        self.parent = os.getppid()
        self.peak_rss = 0

    def _start(self, child: Child) -> None:
        env = {**os.environ, "CORTEX_REDIS_URL": self.url, "CORTEX_NODE": self.node}
        child.proc = subprocess.Popen(child.argv, env=env, stdin=subprocess.DEVNULL)
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
        while not self.stopping and os.getppid() == self.parent:
            now = time.monotonic()
            for c in self.children:
                if c.proc is not None and c.proc.poll() is not None:
                    self._reap(c, now)
                elif c.proc is None and c.restarts <= MAX_RESTARTS and c.next_start and now >= c.next_start:
                    c.next_start = 0.0
                    self._start(c)
            if now - last_sample >= 0.5:
                self._sample()
                last_sample = now
            time.sleep(0.05)  # the supervision tick: child exits are polled, there is no event to wait on
        self.shutdown()

    def shutdown(self) -> None:
        """SIGTERM every child, wait up to 5 s, then SIGKILL the rest; record final usage."""
        live = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for c in live:
            assert c.proc is not None
            c.proc.terminate()
        deadline = time.monotonic() + 5
        for c in live:
            assert c.proc is not None
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait()
        # The coordinator may already have stopped the server; usage was sampled moments ago.
        with contextlib.suppress(redis.RedisError):
            self._sample()
        self.redis.close()


def run_supervisor(url: str, run_id: str, node: str) -> None:
    """Entry point of ``cortex supervisor``."""
    Supervisor(url, run_id, node).run()
