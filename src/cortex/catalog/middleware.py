"""The catalog's request metrics and the middleware that enforces body limits, measures every request and
answers the hottest read itself (``get_asset``)."""

from __future__ import annotations

import os
import re
import time

from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cortex.catalog.auth import identify, require
from cortex.catalog.config import CatalogConfig
from cortex.catalog.store import CatalogStore
from cortex.errors import AuthError, BodyTooLarge
from cortex.models.assets import ASSET_ID

GET_ASSET_ROUTE = "/assets/{asset_id:path}"
"""The get-by-id route's label in the metrics (the one the framework's router gives it)."""
_ASSET_PATH = "/assets/"
_ASSET_ID = re.compile(ASSET_ID)


class Metrics:
    """Request metrics of the service, in its own registry; with ``PROMETHEUS_MULTIPROC_DIR`` set (``cortex catalog
    serve --workers N``), in files every worker process shares, read together at each scrape."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cortex_catalog_requests_total",
            "Requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.last_discovery = Gauge(
            "cortex_catalog_discovery_last_timestamp_seconds",
            "When the last discovery pass ended (0: never), read from Redis at each scrape",
            registry=self.registry,
            multiprocess_mode="max",  # the latest timestamp any worker read
        )
        self.latency = Histogram(
            "cortex_catalog_request_seconds",
            "Server-side request time",
            ["route"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1),
        )

    def exposed(self) -> CollectorRegistry:
        """The registry to expose: this process's, or every worker's values when they share a directory."""
        if not self.multiprocess:
            return self.registry
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged


class LimitsAndMetrics:
    """Pure ASGI middleware: 413 for bodies over the limit (declared or streamed), request metrics, and a
    ``Server-Timing`` header with the server-side time; an authorised get by id it answers itself (``get_asset``).
    (Starlette's BaseHTTPMiddleware cost about 1 ms a request.)"""

    def __init__(self, app: ASGIApp, config: CatalogConfig, metrics: Metrics) -> None:
        self.app = app
        self.config = config
        self.limit = config.max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, answered = 500, False
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            response = error_response(413, f"body over {self.limit} bytes")
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
                answered = await get_asset(scope, receive, timed_send, self.config)
                if not answered:
                    await self.app(scope, limited_receive, timed_send)
            except BodyTooLarge:
                status = 413
                await error_response(413, f"body over {self.limit} bytes")(scope, receive, send)
        route = GET_ASSET_ROUTE if answered else getattr(scope.get("route"), "path", "unmatched")
        self.metrics.requests.labels(scope["method"], route, str(status)).inc()
        self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def error_response(status: int, message: str, **headers: str) -> JSONResponse:
    """The catalog's error answer: ``{"detail": message}`` with ``status``."""
    return JSONResponse({"detail": message}, status, headers=headers or None)


def storage_unavailable(exc: Exception) -> JSONResponse:
    """The answer when Redis failed (after the client's retries): 503, naming the error's type only."""
    return error_response(503, f"catalog storage unavailable: {type(exc).__name__}")


def _asset_id(scope: Scope) -> str | None:
    """The asset id of a ``GET /assets/{id}`` request, or None for any other request."""
    if scope["method"] != "GET" or scope.get("root_path"):  # mounted under a prefix: the router's job
        return None
    path: str = scope["path"]
    if not path.startswith(_ASSET_PATH):
        return None
    asset_id = path[len(_ASSET_PATH) :]
    return asset_id if _ASSET_ID.match(asset_id) else None


async def get_asset(scope: Scope, receive: Receive, send: Send, config: CatalogConfig) -> bool:
    """Answer ``scope`` if it is an authorised ``GET /assets/{id}`` of a stored asset (or 503 when Redis fails, as
    the application would); False when the application should answer it.

    FastAPI's routing and dependency resolution were three quarters of the server's time on a get by id (py-spy
    under load: 60% in ``solve_dependencies`` and the routers, 20% in the read itself). The checks here are the
    route's own (the id's pattern, the bearer token, the read scope) and so is the body (the stored JSON, never
    re-validated); anything else (a bad id, a missing or refused token, an unknown asset) is left to the
    application, so every error keeps the framework's answer."""
    asset_id = _asset_id(scope)
    store: CatalogStore | None = getattr(getattr(scope.get("app"), "state", None), "store", None)
    if asset_id is None or store is None:
        return False
    authorization = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
    try:
        require(config, identify(config, authorization), "read")
    except AuthError:
        return False
    try:
        found = await store.get_raw(asset_id)
    except RedisError as exc:
        await storage_unavailable(exc)(scope, receive, send)
        return True
    if found is None:
        return False
    body = found.encode()
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return True
