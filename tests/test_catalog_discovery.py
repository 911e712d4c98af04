"""Incremental discovery over a copy of examples/fleet against a real Redis."""

from __future__ import annotations

import shutil
from pathlib import Path

import redis.asyncio as aredis

from cortex.catalog.discovery import discover
from cortex.catalog.store import CatalogStore

from .conftest import FLEET


async def test_discovery_registers_assets_and_lineage_then_is_incremental(redis: aredis.Redis, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(FLEET, fleet)
    store = CatalogStore(redis)

    first = await discover(store, [fleet])
    stats = await store.stats()
    assert stats.by_type == {"image": 5, "package": 12, "repository": 4, "service": 2, "workflow": 3, "workload": 2}
    assert first.created == stats.assets and first.edges_added == stats.edges > 0
    lineage = await store.lineage("repo:payments-api", direction="both", depth=1)
    relations = {(e.upstream, e.relation, e.downstream) for e in lineage.edges}
    assert ("pkg:pypi:requests", "dependency_of", "repo:payments-api") in relations
    assert ("image:python:3.8-slim", "base_image_of", "repo:payments-api") in relations
    assert ("repo:payments-api", "builds", "image:registry.example.internal/payments-api:1.4.0") in relations
    assert all(e.agent == "cortex catalog discover" for e in lineage.edges)
    repo = await store.get("repo:payments-api")
    assert repo is not None and repo.health.signals["tests_present"] is True

    events = await redis.xlen(store.keys.events)
    second = await discover(store, [fleet])
    assert second.writes == 0 and second.files_skipped == second.files_seen
    assert await redis.xlen(store.keys.events) == events  # nothing written, nothing published

    (fleet / "inventory-service" / "requirements.txt").write_text("jinja2==2.10\nrequests==2.31.0\n")
    (fleet / "inventory-service" / "Dockerfile").unlink()
    third = await discover(store, [fleet])
    assert third.files_skipped == third.files_seen - 1  # only requirements.txt was read again
    assert third.updated == 1  # the repository (its checksum changed)
    for gone in ("image:python:3.11-alpine", "pkg:pypi:urllib3", "pkg:pypi:pydantic"):  # nothing yields them now
        asset = await store.get(gone)
        assert asset is not None and asset.health.status.value == "removed", gone
    assert third.removed == 3
    lineage = await store.lineage("repo:inventory-service", direction="upstream", depth=1)
    upstream = {e.upstream for e in lineage.edges}
    assert "pkg:pypi:requests" in upstream  # newly declared
    assert "pkg:pypi:urllib3" not in upstream and "image:python:3.11-alpine" not in upstream  # stale edges dropped
    fourth = await discover(store, [fleet])
    assert fourth.writes == 0


async def test_a_package_still_declared_elsewhere_is_not_marked_removed(redis: aredis.Redis, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    for name in ("a", "b"):
        (fleet / name).mkdir(parents=True)
        (fleet / name / "requirements.txt").write_text("requests==2.0\n")
    store = CatalogStore(redis)
    await discover(store, [fleet])
    (fleet / "a" / "requirements.txt").unlink()
    result = await discover(store, [fleet])
    pkg = await store.get("pkg:pypi:requests")
    assert pkg is not None and pkg.health.status.value != "removed" and result.removed == 0
