"""The catalog service: REST (FastAPI) and GraphQL (strawberry, see ``graphql.py``) over the Redis store.

Errors are always answered with a status and a reason: 400 bad filter or limit, 401/403 auth, 404 unknown id,
413 body too large, 422 invalid body (with the field path), 503 Redis unavailable. Nothing answers 500 on
purpose; a schemathesis run in the test suite checks that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import redis.asyncio as aredis
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cortex.catalog.auth import Principal, identify, require
from cortex.catalog.config import CatalogConfig
from cortex.catalog.store import FILTERS, CatalogStore
from cortex.coord.connection import client
from cortex.coord.events import listen
from cortex.coord.keys import CatalogKeys
from cortex.errors import ApiError, AssetNotFound, AuthError, BodyTooLarge
from cortex.models.assets import ASSET_ID, Asset, LineageEdge

AssetId = Annotated[str, Path(pattern=ASSET_ID, description="Asset id, e.g. repo:payments-api")]


class Page(BaseModel):
    """A page of assets; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[Asset]
    next_cursor: str | None


class LineageOut(BaseModel):
    """Assets and edges reachable from ``root``."""

    root: str
    direction: str
    depth: int
    nodes: list[Asset]
    edges: list[LineageEdge]


class UpsertOut(BaseModel):
    """What an upsert did."""

    result: Literal["created", "updated", "unchanged"]
    asset: Asset


class Metrics:
    """Request metrics of the service, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cortex_catalog_requests_total",
            "Requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cortex_catalog_request_seconds",
            "Server-side request time",
            ["route"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1),
        )


# ---------------------------------------------------------------- dependencies
# All async: FastAPI runs plain ``def`` dependencies in a thread pool, a thread hop per dependency per request.
async def get_config(request: Request) -> CatalogConfig:
    """The service configuration."""
    return request.app.state.config  # type: ignore[no-any-return]


Config = Annotated[CatalogConfig, Depends(get_config)]


async def get_principal(config: Config, authorization: Annotated[str | None, Header()] = None) -> Principal:
    """The caller, from the bearer token."""
    return identify(config, authorization)


async def can_read(config: Config, who: Annotated[Principal, Depends(get_principal)]) -> None:
    """Allow the request only with the read scope (or open reads)."""
    require(config, who, "read")


async def can_write(config: Config, who: Annotated[Principal, Depends(get_principal)]) -> None:
    """Allow the request only with the write scope."""
    require(config, who, "write")


async def get_store(request: Request) -> CatalogStore:
    """The Redis store."""
    return request.app.state.store  # type: ignore[no-any-return]


Store = Annotated[CatalogStore, Depends(get_store)]


def only(request: Request, allowed: set[str]) -> None:
    """400 for query parameters the route does not know (a typo must not silently widen a filter)."""
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise ApiError(400, f"unknown query parameter(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def check_limit(config: CatalogConfig, limit: int) -> None:
    """400 for a page larger than configured."""
    if limit > config.max_limit:
        raise ApiError(400, f"limit {limit} is over the maximum of {config.max_limit}")


def raw_json(text: str, status: int = 200) -> Response:
    """A JSON response from already-serialised JSON (the store keeps assets as validated JSON)."""
    return Response(content=text, status_code=status, media_type="application/json")


def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


probes = APIRouter(tags=["probes"])
reads = APIRouter(dependencies=[Depends(can_read)])
writes = APIRouter(dependencies=[Depends(can_write)])


# ---------------------------------------------------------------------- probes
@probes.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@probes.get("/readyz", responses={503: {"description": "Redis unreachable"}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: Redis answers."""
    try:
        await request.app.state.redis.ping()
    except (RedisError, OSError) as exc:
        return JSONResponse({"status": "unavailable", "reason": type(exc).__name__}, 503)
    return JSONResponse({"status": "ready"})


