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
    assert stats.by_type == {
        "group": 2,
        "image": 6,
        "package": 15,
        "repository": 6,
        "service": 3,
        "system": 1,
        "workflow": 3,
        "workload": 3,
    }
    assert first.created == stats.assets and first.edges_added == stats.edges > 0
    lineage = await store.lineage("repo:payments-api", direction="both", depth=1)
    relations = {(e.upstream, e.relation, e.downstream) for e in lineage.edges}
    assert ("pkg:pypi:requests", "dependency_of", "repo:payments-api") in relations
    assert ("image:python:3.8-slim", "base_image_of", "repo:payments-api") in relations
    assert ("repo:payments-api", "builds", "image:registry.example.internal/payments-api:1.4.0") in relations
    assert all(e.agent == "cortex catalog discover" for e in lineage.edges)
    repo = await store.get("repo:payments-api")
    assert repo is not None and repo.health.signals["tests_present"] is True
    # owners and systems: Backstage's catalog-info.yaml first, CODEOWNERS otherwise; nobody says: unowned
    proxy = await store.get("repo:edge-proxy")
    assert proxy is not None and proxy.owner == "platform-team"
    assert proxy.metadata["ownership"]["system"] == "payments" and proxy.metadata["ownership"]["lifecycle"] == (
        "production"
    )
    lineage = await store.lineage("repo:edge-proxy", direction="downstream", depth=1)
    relations = {(e.upstream, e.relation, e.downstream) for e in lineage.edges}
    assert ("repo:edge-proxy", "owned_by", "group:platform-team") in relations
    assert ("repo:edge-proxy", "part_of", "system:payments") in relations
    billing = await store.get("repo:billing-worker")
    assert billing is not None and billing.owner == "billing-team"  # from CODEOWNERS' * rule
    assert repo.owner == "unowned"
    # an unparsable pyproject.toml yields nothing; the same repository's requirements.txt still does
    lineage = await store.lineage("repo:billing-worker", direction="upstream", depth=1)
    assert {e.upstream for e in lineage.edges} >= {"pkg:pypi:requests", "pkg:pypi:tabulate"}

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


async def test_a_repository_from_a_fleet_file_records_its_remote(redis: aredis.Redis, tmp_path: Path) -> None:
    from cortex.toolset.fleet import working_copy
    from cortex.toolset.remotes import remote_targets

    served = working_copy(FLEET, tmp_path / "served")
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(f"targets:\n  - {{name: auth-lib, url: 'file://{served}/auth-lib', branch: main}}\n")
    (target,) = remote_targets(fleet, tmp_path / "workspace")
    store = CatalogStore(redis)
    await discover(store, [Path(target.path)], remotes={target.path: f"file://{served}/auth-lib"})
    repo = await store.get("repo:auth-lib")
    assert repo.source == f"file://{served}/auth-lib" and repo.metadata["remote"] == repo.source
