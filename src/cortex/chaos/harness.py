"""Run a plan while injecting faults, then verify the outcome against what the plan promised.

The harness owns a private Redis server (append-only, so ``restart-redis`` is a real crash and recovery) and runs
the coordinator in this process; faults hit real processes through signals. The verification counts, per task,
how often it ran and how often its effect was applied (``toolset.chaos``): a task that ended without its effect is
lost, one whose effect landed twice is duplicated.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aredis

from cortex.catalog.config import CatalogConfig
from cortex.catalog.server import BackgroundServer
from cortex.chaos.faults import FAULTS, Fault, inject
from cortex.coord.connection import client
from cortex.coord.server import EmbeddedRedis
from cortex.models import Plan
from cortex.runtime.coordinator import Coordinator
from cortex.toolset.chaos import ChaosKeys

STOP_INJECTING_AT = 0.9
"""Faults stop once this fraction of tasks has ended, so the last one's recovery is seen before the run ends."""


class CatalogService:
    """A catalog API that can be stopped and started again on the same port (the ``stop-catalog`` fault)."""

    def __init__(self, config: CatalogConfig, redis_url: str, token: str) -> None:
        self.config = config
        self.redis_url = redis_url
        self.token = token
        self.port = 0
        self.url = ""
        self._server: BackgroundServer | None = None

    def start(self) -> CatalogService:
        """Serve (on the port of the first start, once there was one)."""
        self._server = BackgroundServer(self.config, self.redis_url, port=self.port).start()
        self.url = self._server.url
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.stop()
            self._server = None


class Target:
    """What the injectors act on: the run's coordinator, its Redis server, its processes, its catalog."""

    def __init__(
        self, coord: Coordinator, server: EmbeddedRedis, run: asyncio.Task[Any], catalog: CatalogService | None
    ) -> None:
        self.coord = coord
        self.server = server
        self.catalog = catalog
        self.keys = coord.keys
        self.run = run
        self.started = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since execution began."""
        return round(time.monotonic() - self.started, 3)

    def finished(self) -> bool:
        """The run has returned (or failed)."""
        return self.run.done()

    def progress(self) -> float:
        """Fraction of tasks that have ended."""
        records = self.coord.graph.records.values()
        return sum(1 for r in records if r.state.terminal) / max(1, len(records))

    def supervisor_pids(self) -> dict[str, int]:
        """Live node supervisors by node."""
        return {n: p.pid for n, p in self.coord.supervisors.items() if p.poll() is None}

    def worker_nodes(self) -> set[str]:
        """Nodes that host workers."""
        return {w.node for w in self.coord.plan.workers}

    async def pause_coordinator(self) -> Fault | None:
        """Not available when the coordinator runs in this process (see ``cortex chaos``)."""
        return None


@dataclass
class ChaosResult:
    """The verification table of one chaos run."""

    run_id: str
    status: str
    expected: int
    completed: int
    failed: int
    skipped: int
    lost: int
    duplicated: int
    re_executed: int
    reassignments: int
    restarts: int
    duration_s: float
    faults: list[Fault] = field(default_factory=list)
    report: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """The table as (name, value) rows."""
        recovered = sorted(f.recovered_s for f in self.faults if f.recovered_s is not None)
        unrecovered = sum(1 for f in self.faults if f.recovered_s is None)
        p50 = f"{recovered[len(recovered) // 2]:.2f} s" if recovered else "-"
        worst = f"{recovered[-1]:.2f} s" if recovered else "-"
        by_kind = Counter(f.kind for f in self.faults)
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items()))
        late = f"; {unrecovered} not recovered" if unrecovered else ""
        return [
            ("tasks expected", str(self.expected)),
            ("completed", str(self.completed)),
            ("failed", str(self.failed)),
            ("skipped", str(self.skipped)),
            ("lost", str(self.lost)),
            ("duplicated effects", str(self.duplicated)),
            ("re-executed (effect applied once)", str(self.re_executed)),
            ("reassignments", str(self.reassignments)),
            ("process restarts", str(self.restarts)),
            ("faults injected", f"{len(self.faults)} ({kinds or 'none'})"),
            ("time to recover p50 / max", f"{p50} / {worst}{late}"),
            ("run", f"{self.run_id} {self.status} in {self.duration_s:.1f} s"),
        ]


async def _injector(
    target: Target, faults: list[str], rate_per_min: float, max_faults: int | None, seed: int
) -> list[Fault]:
    rng = random.Random(seed)
    done: list[Fault] = []
    if not faults:
        return done
    redis = client(target.server.url, retries=12)
    try:
        executing = asyncio.ensure_future(target.coord.executing.wait())
        await asyncio.wait([executing, target.run], return_when=asyncio.FIRST_COMPLETED)
        executing.cancel()
        target.started = time.monotonic()
        interval = 60.0 / rate_per_min
        i = 0
        while not target.finished() and (max_faults is None or len(done) < max_faults):
            await asyncio.sleep(interval * rng.uniform(0.75, 1.25))  # the fault rate itself, not a wait for state
            if target.finished() or target.progress() >= STOP_INJECTING_AT:
                break
            fault = await inject(faults[i % len(faults)], redis, target, rng)
            i += 1
            if fault is not None:
                done.append(fault)
    finally:
        await redis.aclose()
    return done


async def run_chaos(
    plan: Plan,
    state_dir: Path,
    faults: list[str],
    *,
    rate_per_min: float = 6.0,
    max_faults: int | None = None,
    seed: int = 0,
    timeout_s: float = 900.0,
    catalog: CatalogService | None = None,
) -> ChaosResult:
    """Run ``plan`` under ``faults`` (injected in turn at ``rate_per_min``) and verify it. With ``catalog`` (started),
    the run's workers record into it and ``stop-catalog`` can take it down."""
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    redis_dir = state_dir / "chaos-redis"
    server = EmbeddedRedis(redis_dir)
    server.start()
    try:
        coord = Coordinator(
            plan,
            server.url,
            state_dir,
            catalog_url=catalog.url if catalog else None,
            catalog_token=catalog.token if catalog else None,
        )
        run = asyncio.create_task(coord.run())
        target = Target(coord, server, run, catalog)
        injector = asyncio.create_task(_injector(target, faults, rate_per_min, max_faults, seed))
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(asyncio.shield(run), timeout_s)
            summary, status = result.summary, result.status
        except TimeoutError:
            coord.request_stop()
            run.cancel()
            summary, status = {"tasks": [r.to_dict() for r in coord.graph.records.values()]}, "timed out"
        injected = await injector
        redis = client(server.url)
        try:
            return await _verify(redis, plan, coord, summary, status, injected, time.monotonic() - started)
        finally:
            await redis.aclose()
    finally:
        server.stop()
        shutil.rmtree(redis_dir, ignore_errors=True)


