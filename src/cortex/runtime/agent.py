"""The node agent (``cortex node``): one per host, serving many runs over its lifetime.

It registers the node in its pool (``PoolKeys``: capacity, labels, host, version), keeps a heartbeat lease, picks up
the runs that coordinators place processes on it (the node's ``runs`` set), supervises each run's processes
(``RunSupervisor``), measures everything it started, serves its own ``/metrics``, and on SIGTERM drains: it takes
no new run, asks its workers to finish their current task and take no other, stops them, and deregisters, so the
coordinators move its workers elsewhere at once instead of waiting for the heartbeat to lapse.

Local mode is the same agent: the coordinator starts one per plan node as its child, in a pool of the run's own,
with ``for_run`` (the agent exits once that run is over).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass, field

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from cortex.coord.keys import PoolKeys, RunKeys
from cortex.errors import StartFailed
from cortex.models.cluster import NodeInfo
from cortex.observability import logs
from cortex.runtime.supervisor import ORPHAN_GRACE_S, STOP_GRACE_S, RunSupervisor, process_tree

NODE_TTL_MS = 5000
"""A node is failed once its agent has not refreshed its heartbeat for this long."""
BEAT_S = 0.5
SAMPLE_S = 1.0
FIRST_RUN_WAIT_S = 60.0
"""How long an agent started for one run (local mode) waits for that run to place anything on it."""


@dataclass
class AgentOptions:
    """How ``cortex node`` was asked to run."""

    name: str
    pool: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    slots: int | None = None
    """Worker processes it accepts over every run (None: twice the host's CPUs; 0: masters only)."""
    drain_s: float = 60.0
    """How long a drain waits for running tasks before stopping them anyway (they are then redelivered)."""
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    for_run: str | None = None
    """Serve only this run, then exit (local mode)."""


class _Metrics:
    def __init__(self, o: AgentOptions, version: str) -> None:
        r = self.registry = CollectorRegistry()
        labels = ["node", "pool"]
        self.info = Gauge("cortex_node_info", "A node agent", [*labels, "host", "version"], registry=r)
        self.info.labels(o.name, o.pool, socket.gethostname(), version).set(1)
        self.runs = Gauge("cortex_node_runs", "Runs with processes on the node", labels, registry=r)
        self.processes = Gauge("cortex_node_processes", "Masters and workers alive", labels, registry=r)
        self.slots = Gauge("cortex_node_worker_slots", "Worker processes the node accepts", labels, registry=r)
        self.cpu = Counter(
            "cortex_node_cpu_seconds",
            "CPU of everything the agent started, tool subprocesses included",
            labels,
            registry=r,
        )
        self.rss = Gauge(
            "cortex_node_rss_bytes", "Resident memory of everything the agent runs now", labels, registry=r
        )
        self.restarts = Counter("cortex_node_restarts", "Processes restarted after they died", labels, registry=r)
        self.beat = Gauge("cortex_node_heartbeat_timestamp_seconds", "Last heartbeat written", labels, registry=r)
        self.redis_up = Gauge(
            "cortex_redis_up", "1 while the node agent reaches Redis, 0 while not", labels, registry=r
        )
        self.labels = (o.name, o.pool)


class NodeAgent:
    """Registers, heartbeats and supervises runs until SIGTERM (drain) or, in local mode, its run is over."""

    def __init__(self, url: str, options: AgentOptions) -> None:
        from cortex import __version__

        self.url, self.o = url, options
        self.keys = PoolKeys(options.pool)
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self.version = __version__
        self.slots = 2 * (os.cpu_count() or 1) if options.slots is None else options.slots
        self.started_at = time.time()
        self.runs: dict[str, RunSupervisor] = {}
        self.served: set[str] = set()
        self.stopping = False
        self.parent = os.getppid()
        self.unreachable_since: float | None = None
        self.drain_deadline: float | None = None
        self.cpu_done = 0.0
        self.cpu_counted = 0.0
        self.restarts_counted = 0
        self.metrics = _Metrics(options, self.version)

    # ---------------------------------------------------------------------------------------- state
    def info(self) -> NodeInfo:
        """What the agent registers and refreshes."""
        return NodeInfo(
            name=self.o.name,
            pool=self.o.pool,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=self.version,
            slots=self.slots,
            labels=self.o.labels,
            started_at=self.started_at,
            draining=self.drain_deadline is not None,
            runs=sorted(self.runs),
            workers=sum(len(s.workers) for s in self.runs.values()),
            cpu_s=round(self.cpu_total(), 3),
            rss_mib=round(sum(s.rss for s in self.runs.values()) / 2**20, 1),
        )

    def cpu_total(self) -> float:
        """CPU seconds of everything started since the agent started."""
        return self.cpu_done + sum(s.cpu_s for s in self.runs.values())

    @property
    def me(self) -> str:
        """What this agent's heartbeat holds: host and pid."""
        return f"{socket.gethostname()}:{os.getpid()}"

    def claim(self) -> None:
        """Take the node's name in the pool, or ``StartFailed`` when another live agent holds it (two agents of one
        name would both start the node's processes). A dead one's heartbeat lapses within ``NODE_TTL_MS``."""
        key = self.keys.heartbeat(self.o.name)
        deadline = time.monotonic() + NODE_TTL_MS / 1000 + 1
        while not self.redis.set(key, self.me, px=NODE_TTL_MS, nx=True):
            holder = self.redis.get(key)
            if time.monotonic() > deadline:
                raise StartFailed(
                    f"node {self.o.name!r} is already registered in pool {self.o.pool!r} by {holder} (host:pid); "
                    "stop that agent or give this one another name"
                )
            time.sleep(0.2)  # the holder may be an agent that just died: its lease runs out

    def beat(self) -> None:
        """Heartbeat and registration in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.keys.heartbeat(self.o.name), self.me, px=NODE_TTL_MS)
        pipe.hset(self.keys.nodes, self.o.name, self.info().model_dump_json())
        pipe.execute()
        self.metrics.beat.labels(*self.metrics.labels).set(time.time())

    def deregister(self) -> None:
        """Leave the pool: the heartbeat goes first, so coordinators see the node gone at once."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(self.keys.heartbeat(self.o.name))
        pipe.hdel(self.keys.nodes, self.o.name)
        pipe.execute()

    # ------------------------------------------------------------------------------------- the loop
    def run(self) -> None:
        """Serve until stopped; always stop every process and deregister."""
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stopping", True))
        if self.o.metrics_port:
            start_http_server(self.o.metrics_port, addr=self.o.metrics_host, registry=self.metrics.registry)
        self.claim()
        from cortex.config import Settings

        settings = Settings()
        log = logs.attach(
            settings.state_dir / "logs" / f"node-{self.o.name}.jsonl", f"node {self.o.name}", settings.log_level
        )
        logs.event("registered", pool=self.o.pool, slots=self.slots, labels=self.o.labels, pid=os.getpid())
        begun = time.monotonic()
        last_beat = last_sample = 0.0
        try:
            while True:
                now = time.monotonic()
                for sup in self.runs.values():
                    sup.tick(now)
                if now - last_beat >= BEAT_S:
                    last_beat = now
                    if self._turn(now):
                        break
                    if self.o.for_run and not self.runs and self._served_or_late(now - begun):
                        break
                if now - last_sample >= SAMPLE_S:
                    last_sample = now
                    self._sample()
                time.sleep(0.05)  # the supervision tick: child exits are polled, there is no event to wait on
        finally:
            self._close()
            logs.event("deregistered")
            logs.detach(log)

    def _turn(self, now: float) -> bool:
        """Heartbeat, pick up new runs, end finished ones, drive a drain. True when the agent is done."""
        try:
            self.beat()
            ended = [run_id for run_id, sup in list(self.runs.items()) if sup.check(now)]
            for run_id in ended:
                self._end(run_id)
            if ended:
                self.beat()  # the runs it let go, at once: their coordinators wait on it
            if self.stopping and self.drain_deadline is None:
                self._begin_drain(now)
            if self.drain_deadline is None:
                for run_id in sorted(self.redis.smembers(self.keys.runs(self.o.name)) - set(self.runs)):
                    if self.o.for_run is None or run_id == self.o.for_run:
                        self._take(run_id)
            self.unreachable_since = None
            self.metrics.redis_up.labels(*self.metrics.labels).set(1)
            if self.drain_deadline is not None:
                return now > self.drain_deadline or not any(s.busy() for s in self.runs.values())
        except redis.RedisError:
            # Redis away: keep the processes (they wait it out too). A drain still ends at its deadline; a local
            # agent whose coordinator is gone gives up after the orphan grace.
            self.unreachable_since = self.unreachable_since or now
            self.metrics.redis_up.labels(*self.metrics.labels).set(0)
            if self.drain_deadline is not None:
                return now > self.drain_deadline
            orphan = self.o.for_run is not None and os.getppid() != self.parent
            return orphan and now - self.unreachable_since > ORPHAN_GRACE_S
        return False

    def _take(self, run_id: str) -> None:
        """Start serving ``run_id``; a run that ended before we got to it is let go."""
        if not self.redis.exists(RunKeys(run_id).plan):
            self.redis.srem(self.keys.runs(self.o.name), run_id)
            return
        self.runs[run_id] = RunSupervisor(self.redis, self.url, run_id, self.o.name)
        self.served.add(run_id)
        logs.event("run-taken", run_id=run_id)

    def _served_or_late(self, waited: float) -> bool:
        return bool(self.served) or waited > FIRST_RUN_WAIT_S

    def _end(self, run_id: str) -> None:
        logs.event("run-let-go", run_id=run_id)
        sup = self.runs.pop(run_id)
        sup.shutdown()
        self.cpu_done += sup.cpu_s
        with contextlib.suppress(redis.RedisError):
            self.redis.srem(self.keys.runs(self.o.name), run_id)

    def _begin_drain(self, now: float) -> None:
        """Ask every worker to finish its current task and take no other."""
        from cortex.runtime.control import send

        logs.event("draining", runs=sorted(self.runs))
        self.drain_deadline = now + self.o.drain_s
        if self.o.for_run is not None:
            self.drain_deadline = now + min(self.o.drain_s, STOP_GRACE_S)  # its coordinator is ending the run

        async def drain_all() -> None:
            r = redis.asyncio.Redis.from_url(self.url, decode_responses=True)
            try:
                for run_id, sup in self.runs.items():
                    for worker in sup.workers:
                        await send(r, RunKeys(run_id), worker, "drain", by=f"node {self.o.name}")
            finally:
                await r.aclose()

        with contextlib.suppress(redis.RedisError, OSError):  # Redis away: the processes are stopped at the deadline
            asyncio.run(drain_all())

    def _sample(self) -> None:
        tree = process_tree()
        for sup in self.runs.values():
            with contextlib.suppress(redis.RedisError):
                sup.sample(tree)
        m, labels = self.metrics, self.metrics.labels
        m.runs.labels(*labels).set(len(self.runs))
        m.processes.labels(*labels).set(sum(1 for s in self.runs.values() for c in s.children.values() if c.alive))
        m.slots.labels(*labels).set(self.slots)
        m.rss.labels(*labels).set(sum(s.rss for s in self.runs.values()))
        total = self.cpu_total()
        if total > self.cpu_counted:
            m.cpu.labels(*labels).inc(total - self.cpu_counted)
            self.cpu_counted = total
        restarts = sum(c.restarts for s in self.runs.values() for c in s.children.values())
        if restarts > self.restarts_counted:
            m.restarts.labels(*labels).inc(restarts - self.restarts_counted)
        self.restarts_counted = restarts

    def _close(self) -> None:
        for run_id in list(self.runs):
            self._end(run_id)
        with contextlib.suppress(redis.RedisError):
            self.deregister()
        self.redis.close()


def run_agent(url: str, options: AgentOptions) -> None:
    """Entry point of ``cortex node``: import every handler once, before forking, so children share them."""
    import cortex.runtime.master
    import cortex.runtime.worker
    import cortex.toolset.registry

    cortex.toolset.registry.known_kinds()
    del cortex.runtime.master, cortex.runtime.worker
    NodeAgent(url, options).run()
