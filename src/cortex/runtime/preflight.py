"""Phase 0, pre-flight: every check is run and reported; the coordinator stops the run before anything starts
when one fails. Redis, budgets, targets, nodes and leadership can fail; the catalog and the model are reported as
reachable, degraded or absent but never stop a run (a run without them still runs, and says so)."""

from __future__ import annotations

import sys
from pathlib import Path

import redis.asyncio as aredis

from cortex.coord.connection import redact_url
from cortex.models import Plan
from cortex.models.state import Check


def budget_check(plan: Plan) -> Check:
    """The allocations add up: masters to the total, each master's workers and reserve to its pool."""
    lines = plan.budget.lines
    total_ok = sum(line.base + line.worker_pool for line in lines) == plan.budget.total
    pools_ok = all(sum(line.workers.values()) + line.reserve == line.worker_pool for line in lines)
    detail = (
        f"{plan.budget.total:,} tokens in {len(lines)} master accounts"
        if total_ok and pools_ok
        else "allocations do not add up"
    )
    return Check(name="budgets", ok=total_ok and pools_ok, detail=detail)


def target_check(plan: Plan) -> Check:
    """Every target directory exists on this machine; a target from a git remote is checked out by each node
    that works on it instead (a failed checkout fails its tasks, retryably, saying why)."""
    remote = [t for t in plan.targets if t.remote is not None]
    missing = [t.name for t in plan.targets if t.remote is None and not Path(t.path).is_dir()]
    detail = f"{len(plan.targets) - len(remote)} present" if not missing else f"missing: {', '.join(missing)}"
    if remote:
        detail += f"; {len(remote)} from git remotes, checked out by each node at the plan's commit"
    return Check(name="targets", ok=not missing, detail=detail)


async def catalog_check(catalog_url: str | None, catalog_token: str | None, state_dir: Path) -> Check:
    """Catalog availability; never fatal."""
    if not catalog_url:
        return Check(
            name="catalog",
            ok=True,
            detail="absent: CORTEX_CATALOG_URL is not set; discovery results stay in the report",
        )
    from cortex.catalog.client import CatalogClient

    client = CatalogClient(catalog_url, state_dir / "catalog-cache", token=catalog_token)
    try:
        state = await client.availability()
    finally:
        await client.aclose()
    detail = {
        "reachable": "reachable",
        "degraded": "degraded: API down, reads from the cache, writes queued",
        "absent": "absent: API down and no cache",
    }[state]
    return Check(name="catalog", ok=True, detail=f"{detail} ({catalog_url})")


async def run_checks(
    redis: aredis.Redis,
    url: str,
    plan: Plan,
    *,
    model: str | None,
    catalog_url: str | None,
    catalog_token: str | None,
    state_dir: Path,
    pool: str | None = None,
) -> list[Check]:
    """Every pre-flight check but leadership, which the coordinator adds when it takes the lease."""
    info = await redis.info("server")
    needs_model = sum(1 for t in plan.tasks if t.requires_model)
    return [
        Check(name="redis", ok=True, detail=f"{redact_url(url)} (version {info.get('redis_version')})"),
        budget_check(plan),
        target_check(plan),
        Check(name="nodes", ok=True, detail=nodes_detail(plan, pool)),
        await catalog_check(catalog_url, catalog_token, state_dir),
        Check(
            name="model",
            ok=True,
            detail=f"configured: {model}"
            if model
            else f"absent: {needs_model} task(s) needing a model will be skipped",
        ),
    ]


def nodes_detail(plan: Plan, pool: str | None) -> str:
    """Where the run's processes will run."""
    n = len(plan.cluster.nodes)
    if pool is None:
        return f"{n} nodes; local mode: a node agent per node started here ({sys.executable})"
    return f"{n} nodes; cluster mode: node agents registered in pool {pool!r} (checked next)"
