"""The catalog's request metrics and the middleware that enforces body limits and measures every request."""

from __future__ import annotations

import os
import time

from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cortex.catalog.config import CatalogConfig
from cortex.errors import BodyTooLarge


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
                await self.app(scope, limited_receive, timed_send)
            except BodyTooLarge:
                status = 413
                await error_response(413, f"body over {self.limit} bytes")(scope, receive, send)
        route = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.requests.labels(scope["method"], route, str(status)).inc()
        self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def error_response(status: int, message: str, **headers: str) -> JSONResponse:
    """The catalog's error answer: ``{"detail": message}`` with ``status``."""
    return JSONResponse({"detail": message}, status, headers=headers or None)
