"""The web view (FastAPI): pages rendered on the server, drawn and kept live in the browser by ``static/ui.js``
through server-sent events. Every asset is in the package: the view works with no network beyond its own.

Pages: ``/`` runs (filters), ``/runs/{id}`` a run live (phases, a Gantt of its tasks planned against actual,
progress per master, running tasks, failures and their reasons, tokens per master against the plan, nodes,
the event feed), ``/runs/{id}/findings``, ``/runs/{id}/plan`` (the task graph, routing, budgets, scenarios),
``/catalog`` and ``/catalog/assets/{id}`` (an asset and its lineage, bounded). JSON under ``/api``; the live
stream is ``/api/runs/{id}/stream``.

Bound to 127.0.0.1 by default. Exposed elsewhere, it takes the catalog's token scheme (``--config``): every
request needs a token with the ``read`` scope, as a Bearer header or (for a browser) once as ``?token=``, kept
in an HttpOnly cookie.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import redis.asyncio as aredis
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST

from cortex.catalog.auth import identify, require
from cortex.catalog.config import CatalogConfig
from cortex.catalog.store import CatalogStore
from cortex.errors import ApiError, RunNotFound
from cortex.ui import data, metrics

TICK_S = 0.5
COOKIE = "cortex_ui_token"
MAX_LINEAGE_NODES = 60


pages = APIRouter()
api = APIRouter(prefix="/api")


def _redis(request: Request) -> aredis.Redis:
    return request.app.state.redis


def _page(request: Request, name: str, **values: Any) -> HTMLResponse:
    return HTMLResponse(request.app.state.env.get_template(name).render(**values))


def create_app(redis_url: str, config: CatalogConfig | None = None, state_dir: Path | None = None) -> FastAPI:
    """The web view over the Redis at ``redis_url``; ``config`` None: no token asked (loopback only).
    ``state_dir``: where fix branches' patches may be read from (nothing outside it is read)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.redis = aredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            yield
        finally:
            await app.state.redis.aclose()

    app = FastAPI(title="Cortex", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.env = Environment(loader=PackageLoader("cortex.ui", "templates"), autoescape=select_autoescape(["html"]))
    app.state.config = config
    app.state.state_dir = state_dir.resolve() if state_dir else None
    app.mount("/static", StaticFiles(directory=str(files("cortex.ui") / "static")), name="static")
    app.middleware("http")(_auth)
    app.add_exception_handler(RunNotFound, _missing)
    app.include_router(pages)
    app.include_router(api)
    return app


async def _auth(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Every request but the static assets needs a read token when the view has a token configuration."""
    config: CatalogConfig | None = request.app.state.config
    if config is None or request.url.path.startswith("/static/"):
        return await call_next(request)
    given = request.query_params.get("token") or request.cookies.get(COOKIE)
    header = request.headers.get("authorization") or (f"Bearer {given}" if given else None)
    try:
        require(config, identify(config, header), "read")
    except ApiError as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    response = await call_next(request)
    if request.query_params.get("token"):
        response.set_cookie(COOKIE, request.query_params["token"], httponly=True, samesite="strict")
    return response


async def _missing(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=404)


# ------------------------------------------------------------------------------------------- pages
@pages.get("/", response_class=HTMLResponse)
async def runs_page(request: Request, status: str | None = None, q: str | None = None) -> HTMLResponse:
    rows = await data.runs(_redis(request), status=status, text=q)
    return _page(request, "runs.html", rows=rows, status=status or "", q=q or "")


@pages.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, run_id: str) -> HTMLResponse:
    await data.run(_redis(request), run_id)  # 404 when unknown
    return _page(request, "run.html", run_id=run_id)


@pages.get("/runs/{run_id}/findings", response_class=HTMLResponse)
async def findings_page(request: Request, run_id: str) -> HTMLResponse:
    view = await data.run(_redis(request), run_id)
    root = request.app.state.state_dir
    for t in view["tasks"]:
        patch = t["output"].get("patch")
        if root is not None and isinstance(patch, str):  # the fix's diff, when it is a file under the state dir
            t["output"]["diff"] = await asyncio.to_thread(data.patch_text, root, patch)
    return _page(request, "findings.html", run_id=run_id, view=view)


@pages.get("/runs/{run_id}/plan", response_class=HTMLResponse)
async def plan_page(request: Request, run_id: str) -> HTMLResponse:
    return _page(request, "plan.html", run_id=run_id, plan=await data.plan_json(_redis(request), run_id))


@pages.get("/catalog", response_class=HTMLResponse)
async def catalog_page(request: Request, q: str | None = None) -> HTMLResponse:
    found = await CatalogStore(_redis(request)).search(q, limit=50) if q else []
    return _page(request, "catalog.html", q=q or "", assets=found)


@pages.get("/catalog/assets/{asset_id:path}", response_class=HTMLResponse)
async def asset_page(request: Request, asset_id: str, depth: int = 2) -> HTMLResponse:
    store = CatalogStore(_redis(request))
    asset = await store.get(asset_id)
    if asset is None:
        raise HTTPException(404, f"no asset {asset_id!r}")
    lineage = await store.lineage(asset_id, depth=max(1, min(depth, 4)))
    nodes = [n.id for n in lineage.nodes][:MAX_LINEAGE_NODES]
    edges = [e for e in lineage.edges if e.upstream in nodes and e.downstream in nodes]
    graph = {"root": asset_id, "nodes": nodes, "edges": [[e.upstream, e.relation, e.downstream] for e in edges]}
    return _page(request, "asset.html", asset=asset, graph=graph, cut=len(lineage.nodes) - len(nodes))


@pages.get("/metrics")
async def prometheus(request: Request) -> Response:
    """The runs of the index as Prometheus series (``ui/metrics.py``)."""
    states = await data.recent_states(_redis(request), metrics.RECENT_S)
    return Response(metrics.exposition(states), media_type=CONTENT_TYPE_LATEST)


# --------------------------------------------------------------------------------------------- api
@api.get("/runs")
async def api_runs(request: Request, status: str | None = None, q: str | None = None) -> list[dict[str, Any]]:
    return await data.runs(_redis(request), status=status, text=q)


@api.get("/runs/{run_id}")
async def api_run(request: Request, run_id: str) -> dict[str, Any]:
    view = await data.run(_redis(request), run_id)
    view["events"] = await data.events(_redis(request), run_id)
    return view


@api.get("/runs/{run_id}/stream")
async def api_stream(request: Request, run_id: str) -> StreamingResponse:
    await data.run(_redis(request), run_id)
    return StreamingResponse(_stream(_redis(request), run_id, request), media_type="text/event-stream")


async def _stream(redis: aredis.Redis, run_id: str, request: Request) -> AsyncIterator[str]:
    """Server-sent events: ``snapshot`` (state and tasks) whenever the run's state changed, ``feed`` for each new
    entry of its event stream; ends once the run has finished and said so."""
    last_update = None
    last_event = "-"
    while not await request.is_disconnected():
        view = await data.run(redis, run_id)
        updated = (view["state"].get("updated_at"), view["report"] is not None)
        if updated != last_update:
            last_update = updated
            yield f"event: snapshot\ndata: {json.dumps(view)}\n\n"
        new = await data.events(redis, run_id, after=last_event)
        if new:
            last_event = new[-1]["entry"]
            yield f"event: feed\ndata: {json.dumps(new)}\n\n"
        if view["report"] is not None:
            yield "event: end\ndata: {}\n\n"
            return
        await asyncio.sleep(TICK_S)  # the coordinator refreshes the run's state every half second
