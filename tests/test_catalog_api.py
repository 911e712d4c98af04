"""The catalog API over real HTTP (uvicorn on loopback) against a real Redis: every REST route, GraphQL field,
auth scopes and the bad-input answers."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis.asyncio as aredis

from cortex.catalog.config import CatalogConfig, new_token
from cortex.catalog.server import BackgroundServer
from cortex.coord.server import EmbeddedRedis
from cortex.models.assets import Asset

pytestmark = pytest.mark.timeout(120)


@dataclass
class Catalog:
    url: str
    writer: dict[str, str]
    reader: dict[str, str]
    config: CatalogConfig


def make_catalog(redis_server: EmbeddedRedis, **overrides: object) -> tuple[BackgroundServer, Catalog]:
    w_token, w_spec = new_token("writer", ["read", "write"])
    r_token, r_spec = new_token("reader", ["read"])
    config = CatalogConfig(
        tokens=[w_spec, r_spec], prefix=f"cortex:catalog:{uuid.uuid4().hex[:8]}", max_body_bytes=64_000, **overrides
    )  # type: ignore[arg-type]
    server = BackgroundServer(config, redis_server.url).start()
    return server, Catalog(
        server.url, {"Authorization": f"Bearer {w_token}"}, {"Authorization": f"Bearer {r_token}"}, config
    )


@pytest.fixture
def catalog(redis_server: EmbeddedRedis) -> Iterator[Catalog]:
    server, cat = make_catalog(redis_server)
    try:
        yield cat
    finally:
        server.stop()


def body(asset_id: str, **kw: object) -> dict[str, object]:
    return {"id": asset_id, "type": "repository", "name": asset_id.split(":")[-1], "tags": ["python"], **kw}


def test_put_get_list_delete_round_trip(catalog: Catalog) -> None:
    with httpx.Client(base_url=catalog.url, headers=catalog.writer, timeout=10) as c:
        created = c.put("/assets/repo:payments-api", json=body("repo:payments-api", owner="team-pay"))
        assert created.status_code == 201 and created.json()["result"] == "created"
        again = c.put("/assets/repo:payments-api", json=body("repo:payments-api", owner="team-pay"))
        assert again.status_code == 200 and again.json()["result"] == "unchanged"
        got = c.get("/assets/repo:payments-api").json()
        assert got["owner"] == "team-pay" and got["discovered_at"] is not None
        c.put("/assets/img:pay", json=body("img:pay", type="image"))
        listed = c.get("/assets", params={"type": "repository", "owner": "team-pay"}).json()
        assert [a["id"] for a in listed["items"]] == ["repo:payments-api"]
        assert c.delete("/assets/repo:payments-api").status_code == 204
        assert c.get("/assets/repo:payments-api").status_code == 404
        assert c.delete("/assets/repo:payments-api").status_code == 404


def test_pagination_search_lineage_and_stats(catalog: Catalog) -> None:
    with httpx.Client(base_url=catalog.url, headers=catalog.writer, timeout=10) as c:
        for i in range(5):
            c.put(f"/assets/repo:r{i}", json=body(f"repo:r{i}"))
        first = c.get("/assets", params={"limit": 2}).json()
        second = c.get("/assets", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert [a["id"] for a in first["items"] + second["items"]] == ["repo:r0", "repo:r1", "repo:r2", "repo:r3"]
        assert [a["id"] for a in c.get("/search", params={"q": "r3 python"}).json()] == ["repo:r3"]
        for up, down in [("repo:r0", "repo:r1"), ("repo:r1", "repo:r2"), ("repo:r2", "repo:r3")]:
            assert (
                c.post(
                    "/lineage", json={"upstream": up, "downstream": down, "relation": "feeds", "task_id": "t1"}
                ).status_code
                == 201
            )
        lin = c.get("/lineage/repo:r0", params={"direction": "downstream", "depth": 3}).json()
        assert [n["id"] for n in lin["nodes"]] == ["repo:r0", "repo:r1", "repo:r2", "repo:r3"]
        assert all(e["task_id"] == "t1" for e in lin["edges"])
        stats = c.get("/stats").json()
        assert stats["assets"] == 5 and stats["edges"] == 3 and stats["by_type"] == {"repository": 5}
        missing = c.post("/lineage", json={"upstream": "repo:r0", "downstream": "repo:nope", "relation": "x"})
        assert missing.status_code == 404


def test_bad_input_answers(catalog: Catalog) -> None:
    with httpx.Client(base_url=catalog.url, headers=catalog.writer, timeout=10) as c:
        wrong_type = c.put("/assets/repo:x", json=body("repo:x", tags="python"))
        assert wrong_type.status_code == 422
        assert wrong_type.json()["detail"][0]["loc"] == ["body", "tags"]
        malformed = c.put("/assets/repo:x", content=b'{"id": ', headers={"Content-Type": "application/json"})
        assert malformed.status_code == 422
        assert c.put("/assets/repo:x", json=body("repo:y")).status_code == 400
        assert c.put("/assets/repo:x", json=body("repo:x", metadata={"blob": "x" * 70_000})).status_code == 413
        assert c.get("/assets", params={"colour": "red"}).json()["detail"].startswith("unknown query parameter")
        assert c.get("/assets", params={"colour": "red"}).status_code == 400
        c.put("/assets/repo:x", json=body("repo:x"))
        deep = c.get("/lineage/repo:x", params={"depth": 99})
        assert deep.status_code == 400 and "over the maximum of 5" in deep.json()["detail"]
        assert c.get("/assets", params={"limit": 100_000}).status_code == 400
        assert c.get("/lineage/repo:unknown").status_code == 404


def test_auth_scopes(catalog: Catalog) -> None:
    with httpx.Client(base_url=catalog.url, timeout=10) as c:
        assert c.get("/assets").status_code == 401  # reads are closed by default
        assert c.get("/assets", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.get("/assets", headers=catalog.reader).status_code == 200
        denied = c.put("/assets/repo:a", json=body("repo:a"), headers=catalog.reader)
        assert denied.status_code == 403 and "lacks the 'write' scope" in denied.json()["detail"]
        assert c.put("/assets/repo:a", json=body("repo:a"), headers=catalog.writer).status_code == 201
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").json()["status"] == "ready"
        gql = c.post("/graphql", json={"query": "{ stats { assets } }"})
        assert gql.status_code == 401


def test_open_reads_still_need_a_token_to_write(redis_server: EmbeddedRedis) -> None:
    server, cat = make_catalog(redis_server, read_open=True)
    try:
        with httpx.Client(base_url=cat.url, timeout=10) as c:
            assert c.get("/assets").status_code == 200
            assert c.put("/assets/repo:a", json=body("repo:a")).status_code == 401
    finally:
        server.stop()


def gql(c: httpx.Client, query: str, **variables: object) -> dict:  # type: ignore[type-arg]
    reply = c.post("/graphql", json={"query": query, "variables": variables})
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def test_graphql_fields_mutations_and_lineage_resolver(catalog: Catalog) -> None:
    with httpx.Client(base_url=catalog.url, headers=catalog.writer, timeout=10) as c:
        for i in ("a", "b", "c"):
            out = gql(c, "mutation($a: JSON!) { upsertAsset(asset: $a) { id type } }", a=body(f"repo:{i}"))
            assert out["data"]["upsertAsset"]["id"] == f"repo:{i}"
        c.post("/lineage", json={"upstream": "repo:a", "downstream": "repo:b", "relation": "feeds", "agent": "w1"})
        c.post("/lineage", json={"upstream": "repo:b", "downstream": "repo:c", "relation": "feeds"})
        q = """{ asset(id: "repo:a") { id name tags health { status signals checkedAt } metadata
                   lineage(direction: DOWNSTREAM, depth: 2) { root nodes { id } edges { upstream downstream agent } } }
                 assets(type: "repository", first: 2) { items { id } nextCursor }
                 search(q: "b python") { id }
                 lineage(id: "repo:c", direction: UPSTREAM, depth: 1) { nodes { id } }
                 stats { assets edges byType { key count } byHealth { key count }
                         byNamespace { key } byOwner { key } } }"""
        data = gql(c, q)["data"]
        assert [n["id"] for n in data["asset"]["lineage"]["nodes"]] == ["repo:a", "repo:b", "repo:c"]
        assert {"upstream": "repo:a", "downstream": "repo:b", "agent": "w1"} in data["asset"]["lineage"]["edges"]
        assert data["assets"] == {"items": [{"id": "repo:a"}, {"id": "repo:b"}], "nextCursor": "repo:b"}
        assert data["search"] == [{"id": "repo:b"}]
        assert [n["id"] for n in data["lineage"]["nodes"]] == ["repo:b", "repo:c"]
        assert data["stats"]["assets"] == 3 and data["stats"]["edges"] == 2
        assert data["stats"]["byType"] == [{"key": "repository", "count": 3}]
        bad = gql(c, "mutation($a: JSON!) { upsertAsset(asset: $a) { id } }", a=body("repo:x", tags="nope"))
        assert "asset.tags" in bad["errors"][0]["message"]
        deep = gql(c, '{ lineage(id: "repo:a", depth: 40) { root } }')
        assert "depth must be between 1 and 5" in deep["errors"][0]["message"]
        assert gql(c, 'mutation { deleteAsset(id: "repo:c") }')["data"]["deleteAsset"] is True
        assert gql(c, '{ asset(id: "repo:c") { id } }')["data"]["asset"] is None
    with httpx.Client(base_url=catalog.url, headers=catalog.reader, timeout=10) as c:
        denied = gql(c, 'mutation { deleteAsset(id: "repo:a") }')
        assert "lacks the 'write' scope" in denied["errors"][0]["message"]


def test_server_sent_events_stream_changes(catalog: Catalog) -> None:
    received: list[dict] = []  # type: ignore[type-arg]
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{catalog.url}/events", headers=catalog.reader, timeout=20) as stream:
            for line in stream.iter_lines():
                if line.startswith(": subscribed"):
                    ready.set()
                if line.startswith("data: "):
                    received.append(json.loads(line[6:]))
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert ready.wait(10)
    httpx.put(f"{catalog.url}/assets/repo:live", json=body("repo:live"), headers=catalog.writer, timeout=10)
    thread.join(15)
    assert received and received[0]["op"] == "upsert" and received[0]["id"] == "repo:live"


def test_metrics_count_requests(catalog: Catalog) -> None:
    with httpx.Client(base_url=catalog.url, headers=catalog.reader, timeout=10) as c:
        c.get("/assets/repo:none")
        text = c.get("/metrics").text
    assert 'cortex_catalog_requests_total{method="GET",route="/assets/{asset_id:path}",status="404"} 1.0' in text


async def test_graphql_subscription_yields_changes(redis: aredis.Redis) -> None:
    from cortex.catalog.auth import Principal
    from cortex.catalog.graphql import Context, build_schema
    from cortex.catalog.limits import StreamSlots
    from cortex.catalog.store import CatalogStore
    from cortex.coord.keys import CatalogKeys

    keys = CatalogKeys("cortex:catalog:sub")
    store = CatalogStore(redis, keys)
    config = CatalogConfig(prefix=keys.prefix)
    ctx = Context(store, Principal("t", frozenset({"read"})), config, redis, StreamSlots(1))
    stream = await build_schema(config).subscribe("subscription { changes { op id } }", context_value=ctx)
    first = asyncio.ensure_future(stream.__anext__())  # type: ignore[union-attr]
    while (await redis.pubsub_numsub(keys.channel))[0][1] == 0:  # until the resolver has subscribed
        await asyncio.wait([first], timeout=0.01)
    await store.upsert(Asset(id="repo:sub", type="repository", name="sub"))
    result = await asyncio.wait_for(first, 10)
    assert result.data == {"changes": {"op": "upsert", "id": "repo:sub"}}
    await stream.aclose()  # type: ignore[union-attr]


def test_get_by_id_answers_as_stored_with_auth_and_metrics(catalog: Catalog) -> None:
    """The get-by-id route (answered by the middleware itself when it succeeds) keeps every check and count."""
    with httpx.Client(base_url=catalog.url, timeout=10) as c:
        c.put("/assets/repo:a/b@1", json=body("repo:a/b@1"), headers=catalog.writer)
        got = c.get("/assets/repo:a/b@1", headers=catalog.reader)
        assert got.status_code == 200 and got.headers["content-type"] == "application/json"
        assert Asset.model_validate_json(got.content).id == "repo:a/b@1"
        assert "app;dur=" in got.headers["server-timing"]
        assert c.get("/assets/repo:a/b@1").status_code == 401
        assert c.get("/assets/repo:a/b@1", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.get("/assets/-bad", headers=catalog.reader).status_code == 422
        assert c.get("/assets/repo:none", headers=catalog.reader).status_code == 404
        text = c.get("/metrics").text
    ok = 'cortex_catalog_requests_total{method="GET",route="/assets/{asset_id:path}",status="200"} 1.0'
    refused = 'cortex_catalog_requests_total{method="GET",route="/assets/{asset_id:path}",status="401"} 2.0'
    assert ok in text and refused in text


async def test_the_middleware_answers_an_authorised_read_and_leaves_the_rest(redis: aredis.Redis) -> None:
    """``get_asset`` answers a stored asset for a reader, and declines (the application answers) a miss, a bad id,
    a missing or write-only token and any other method; with open reads no token is needed."""
    from types import SimpleNamespace

    from cortex.catalog.middleware import get_asset
    from cortex.catalog.store import CatalogStore
    from cortex.coord.keys import CatalogKeys

    r_token, r_spec = new_token("reader", ["read"])
    w_token, w_spec = new_token("writer", ["write"])
    keys = CatalogKeys(f"cortex:catalog:{uuid.uuid4().hex[:8]}")
    store = CatalogStore(redis, keys)
    await store.upsert(Asset(id="repo:fast", type="repository", name="fast"))
    app = SimpleNamespace(state=SimpleNamespace(store=store))

    async def ask(config: CatalogConfig, path: str, token: str | None, method: str = "GET") -> list[dict[str, object]]:
        headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        scope = {"type": "http", "method": method, "path": path, "headers": headers, "app": app}
        sent: list[dict[str, object]] = []

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        answered = await get_asset(scope, None, send, config)  # type: ignore[arg-type]
        assert answered == bool(sent)
        return sent

    closed = CatalogConfig(tokens=[r_spec, w_spec], prefix=keys.prefix)
    sent = await ask(closed, "/assets/repo:fast", r_token)
    assert sent[0]["status"] == 200 and sent[1]["body"] == (await store.get_raw("repo:fast") or "").encode()
    for path, token, method in [
        ("/assets/repo:missing", r_token, "GET"),
        ("/assets/-bad", r_token, "GET"),
        ("/assets/repo:fast", None, "GET"),
        ("/assets/repo:fast", w_token, "GET"),
        ("/assets/repo:fast", "nope", "GET"),
        ("/assets/repo:fast", r_token, "DELETE"),
        ("/lineage/repo:fast", r_token, "GET"),
    ]:
        assert await ask(closed, path, token, method) == [], (path, token, method)
    opened = CatalogConfig(tokens=[r_spec, w_spec], prefix=keys.prefix, read_open=True)
    assert (await ask(opened, "/assets/repo:fast", None))[0]["status"] == 200
    gone = aredis.Redis(unix_socket_path="/nonexistent/redis.sock")  # storage away: 503, as the application says
    app.state.store = CatalogStore(gone, keys)
    down = await ask(closed, "/assets/repo:fast", r_token)
    assert down[0]["status"] == 503 and b"catalog storage unavailable" in down[1]["body"]  # type: ignore[operator]
    await gone.aclose()