async def _verify(
    redis: aredis.Redis,
    plan: Plan,
    coord: Coordinator,
    summary: dict[str, Any],
    status: str,
    faults: list[Fault],
    duration_s: float,
) -> ChaosResult:
    keys = ChaosKeys(coord.run_id)
    effects = {k: int(v) for k, v in (await redis.hgetall(keys.effects)).items()}
    executions = {k: int(v) for k, v in (await redis.hgetall(keys.executions)).items()}
    await redis.delete(keys.effects, keys.executions)
    states = {t["id"]: t["state"] for t in summary["tasks"]}
    kinds = {t.id: t.kind for t in plan.tasks}
    counted = [i for i in states if kinds.get(i) == "chaos.work"]
    ended = sum(1 for i in kinds if states.get(i) in ("succeeded", "failed", "skipped"))
    missing_effect = sum(1 for i in counted if states[i] == "succeeded" and effects.get(i, 0) == 0)
    procs = summary.get("processes", {})
    return ChaosResult(
        run_id=coord.run_id,
        status=status,
        expected=len(plan.tasks),
        completed=sum(1 for s in states.values() if s == "succeeded"),
        failed=sum(1 for s in states.values() if s == "failed"),
        skipped=sum(1 for s in states.values() if s == "skipped"),
        lost=len(plan.tasks) - ended + missing_effect,
        duplicated=sum(1 for n in effects.values() if n > 1),
        re_executed=sum(1 for n in executions.values() if n > 1),
        reassignments=int(summary.get("reassignments", 0)),
        restarts=sum(int(p.get("restarts", 0)) for p in procs.values()),
        duration_s=round(duration_s, 3),
        faults=faults,
        report=str(coord.report_paths.get("report_json", "")),
    )


def dumps(result: ChaosResult) -> str:
    """The result as indented JSON."""
    return json.dumps(result.to_dict(), indent=2, default=str)
