"""One run's processes on one node, as its node agent supervises them: the masters and workers the run's placement
hash puts on the node are started, restarted when they die (exponential backoff with jitter, up to a cap), stopped
when the coordinator moves them away, and measured (CPU and memory, tool subprocesses included).

Children are forked from the agent, which has already imported the runtime, and run the same functions as
``cortex master`` and ``cortex worker``. A fresh interpreter per process would cost about 0.45 s of CPU each, which
on a 2-core machine made starting 23 processes take most of ten seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import multiprocessing
import multiprocessing.process
import os
import random
import signal
import socket
import time
from dataclasses import dataclass, field

import psutil
import redis

from cortex.coord.keys import RunKeys, leader_resource, lock_key
from cortex.models.plan import PlanProcesses
from cortex.observability import logs

ORPHAN_GRACE_S = 12.0
"""How long a run nobody leads keeps its processes (a coordinator taking it over needs up to a 10 s lease)."""
MAX_RESTARTS = 5
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 10.0
STOP_GRACE_S = 5.0


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
    rss: int = 0
    pid: int | None = None
    """Process id of the current incarnation, or of the last one once stopped."""
    ps: psutil.Process | None = field(default=None, repr=False)

    @property
    def alive(self) -> bool:
        """Started and not exited."""
        return self.proc is not None and self.proc.exitcode is None


def _child_main(url: str, run_id: str, child: Child, env: dict[str, str]) -> None:
    """Body of a forked child: the same coroutine ``cortex master`` or ``cortex worker`` runs."""
    from cortex.config import Settings
    from cortex.runtime.master import run_master
    from cortex.runtime.worker import WorkerServices, run_worker

    # what the child inherits (modules, the plan) stays out of its collector's scans: less CPU per task, and the
    # pages it shares with the agent stay shared (a scan writes to every object it visits)
    gc.freeze()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)  # the agent's handlers are not the child's
    os.environ.update(env)
    settings = Settings()
    for handler in list(logging.getLogger(logs.LOGGER).handlers):  # the agent's file is the agent's
        logging.getLogger(logs.LOGGER).removeHandler(handler)
    log = logs.attach(settings.state_dir / "runs" / run_id / "logs" / f"{child.id}.jsonl", child.id, settings.log_level)
    logs.event("started", run_id=run_id, kind=child.kind, pid=os.getpid())
    outage_s = settings.redis_outage_s
    try:
        if child.kind == "master":
            asyncio.run(run_master(url, run_id, child.id.removeprefix("master-"), outage_s=outage_s))
        else:
            assert child.worker_type is not None
            services = WorkerServices.from_settings()
            asyncio.run(run_worker(url, run_id, child.id, child.worker_type, services=services, outage_s=outage_s))
    finally:
        logs.detach(log)  # its last lines: a forked child ends with os._exit, which flushes nothing


def tree_usage(ps: psutil.Process, descendants: dict[int, list[int]]) -> tuple[float, int]:
    """CPU seconds and resident bytes of ``ps`` and every process under it (tool subprocesses): reaped ones in
    its children's times, live ones read one by one."""
    t = ps.cpu_times()
    cpu, rss = t.user + t.system + t.children_user + t.children_system, ps.memory_info().rss
    stack = list(descendants.get(ps.pid, []))
    while stack:
        pid = stack.pop()
        try:
            d = psutil.Process(pid)
            dt = d.cpu_times()
            cpu += dt.user + dt.system
            rss += d.memory_info().rss
        except psutil.Error:
            continue  # it ended while we looked
        stack.extend(descendants.get(pid, []))
    return cpu, rss


def process_tree() -> dict[int, list[int]]:
    """Parent pid -> child pids of this process's descendants (the children it forked and their tools): one scan
    of the process table's parent ids (``Process.children``), then only the descendants are read. A ``Process``
    for every process of the host (``process_iter``) cost 8.7 ms a sample with 66 processes, each node agent every
    second, on the cores the run's own hops wait for."""
    out: dict[int, list[int]] = {}
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):  # it ended while we looked
            out.setdefault(p.ppid(), []).append(p.pid)
    return out


