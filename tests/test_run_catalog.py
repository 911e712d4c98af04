"""A run whose inventory tasks record the fleet in a running catalog, and the pre-flight's catalog report."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from cortex.coord.server import EmbeddedRedis
from cortex.models import Plan, Roster
from cortex.planner import build_plan
from cortex.runtime.coordinator import Coordinator, RunResult
from cortex.runtime.options import RunOptions

from .conftest import FLEET
from .test_catalog_api import Catalog, make_catalog
from .test_run import small_cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def inventory_roster() -> Roster:
    return Roster.model_validate(
        {
            "masters": [
                {"name": "coordinator", "role": "c", "base_budget": 10, "worker_pool": 10},
                {
                    "name": "inventory",
                    "role": "i",
                    "keywords": ["inventory"],
                    "base_budget": 10,
                    "worker_pool": 10,
                    "playbook": [{"name": "discover", "kind": "inventory.discover", "worker_type": "catalog"}],
                },
            ],
            "worker_types": [{"name": "catalog", "master": "inventory", "count": 2, "budget": 5}],
        }
    )


async def run_with_catalog(plan: Plan, cat: Catalog, state: Path) -> RunResult:
    """Run ``plan`` on a private Redis, recording into the catalog ``cat`` with its write token."""
    token = cat.writer["Authorization"].removeprefix("Bearer ")
    with EmbeddedRedis() as run_redis:
        return await Coordinator(plan, run_redis.url, state, RunOptions(catalog_url=cat.url, catalog_token=token)).run()


async def test_inventory_tasks_record_assets_with_provenance(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    server, cat = make_catalog(redis_server)
    plan = build_plan("inventory of the fleet", FLEET, inventory_roster(), small_cluster())
    try:
        result = await run_with_catalog(plan, cat, tmp_path / "state")
        report = json.loads(result.report_json.read_text())
        check = next(c for c in report["checks"] if c["name"] == "catalog")
        assert check["detail"].startswith("reachable")
        outputs = {t["id"]: t["output"] for t in report["tasks"]}
        assert all(o["catalog"]["queued"] == 0 and o["catalog"]["sent"] > 0 for o in outputs.values())
        async with httpx.AsyncClient(base_url=cat.url, headers=cat.reader, timeout=10) as c:
            stats = (await c.get("/stats")).json()
            assert stats["by_type"]["repository"] == 6 and stats["edges"] > 0
            lineage = (await c.get("/lineage/repo:payments-api", params={"direction": "upstream"})).json()
            edge = next(e for e in lineage["edges"] if e["upstream"] == "pkg:pypi:requests")
            assert edge["run_id"] == result.run_id
            assert edge["task_id"] == "inventory.discover:payments-api"
            assert edge["agent"].startswith("catalog-worker-")
            repo = (await c.get("/assets/repo:payments-api")).json()
            assert repo["metadata"]["recorded_by"] == {
                "run_id": result.run_id,
                "master": "inventory",
                "task_id": "inventory.discover:payments-api",
                "worker": edge["agent"],
            }
        # the edges recorded in the catalog were announced on the lineage channel, once, with their producer
        events = [json.loads(line) for line in (result.archive / "events.jsonl").read_text().splitlines()]
        announced = [
            t
            for e in events
            if e["channel"] == "cortex:lineage" and e["context"]["recorded_in"] == "catalog"
            for t in e["context"]["tasks"]
            if t["task"] == "inventory.discover:payments-api"
        ]
        assert len(announced) == 1 and announced[0]["worker"] == edge["agent"]
        assert ["pkg:pypi:requests", "dependency_of", "repo:payments-api"] in announced[0]["edges"]
    finally:
        server.stop()


async def test_preflight_reports_an_unreachable_catalog_and_the_run_goes_on(tmp_path: Path) -> None:
    plan = build_plan("inventory of the fleet", FLEET, inventory_roster(), small_cluster())
    with EmbeddedRedis() as run_redis:
        result = await Coordinator(
            plan, run_redis.url, tmp_path / "state", RunOptions(catalog_url="http://127.0.0.1:9")
        ).run()
    report = json.loads(result.report_json.read_text())
    check = next(c for c in report["checks"] if c["name"] == "catalog")
    assert check["detail"].startswith("absent: API down and no cache")
    assert result.status == "succeeded"
    queued = [t["output"]["catalog"]["queued"] for t in report["tasks"]]
    assert all(q > 0 for q in queued)  # writes wait in each worker's queue for the catalog to come back


async def test_open_findings_reach_the_repositorys_catalog_health(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    roster = Roster.model_validate(
        {
            "masters": [
                {
                    "name": "coordinator",
                    "role": "c",
                    "keywords": ["fleet"],
                    "base_budget": 10,
                    "worker_pool": 10,
                    "playbook": [
                        {
                            "name": "aggregate",
                            "kind": "coordinator.aggregate",
                            "worker_type": "catalog",
                            "per": "run",
                            "after": ["*"],
                            "needs": "completion",
                        }
                    ],
                },
                {
                    "name": "inventory",
                    "role": "i",
                    "keywords": ["fleet"],
                    "base_budget": 10,
                    "worker_pool": 10,
                    "playbook": [
                        {"name": "discover", "kind": "inventory.discover", "worker_type": "catalog", "when": "python"}
                    ],
                },
                {
                    "name": "security",
                    "role": "s",
                    "keywords": ["fleet"],
                    "base_budget": 10,
                    "worker_pool": 10,
                    "playbook": [
                        {
                            "name": "bandit",
                            "kind": "security.static-analysis",
                            "worker_type": "catalog",
                            "when": "python",
                            "after": ["inventory.discover"],
                        }
                    ],
                },
            ],
            "worker_types": [{"name": "catalog", "master": "inventory", "count": 2, "budget": 5}],
        }
    )
    server, cat = make_catalog(redis_server)
    plan = build_plan("survey the fleet", FLEET, roster, small_cluster())
    try:
        result = await run_with_catalog(plan, cat, tmp_path / "state")
        assert result.status == "succeeded"
        async with httpx.AsyncClient(base_url=cat.url, headers=cat.reader, timeout=10) as c:
            payments = (await c.get("/assets/repo:payments-api")).json()["health"]
            auth = (await c.get("/assets/repo:auth-lib")).json()["health"]
        assert payments["status"] == "degraded"  # bandit's B602 is high
        assert payments["signals"]["open_findings"] == {"high": 1, "low": 1}
        assert payments["signals"]["findings_run"] == result.run_id
        assert "open_findings" not in auth["signals"] and auth["status"] == "healthy"
    finally:
        server.stop()
