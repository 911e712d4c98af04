"""The catalog service: REST (FastAPI) and GraphQL (strawberry, see ``graphql.py``) over the Redis store.

Errors are always answered with a status and a reason: 400 bad filter or limit, 401/403 auth, 404 unknown id,
413 body too large, 422 invalid body (with the field path), 503 Redis unavailable. Nothing answers 500 on
purpose; a schemathesis run in the test suite checks that.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Annotated, Any, Literal

import redis.asyncio as aredis
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from redis.exceptions import RedisError

from cortex.catalog.auth import Principal, identify, require
from cortex.catalog.config import CatalogConfig
from cortex.catalog.limits import StreamSlots
from cortex.catalog.middleware import LimitsAndMetrics, Metrics, error_response, storage_unavailable
from cortex.catalog.store import FILTERS, CatalogStore
from cortex.coord.connection import client, pool_use
from cortex.coord.events import listen
from cortex.coord.keys import CatalogKeys
from cortex.errors import ApiError, AssetNotFound, AuthError
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


@probes.get("/readyz", responses={503: {"description": "Redis unreachable, or every connection to it busy"}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: Redis answers and a connection to it is free (a saturated pool makes requests wait); with the
    use of the request pool and of the stream slots."""
    state = request.app.state
    in_use, most = pool_use(state.redis)
    body: dict[str, Any] = {
        "redis_connections": {"in_use": in_use, "max": most},
        "event_streams": {"open": state.slots.open, "max": state.slots.limit},
    }
    if most is not None and in_use >= most:
        return JSONResponse({"status": "saturated", "reason": "every Redis connection is in use", **body}, 503)
    try:
        await state.redis.ping()
    except (RedisError, OSError) as exc:
        return JSONResponse({"status": "unavailable", "reason": type(exc).__name__, **body}, 503)
    return JSONResponse({"status": "ready", **body})


api_pages = APIRouter(include_in_schema=False)


@api_pages.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI, every asset served here."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Cortex catalog: API",
        swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/static/favicon.svg",
    )


@api_pages.get("/redoc", response_class=HTMLResponse)
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc, every asset served here (no web fonts fetched)."""
    return get_redoc_html(
        openapi_url="/openapi.json",
        title="Cortex catalog: API",
        redoc_js_url="/static/redoc/redoc.standalone.js",
        redoc_favicon_url="/static/favicon.svg",
        with_google_fonts=False,
    )


@probes.get("/metrics", response_class=PlainTextResponse)
async def prometheus(request: Request) -> Response:
    """Prometheus metrics in the text format."""
    state = request.app.state
    with contextlib.suppress(RedisError, OSError):  # Redis away: the gauge keeps its last value; /readyz says why
        last = await state.redis.get(state.store.keys.last_discovery)
        state.metrics.last_discovery.set(float(last or 0))
    return Response(generate_latest(state.metrics.exposed()), media_type=CONTENT_TYPE_LATEST)


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


@reads.get("/events", tags=["events"], response_class=StreamingResponse, responses={503: {}})
async def events(request: Request, config: Config) -> StreamingResponse:
    """Server-sent events: one ``change`` event per catalog change, as it happens. At most
    ``max_event_streams`` are open at once (with the GraphQL subscriptions); one more gets 503."""
    slots: StreamSlots = request.app.state.slots
    if not slots.take():
        raise ApiError(503, f"too many open streams of changes ({slots.limit}); try again later")
    redis: aredis.Redis = request.app.state.events_redis
    changes = listen(redis, CatalogKeys(config.prefix).channel)
    try:
        await anext(changes)  # subscribed (or retrying) before the response starts
    except BaseException:
        slots.give_back()
        raise

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
            slots.give_back()
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


# ------------------------------------------------------------------------- app
def create_app(config: CatalogConfig, redis_url: str) -> FastAPI:
    """The catalog application. Redis is connected when the app starts and closed when it stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Commands retry with backoff through a Redis restart; the request pool is bounded (requests wait for a
        # connection), and the streams of changes hold connections of their own pool, so they cannot starve it.
        app.state.redis = client(
            redis_url, max_connections=config.redis_max_connections, pool_timeout_s=config.redis_pool_timeout_s
        )
        app.state.events_redis = client(redis_url, max_connections=config.max_event_streams + 1)
        app.state.slots = StreamSlots(config.max_event_streams)
        app.state.store = CatalogStore(app.state.redis, CatalogKeys(config.prefix))
        yield
        await app.state.redis.aclose()
        await app.state.events_redis.aclose()

    # /docs and /redoc load their scripts from the catalog itself (static/), never from a CDN: they work offline
    app = FastAPI(title="Cortex catalog", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=str(files("cortex.catalog") / "static")), name="static")
    app.state.config = config
    app.state.metrics = metrics = Metrics()

    app.add_middleware(LimitsAndMetrics, config=config, metrics=metrics)

    handlers: dict[type[Exception], Callable[[Exception], JSONResponse]] = {
        ApiError: lambda e: error_response(e.status, str(e)),  # type: ignore[attr-defined]
        AuthError: lambda e: error_response(e.status, str(e), **{"WWW-Authenticate": "Bearer"}),  # type: ignore[attr-defined]
        AssetNotFound: lambda e: error_response(404, str(e)),
        RedisError: storage_unavailable,
    }
    for exc_type, make in handlers.items():

        async def handle(
            request: Request, exc: Exception, make: Callable[[Exception], JSONResponse] = make
        ) -> JSONResponse:
            return make(exc)

        app.add_exception_handler(exc_type, handle)

    for router in (probes, reads, writes, api_pages):
        app.include_router(router)
    from cortex.catalog.graphql import graphql_router

    app.include_router(graphql_router(config), prefix="/graphql")
    return app