class RunSupervisor:
    """The processes of run ``run_id`` placed on ``node``. The agent calls ``tick`` often (child exits) and
    ``check`` every half second (placement, status, the run's end); ``shutdown`` stops everything."""

    def __init__(self, r: redis.Redis, url: str, run_id: str, node: str) -> None:
        self.redis, self.url, self.run_id, self.node = r, url, run_id, node
        self.keys = RunKeys(run_id)
        plan = PlanProcesses.model_validate_json(r.get(self.keys.plan) or "{}")
        self.types = {w.worker_id: w.worker_type for w in plan.workers}
        self.masters = {f"master-{m.master}" for m in plan.masters}
        self.env = self._env()
        self.children: dict[str, Child] = {}
        self._fork = multiprocessing.get_context("fork")
        self.unled_since: float | None = None
        self.peak_rss = 0
        self.ended = False
        from cortex.config import Settings

        self.log_dir = Settings().state_dir.resolve() / "runs" / run_id / "logs"
        """Where this run's processes on this node write their logs."""

    def _env(self) -> dict[str, str]:
        """What the run asks of its processes' environment: its model, and its catalog unless this node names its
        own way to reach one (a node knows its network; the coordinator's address may not work from here)."""
        s = self.redis.hgetall(self.keys.settings)
        env = {"CORTEX_NODE": self.node}
        if s.get("model"):
            env["CORTEX_MODEL"] = s["model"]
        if s.get("catalog_url") and not os.environ.get("CORTEX_CATALOG_URL"):
            env["CORTEX_CATALOG_URL"] = s["catalog_url"]
        return env

    @property
    def workers(self) -> list[str]:
        """Ids of the worker processes it supervises."""
        return [c.id for c in self.children.values() if c.kind == "worker"]

    def _start(self, child: Child) -> None:
        child.proc = self._fork.Process(
            target=_child_main, args=(self.url, self.run_id, child, self.env), name=child.id, daemon=False
        )
        child.proc.start()
        assert child.proc.pid is not None
        child.pid = child.proc.pid
        child.ps = psutil.Process(child.proc.pid)
        child.cpu_now_s = 0.0
        with contextlib.suppress(redis.RedisError):  # known at once, not at the next sample (Redis away: then)
            self.redis.hset(self.keys.processes, child.id, json.dumps(self.status(child)))

    def _stop(self, children: list[Child]) -> None:
        """SIGTERM, wait up to ``STOP_GRACE_S``, then SIGKILL."""
        live = [c.proc for c in children if c.alive]
        for proc in live:
            assert proc is not None
            proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in live:
            assert proc is not None
            proc.join(timeout=max(0.1, deadline - time.monotonic()))
            if proc.exitcode is None:
                proc.kill()
                proc.join()
        for c in children:
            c.cpu_done_s += c.cpu_now_s
            c.cpu_now_s, c.rss, c.proc = 0.0, 0, None

    def tick(self, now: float) -> None:
        """Reap exited children and restart them when their backoff has passed."""
        for c in self.children.values():
            if c.proc is not None and c.proc.exitcode is not None:
                logs.event("exited", logging.WARNING, run_id=self.run_id, process=c.id, code=c.proc.exitcode)
                c.cpu_done_s += c.cpu_now_s
                c.cpu_now_s, c.rss, c.proc = 0.0, 0, None
                if c.restarts < MAX_RESTARTS:
                    delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**c.restarts) * random.uniform(0.75, 1.25)
                    c.restarts += 1
                    c.next_start = now + delay
            elif c.proc is None and c.next_start and now >= c.next_start:
                c.next_start = 0.0
                self._start(c)

    def reconcile(self) -> None:
        """Start what the placement hash puts here and is not running; stop what it has moved away."""
        placed = {p for p, n in self.redis.hgetall(self.keys.placement).items() if n == self.node}
        for pid in sorted(placed - set(self.children)):
            if pid in self.masters or pid in self.types:
                kind = "master" if pid in self.masters else "worker"
                child = self.children[pid] = Child(id=pid, kind=kind, worker_type=self.types.get(pid))
                self._start(child)
        gone = [c for pid, c in self.children.items() if pid not in placed]
        if gone:  # their new node writes their status (and liveness comes from their heartbeats)
            self._stop(gone)
            for c in gone:
                del self.children[c.id]

    def check(self, now: float) -> bool:
        """Reconcile with the placement; True when the run has ended (its stop key, or its keys are gone) or nobody
        has led it for ``ORPHAN_GRACE_S``."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(self.keys.stop)
        pipe.exists(self.keys.plan)
        pipe.exists(lock_key(leader_resource(self.run_id)))
        stopped, planned, led = pipe.execute()
        if stopped or not planned:
            return True
        if led:
            self.unled_since = None
        else:
            self.unled_since = self.unled_since or now
            if now - self.unled_since > ORPHAN_GRACE_S:
                return True
        self.reconcile()
        return False

    def sample(self, tree: dict[int, list[int]]) -> None:
        """Measure the children and write their status and the run's usage on this node."""
        rss = 0
        for c in self.children.values():
            if c.ps is not None and c.alive:
                with contextlib.suppress(psutil.Error):  # it exited between the check and the read
                    c.cpu_now_s, c.rss = tree_usage(c.ps, tree)
                rss += c.rss
        self.peak_rss = max(self.peak_rss, rss)
        status = {c.id: json.dumps(self.status(c)) for c in self.children.values()}
        usage = {
            "cpu_s": round(self.cpu_s, 3),
            "rss_mib": round(rss / 2**20, 1),
            "peak_rss_mib": round(self.peak_rss / 2**20, 1),
            "processes": sum(1 for c in self.children.values() if c.alive),
            "agent_pid": os.getpid(),
            "host": socket.gethostname(),
            "logs": str(self.log_dir),
        }
        pipe = self.redis.pipeline(transaction=False)
        if status:
            pipe.hset(self.keys.processes, mapping=status)
        pipe.hset(self.keys.nodes, self.node, json.dumps(usage))
        pipe.execute()

    def status(self, c: Child) -> dict[str, object]:
        """What the coordinator reads of one child (``ProcessStatus``)."""
        return {
            "id": c.id,
            "node": self.node,
            "kind": c.kind,
            "worker_type": c.worker_type,
            "pid": c.pid,
            "alive": c.alive,
            "restarts": c.restarts,
        }

    @property
    def cpu_s(self) -> float:
        """CPU seconds of every child, past incarnations included."""
        return sum(c.cpu_done_s + c.cpu_now_s for c in self.children.values())

    @property
    def rss(self) -> int:
        """Resident bytes of the children at the last sample."""
        return sum(c.rss for c in self.children.values())

    def busy(self) -> bool:
        """One of its workers is running a task (the run's ``running`` hash)."""
        mine = set(self.workers)
        return any(w in mine for w in self.redis.hvals(self.keys.running))

    def shutdown(self) -> None:
        """Stop every child and record the final status (the run's keys may already be gone)."""
        self._stop(list(self.children.values()))
        # the coordinator may already have stopped the server; usage was sampled moments ago
        with contextlib.suppress(redis.RedisError):
            self.sample({})
