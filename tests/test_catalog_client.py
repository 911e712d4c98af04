"""The catalog client with the API stopped: stale reads from the cache, writes queued and replayed in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from cortex.catalog.client import CatalogClient
from cortex.catalog.server import BackgroundServer
from cortex.coord.server import EmbeddedRedis
from cortex.errors import CatalogUnavailable
from cortex.models.assets import Asset, LineageEdge

from .test_catalog_api import make_catalog

pytestmark = pytest.mark.timeout(120)


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def test_cache_fallback_and_write_replay(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    server, cat = make_catalog(redis_server)
    cache = tmp_path / "cache"
    client = CatalogClient(cat.url, cache, token=token_of(cat.writer))
    try:
        assert await client.availability() == "reachable"
        assert await client.upsert(Asset(id="repo:a", type="repository", name="a")) == "sent"
        fresh = await client.get("repo:a")
        assert fresh.value is not None and not fresh.stale
        assert (await client.search("a")).value[0].id == "repo:a"
    finally:
        server.stop()
    try:
        # the API is down: reads come from the cache, flagged stale; writes wait in order
        stale = await client.get("repo:a")
        assert stale.stale and stale.value is not None and stale.value.name == "a"
        assert (await client.search("a")).stale
        with pytest.raises(CatalogUnavailable):
            await client.get("repo:never-read")
        assert await client.availability() == "degraded"
        assert await client.upsert(Asset(id="repo:b", type="repository", name="b")) == "queued"
        assert await client.link(LineageEdge(upstream="repo:a", downstream="repo:b", relation="feeds")) == "queued"
        assert await client.link(LineageEdge(upstream="repo:a", downstream="repo:gone", relation="x")) == "queued"
        assert [p["method"] for p in client.pending()] == ["PUT", "POST", "POST"]
    finally:
        await client.aclose()

    # the API is back (same Redis, new address): the queue is replayed in order
    again = BackgroundServer(cat.config, redis_server.url).start()
    client = CatalogClient(again.url, cache, token=token_of(cat.writer))
    try:
        assert await client.replay() == 2
        assert client.pending() == []
        rejected = (cache / "rejected-writes.jsonl").read_text()
        assert "repo:gone" in rejected and "404" in rejected  # refused now, kept with its reason, not retried
        lineage = await client.lineage("repo:b", direction="upstream")
        assert not lineage.stale and [n["id"] for n in lineage.value["nodes"]] == ["repo:a", "repo:b"]
    finally:
        await client.aclose()
        again.stop()


async def test_absent_catalog_with_no_cache(tmp_path: Path) -> None:
    client = CatalogClient("http://127.0.0.1:9", tmp_path / "cache", timeout_s=1)
    try:
        assert await client.availability() == "absent"
        with pytest.raises(CatalogUnavailable):
            await client.get("repo:a")
    finally:
        await client.aclose()