@probes.get("/metrics", response_class=PlainTextResponse)
async def prometheus(request: Request) -> Response:
    """Prometheus metrics in the text format."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


# ----------------------------------------------------------------------- reads
@reads.get("/assets", tags=["assets"], response_model=Page)
async def list_assets(
    request: Request,
    s: Store,
    config: Config,
    type: str | None = None,
    owner: str | None = None,
    namespace: str | None = None,
    tag: str | None = None,
    health: str | None = None,
    q: Annotated[str | None, Query(max_length=256)] = None,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1)] = 50,
) -> Response:
    """Assets matching every filter, ordered by id; ``cursor`` continues from a previous page."""
    only(request, {*FILTERS, "q", "cursor", "limit"})
    check_limit(config, limit)
    given = {"type": type, "owner": owner, "namespace": namespace, "tag": tag, "health": health}
    ids, nxt = await s.list_ids({k: v for k, v in given.items() if v}, q=q, cursor=cursor, limit=limit)
    items = _array(await s.get_many_raw(ids))
    return raw_json(f'{{"items":{items},"next_cursor":{json.dumps(nxt)}}}')


@reads.get("/assets/{asset_id:path}", tags=["assets"], response_model=Asset, responses={404: {}})
async def get_asset(asset_id: AssetId, s: Store) -> Response:
    """One asset."""
    found = await s.get_raw(asset_id)
    if found is None:
        raise AssetNotFound(asset_id)
    return raw_json(found)


@reads.get("/search", tags=["assets"], response_model=list[Asset])
async def search(
    request: Request,
    s: Store,
    config: Config,
    q: Annotated[str, Query(min_length=1, max_length=256)],
    limit: Annotated[int, Query(ge=1)] = 20,
) -> Response:
    """Assets having every word of ``q``, most recently updated first."""
    only(request, {"q", "limit"})
    check_limit(config, limit)
    return raw_json(_array(await s.get_many_raw(await s.search_ids(q, limit=limit))))


@reads.get("/lineage/{asset_id:path}", tags=["lineage"], response_model=LineageOut, responses={400: {}, 404: {}})
async def lineage(
    request: Request,
    asset_id: AssetId,
    s: Store,
    config: Config,
    direction: Literal["upstream", "downstream", "both"] = "both",
    depth: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    """Assets upstream, downstream or both of an asset, to ``depth`` hops."""
    only(request, {"direction", "depth"})
    if depth > config.max_depth:
        raise ApiError(400, f"depth {depth} is over the maximum of {config.max_depth}")
    nodes, edges = await s.lineage_raw(asset_id, direction=direction, depth=depth, max_nodes=config.max_nodes)
    head = json.dumps({"root": asset_id, "direction": direction, "depth": depth})[:-1]
    return raw_json(f'{head},"nodes":{_array(nodes)},"edges":{_array(edges)}}}')


@reads.get("/stats", tags=["assets"])
async def stats(s: Store) -> dict[str, Any]:
    """Counts of assets by type, health, namespace and owner, and of lineage edges."""
    return dataclasses.asdict(await s.stats())


@reads.get("/events", tags=["events"], response_class=StreamingResponse)
async def events(request: Request, config: Config) -> StreamingResponse:
    """Server-sent events: one ``change`` event per catalog change, as it happens."""
    redis: aredis.Redis = request.app.state.redis
    changes = listen(redis, CatalogKeys(config.prefix).channel)
    await anext(changes)  # subscribed (or retrying) before the response starts

    async def stream() -> AsyncIterator[str]:
        try:
            yield ": subscribed\n\n"
            async for data in changes:
                if await request.is_disconnected():
                    return
                if data is not None:
                    yield f"event: change\ndata: {json.dumps(json.loads(data))}\n\n"
        except asyncio.CancelledError:
            pass
        finally:
            await changes.aclose()

    return StreamingResponse(stream(), media_type="text/event-stream")


# ---------------------------------------------------------------------- writes
@writes.put("/assets/{asset_id:path}", tags=["assets"], responses={400: {}, 413: {}})
async def put_asset(asset_id: AssetId, asset: Asset, s: Store, response: Response) -> UpsertOut:
    """Create or replace an asset (the body's id must equal the path's)."""
    if asset.id != asset_id:
        raise ApiError(400, f"body id {asset.id!r} differs from path id {asset_id!r}")
    result = await s.upsert(asset)
    response.status_code = 201 if result == "created" else 200
    stored = await s.get(asset_id)
    if stored is None:  # deleted by someone else in between
        raise AssetNotFound(asset_id)
    return UpsertOut(result=result, asset=stored)


@writes.delete("/assets/{asset_id:path}", tags=["assets"], status_code=204, responses={404: {}})
async def delete_asset(asset_id: AssetId, s: Store) -> Response:
    """Delete an asset and every lineage edge that touches it."""
    if not await s.delete(asset_id):
        raise AssetNotFound(asset_id)
    return Response(status_code=204)


@writes.post("/lineage", tags=["lineage"], status_code=201, responses={404: {}})
async def add_edge(edge: LineageEdge, s: Store, response: Response) -> LineageEdge:
    """Record a lineage edge between two existing assets (200 when it already existed)."""
    if not await s.link(edge):
        response.status_code = 200
    return edge


# ------------------------------------------------------------------ middleware
class LimitsAndMetrics:
    """Pure ASGI middleware: 413 for bodies over the limit (declared or streamed), request metrics, and a
    ``Server-Timing`` header with the server-side time. (Starlette's BaseHTTPMiddleware cost about 1 ms a request.)"""

    def __init__(self, app: ASGIApp, config: CatalogConfig, metrics: Metrics) -> None:
        self.app = app
        self.limit = config.max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            response = _error(413, f"body over {self.limit} bytes")
            status = 413
            await response(scope, receive, send)
        else:
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                received += len(message.get("body", b""))
                if received > self.limit:  # a body streamed without a (truthful) Content-Length
                    raise BodyTooLarge
                return message

            async def timed_send(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    took = (time.perf_counter() - started) * 1000
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"server-timing", f"app;dur={took:.3f}".encode()),
                    ]
                await send(message)

            try:
                await self.app(scope, limited_receive, timed_send)
            except BodyTooLarge:
                status = 413
                await _error(413, f"body over {self.limit} bytes")(scope, receive, send)
        route = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.requests.labels(scope["method"], route, str(status)).inc()
        self.metrics.latency.labels(route).observe(time.perf_counter() - started)


