"""Run a plan while injecting faults, then verify the outcome against what the plan promised.

The harness owns a private Redis server (append-only, so ``restart-redis`` is a real crash and recovery) and
starts the coordinator as a ``cortex run`` process; faults hit real processes through signals. The verification
counts, per task, how often it ran and how often its effect was applied (``toolset.chaos``): a task that ended
without its effect is lost, one whose effect landed twice is duplicated.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aredis

from cortex.catalog.config import CatalogConfig, new_token
from cortex.chaos.faults import FAULTS, POLL_S, Fault, inject
from cortex.chaos.target import CatalogService, Target
from cortex.coord.connection import client
from cortex.coord.server import EmbeddedRedis
from cortex.files import write_atomic
from cortex.models import Plan
from cortex.toolset.chaos import ChaosKeys

STOP_INJECTING_AT = 0.9
"""Faults stop once this fraction of tasks has ended, so the last one's recovery is seen before the run ends."""


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
    counted: int = 0
    """Tasks whose executions and effects are counted (``chaos.work``); duplicates are measured only for them."""
    faults: list[Fault] = field(default_factory=list)
    report: str = ""
    coordinator_exits: list[int | None] = field(default_factory=list)
    """Exit codes of the run's coordinators in start order (4: stepped down after a take-over)."""

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
            ("duplicated effects", str(self.duplicated) if self.counted else "n/a (no chaos.work tasks)"),
            ("re-executed (effect applied once)", str(self.re_executed) if self.counted else "n/a"),
            ("reassignments", str(self.reassignments)),
            ("process restarts", str(self.restarts)),
            ("faults injected", f"{len(self.faults)} ({kinds or 'none'})"),
            ("time to recover p50 / max", f"{p50} / {worst}{late}"),
            ("run", f"{self.run_id} {self.status} in {self.duration_s:.1f} s"),
        ]


async def _injector(
    target: Target, redis: aredis.Redis, faults: list[str], rate_per_min: float, max_faults: int | None, seed: int
) -> list[Fault]:
    rng = random.Random(seed)
    done: list[Fault] = []
    while not target.executing():
        if target.finished() or not faults:
            return done
        await asyncio.sleep(POLL_S)  # the coordinator is another process: its state file says when phase 3 begins
    target.started = time.monotonic()
    interval = 60.0 / rate_per_min
    i = 0
    while not target.finished() and (max_faults is None or len(done) < max_faults):
        await asyncio.sleep(interval * rng.uniform(0.75, 1.25))  # the fault rate itself, not a wait for state
        if target.finished() or await target.progress(redis) >= STOP_INJECTING_AT:
            break
        fault = await inject(faults[i % len(faults)], redis, target, rng)
        i += 1
        if fault is not None:
            done.append(fault)
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
    the run's workers record into it and ``stop-catalog`` can take it down; ``stop-catalog`` without one starts a
    catalog of its own on the run's Redis."""
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    run_id = time.strftime("chaos-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    plan_file = write_atomic(state_dir / "chaos-plan.json", plan.model_dump_json())
    server = EmbeddedRedis(state_dir / "chaos-redis")
    server.start()
    own_catalog = catalog is None and "stop-catalog" in faults
    if own_catalog:  # a catalog on the run's Redis, for the workers to record into and the fault to stop
        token, spec = new_token("chaos", ["read", "write"])
        catalog = CatalogService(CatalogConfig(tokens=[spec], prefix=f"cortex:catalog:{run_id}"), server.url, token)
        catalog.start()
    redis = client(server.url, retries=12)
    target = Target(plan, server, state_dir, run_id, catalog)
    started = time.monotonic()
    try:
        target.launch("run", str(plan_file), "--run-id", run_id)
        injected = await asyncio.wait_for(_injector(target, redis, faults, rate_per_min, max_faults, seed), timeout_s)
        remaining = max(1.0, timeout_s - (time.monotonic() - started))
        await asyncio.to_thread(target.leader().wait, remaining)
        return await _verify(redis, target, injected, time.monotonic() - started)
    finally:
        for proc in target.coordinators:
            if proc.poll() is None:  # timed out: stop it the way Ctrl-C would, so its processes go too
                proc.terminate()
                await asyncio.to_thread(proc.wait, 30)
        await redis.aclose()
        if own_catalog and catalog is not None:
            catalog.stop()
        server.stop()
        shutil.rmtree(state_dir / "chaos-redis", ignore_errors=True)


async def _verify(redis: aredis.Redis, target: Target, faults: list[Fault], duration_s: float) -> ChaosResult:
    keys = ChaosKeys(target.run_id)
    effects = {k: int(v) for k, v in (await redis.hgetall(keys.effects)).items()}
    executions = {k: int(v) for k, v in (await redis.hgetall(keys.executions)).items()}
    await redis.delete(keys.effects, keys.executions)
    report = target.report()
    if report is None:  # no coordinator finished the run: what Redis still holds is all there is
        records = [json.loads(v) for v in await redis.hvals(target.keys.tasks)]
        report = {"tasks": records, "status": f"not finished (exit {target.leader().returncode})"}
    states = {t["id"]: t["state"] for t in report["tasks"]}
    kinds = {t.id: t.kind for t in target.plan.tasks}
    ended = sum(1 for i in kinds if states.get(i) in ("succeeded", "failed", "skipped"))
    missing_effect = sum(
        1 for i, k in kinds.items() if k == "chaos.work" and states.get(i) == "succeeded" and not effects.get(i)
    )
    procs = report.get("processes", {})
    return ChaosResult(
        run_id=target.run_id,
        status=str(report["status"]),
        expected=len(target.plan.tasks),
        completed=sum(1 for s in states.values() if s == "succeeded"),
        failed=sum(1 for s in states.values() if s == "failed"),
        skipped=sum(1 for s in states.values() if s == "skipped"),
        lost=len(target.plan.tasks) - ended + missing_effect,
        duplicated=sum(1 for n in effects.values() if n > 1),
        counted=sum(1 for k in kinds.values() if k == "chaos.work"),
        re_executed=sum(1 for n in executions.values() if n > 1),
        reassignments=int(report.get("reassignments", 0)),
        restarts=sum(int(p.get("restarts", 0)) for p in procs.values()),
        duration_s=round(duration_s, 3),
        faults=faults,
        report=str(target.state_dir / "runs" / target.run_id / "report.json"),
        coordinator_exits=[p.returncode for p in target.coordinators],
    )


def dumps(result: ChaosResult) -> str:
    """The result as indented JSON."""
    return json.dumps(result.to_dict(), indent=2, default=str)
