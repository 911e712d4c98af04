"""The catalog store against a real Redis: indexes always equal what a full scan computes, deletes leave
nothing behind, lineage walks, pagination and search."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict

import pytest
import redis.asyncio as aredis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cortex.catalog.store import CatalogStore, asset_words
from cortex.coord.keys import CatalogKeys
from cortex.coord.server import EmbeddedRedis
from cortex.errors import AssetNotFound
from cortex.models.assets import Asset, LineageEdge


def asset(i: str, type_: str = "repository", tags: list[str] | None = None, **kw: object) -> Asset:
    return Asset(id=i, type=type_, name=f"name {i}", tags=tags or [], **kw)  # type: ignore[arg-type]


async def expected_indexes(redis: aredis.Redis, keys: CatalogKeys) -> dict[str, set[str]]:
    """Index sets recomputed from a full scan of the stored assets."""
    out: dict[str, set[str]] = defaultdict(set)
    async for key in redis.scan_iter(match=keys.asset("*")):
        a = Asset.model_validate_json(await redis.get(key))
        for kind, value in [
            ("type", a.type),
            ("owner", a.owner),
            ("namespace", a.namespace),
            ("health", a.health.status.value),
        ]:
            out[keys.index(kind, value)].add(a.id)
        for t in a.tags:
            out[keys.index("tag", t)].add(a.id)
        for w in asset_words(a):
            out[keys.index("word", w)].add(a.id)
    return dict(out)


async def actual_indexes(redis: aredis.Redis, keys: CatalogKeys) -> dict[str, set[str]]:
    out = {}
    async for key in redis.scan_iter(match=keys.index("*", "*")):
        members = await redis.smembers(key)
        if members:
            out[key] = set(members)
    return out


ids = st.sampled_from([f"a{i}" for i in range(4)])  # few ids, so links and deletes meet often
ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("upsert"),
            ids,
            st.sampled_from(["repository", "image", "package"]),
            st.lists(st.sampled_from(["py", "node", "prod", "edge"]), max_size=3),
            st.sampled_from(["healthy", "failing", "unknown"]),
            st.sampled_from(["team-a", "team-b"]),
        ),
        st.tuples(st.just("delete"), ids),
        st.tuples(st.just("link"), ids, ids),
        st.tuples(st.just("unlink"), ids, ids),
    ),
    max_size=25,
)


@pytest.mark.timeout(300)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=ops)
@example(
    sequence=[
        ("upsert", "a0", "image", ["py"], "healthy", "team-a"),
        ("upsert", "a1", "image", [], "failing", "team-b"),
        ("link", "a0", "a1"),
        ("link", "a1", "a1"),
        ("delete", "a1"),
    ]
)
def test_indexes_always_equal_a_full_scan(redis_server: EmbeddedRedis, sequence: list[tuple]) -> None:  # type: ignore[type-arg]
    async def run() -> None:
        redis = aredis.Redis.from_url(redis_server.url, decode_responses=True)
        await redis.flushall()
        keys = CatalogKeys()
        store = CatalogStore(redis, keys)
        live: set[str] = set()
        for op in sequence:
            if op[0] == "upsert":
                _, i, type_, tags, health, owner = op
                await store.upsert(asset(i, type_, tags, owner=owner, health={"status": health}))
                live.add(i)
            elif op[0] == "delete":
                assert await store.delete(op[1]) == (op[1] in live)
                live.discard(op[1])
            elif op[0] == "unlink":
                await store.unlink(op[1], op[2], "feeds")
            elif op[1] in live and op[2] in live:
                await store.link(LineageEdge(upstream=op[1], downstream=op[2], relation="feeds"))
        assert await actual_indexes(redis, keys) == await expected_indexes(redis, keys)
        # lineage only between live assets, symmetric in both directions, counted right
        edges = 0
        for i in live:
            for m in await redis.smembers(keys.downstream(i)):
                rel, other = m.split("|", 1)
                assert other in live and f"{rel}|{i}" in await redis.smembers(keys.upstream(other))
                assert await redis.exists(keys.edge(i, rel, other))
                edges += 1
        assert int(await redis.get(keys.edges) or 0) == edges
        assert set(await redis.zrange(keys.all, 0, -1)) == live
        await redis.aclose()

    asyncio.run(run())


async def test_upsert_moves_an_asset_between_index_sets(redis: aredis.Redis) -> None:
    store = CatalogStore(redis)
    keys = store.keys
    assert await store.upsert(asset("x", "image", ["prod"])) == "created"
    assert await store.upsert(asset("x", "package", ["dev"])) == "updated"
    assert await redis.smembers(keys.index("type", "image")) == set()
    assert await redis.smembers(keys.index("type", "package")) == {"x"}
    assert await redis.smembers(keys.index("tag", "prod")) == set()
    assert await redis.sismember(keys.values("type"), "image") == 0  # stats forget empty values


async def test_same_content_is_unchanged_and_writes_no_event(redis: aredis.Redis) -> None:
    store = CatalogStore(redis)
    await store.upsert(asset("x"))
    first = await store.get("x")
    events = await redis.xlen(store.keys.events)
    assert await store.upsert(asset("x")) == "unchanged"
    assert await redis.xlen(store.keys.events) == events
    assert await store.get("x") == first


async def test_delete_removes_lineage_on_both_sides(redis: aredis.Redis) -> None:
    store = CatalogStore(redis)
    for i in ("repo", "image", "pod"):
        await store.upsert(asset(i))
    await store.link(LineageEdge(upstream="repo", downstream="image", relation="builds", run_id="r1"))
    await store.link(LineageEdge(upstream="image", downstream="pod", relation="runs"))
    assert await store.delete("image")
    assert await redis.smembers(store.keys.downstream("repo")) == set()
    assert await redis.smembers(store.keys.upstream("pod")) == set()
    assert (await store.stats()).edges == 0
    assert not await store.delete("image")
    with pytest.raises(AssetNotFound):
        await store.link(LineageEdge(upstream="repo", downstream="image", relation="builds"))


async def test_lineage_walks_to_the_requested_depth_with_provenance(redis: aredis.Redis) -> None:
    store = CatalogStore(redis)
    chain = ["a", "b", "c", "d"]
    for i in chain:
        await store.upsert(asset(i))
    for up, down in zip(chain, chain[1:], strict=False):
        await store.link(LineageEdge(upstream=up, downstream=down, relation="feeds", task_id=f"t-{up}"))
    two = await store.lineage("a", direction="downstream", depth=2)
    assert [n.id for n in two.nodes] == ["a", "b", "c"]
    assert {(e.upstream, e.downstream, e.task_id) for e in two.edges} == {("a", "b", "t-a"), ("b", "c", "t-b")}
    up = await store.lineage("d", direction="upstream", depth=5)
    assert [n.id for n in up.nodes] == chain
    both = await store.lineage("b", direction="both", depth=1)
    assert [n.id for n in both.nodes] == ["a", "b", "c"]


async def test_list_filters_and_paginates_by_cursor(redis: aredis.Redis) -> None:
    store = CatalogStore(redis)
    for n in range(7):
        await store.upsert(asset(f"r{n}", "repository", ["py"] if n % 2 else []))
    await store.upsert(asset("img", "image", ["py"]))
    seen, cursor = [], None
    while True:
        page = await store.list_assets({"type": "repository"}, cursor=cursor, limit=3)
        seen += [a.id for a in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"r{n}" for n in range(7)]
    tagged = await store.list_assets({"type": "repository", "tag": "py"})
    assert [a.id for a in tagged.items] == ["r1", "r3", "r5"]
    unfiltered = await store.list_assets(limit=100)
    assert len(unfiltered.items) == 8 and unfiltered.next_cursor is None


async def test_search_needs_every_word(redis: aredis.Redis) -> None:
    store = CatalogStore(redis)
    await store.upsert(Asset(id="repo:payments-api", type="repository", name="payments-api", tags=["python"]))
    await store.upsert(Asset(id="repo:web", type="repository", name="web-frontend", tags=["node"]))
    assert [a.id for a in await store.search("payments python")] == ["repo:payments-api"]
    assert await store.search("payments node") == []
    assert json.loads((await store.get("repo:web")).model_dump_json())["name"] == "web-frontend"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("intersect_max", "walk_budget"),
    [(10_000, 10_000), (10, 10_000), (10, 40)],
    ids=["intersect", "walk", "walk-then-intersect"],
)
async def test_every_query_path_agrees_with_a_scan(redis: aredis.Redis, intersect_max: int, walk_budget: int) -> None:
    store = CatalogStore(redis)
    store.intersect_max, store.walk_budget = intersect_max, walk_budget
    n = 300
    for lo in range(0, n, 100):
        await asyncio.gather(
            *(
                store.upsert(
                    asset(
                        f"b{i:04d}",
                        "image" if i % 3 == 0 else "package",
                        ["bulk", "even" if i % 2 == 0 else "odd"] + (["rare"] if i % 97 == 5 else []),
                    )
                )
                for i in range(lo, lo + 100)
            )
        )
    scan = {f"b{i:04d}": (i % 3 == 0, i % 2 == 0, i % 97 == 5) for i in range(n)}
    cases = [
        ({"tag": "bulk", "type": "image"}, lambda v: v[0]),
        ({"tag": "even", "type": "package"}, lambda v: v[1] and not v[0]),
        ({"tag": "rare", "type": "image"}, lambda v: v[2] and v[0]),  # tiny intersection of large sets
        ({"tag": "odd"}, lambda v: not v[1]),
    ]
    for filters, keep in cases:
        seen, cursor = [], None
        while True:
            ids, cursor = await store.list_ids(filters, cursor=cursor, limit=17)
            seen += ids
            if cursor is None:
                break
        assert seen == sorted(i for i, v in scan.items() if keep(v)), filters
    recent = await store.search("bulk even", limit=20)
    times = [a.updated_at for a in recent]
    assert len(recent) == 20 and times == sorted(times, reverse=True)  # type: ignore[type-var]
    assert all("even" in a.tags for a in recent)
    newest_even = [i for i in await redis.zrevrange(store.keys.updated, 0, -1) if not int(i[1:]) % 2][:20]
    assert [a.id for a in recent] == newest_even


async def test_lineage_of_a_hub_with_thousands_of_edges(redis: aredis.Redis) -> None:
    store = CatalogStore(redis)
    await store.upsert(asset("hub"))
    n = 4100  # 8,200 edges: more than one Lua unpack() can take
    for lo in range(0, n, 50):  # batches within the client's connection pool
        await asyncio.gather(*(store.upsert(asset(f"leaf{i:05d}")) for i in range(lo, lo + 50)))
        await asyncio.gather(
            *(
                store.link(LineageEdge(upstream="hub", downstream=f"leaf{i:05d}", relation=r))
                for i in range(lo, lo + 50)
                for r in ("feeds", "owns")
            )
        )
    nodes, edges = await store.lineage_raw("hub", direction="downstream", depth=1, max_nodes=5000)
    assert len(nodes) == n + 1 and len(edges) == 2 * n  # fetched in chunks
    capped, _ = await store.lineage_raw("hub", direction="downstream", depth=1, max_nodes=100)
    assert len(capped) == 100