# ------------------------------------------------------------------------- app
def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status, headers=headers or None)


def create_app(config: CatalogConfig, redis_url: str) -> FastAPI:
    """The catalog application. Redis is connected when the app starts and closed when it stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.redis = client(redis_url)  # commands retry with backoff through a Redis restart
        app.state.store = CatalogStore(app.state.redis, CatalogKeys(config.prefix))
        yield
        await app.state.redis.aclose()

    app = FastAPI(title="Cortex catalog", version="1", lifespan=lifespan)
    app.state.config = config
    app.state.metrics = metrics = Metrics()

    app.add_middleware(LimitsAndMetrics, config=config, metrics=metrics)

    handlers: dict[type[Exception], Callable[[Exception], JSONResponse]] = {
        ApiError: lambda e: _error(e.status, str(e)),  # type: ignore[attr-defined]
        AuthError: lambda e: _error(e.status, str(e), **{"WWW-Authenticate": "Bearer"}),  # type: ignore[attr-defined]
        AssetNotFound: lambda e: _error(404, str(e)),
        RedisError: lambda e: _error(503, f"catalog storage unavailable: {type(e).__name__}"),
    }
    for exc_type, make in handlers.items():

        async def handle(
            request: Request, exc: Exception, make: Callable[[Exception], JSONResponse] = make
        ) -> JSONResponse:
            return make(exc)

        app.add_exception_handler(exc_type, handle)

    for router in (probes, reads, writes):
        app.include_router(router)
    from cortex.catalog.graphql import graphql_router

    app.include_router(graphql_router(config), prefix="/graphql")
    return app
