"""Running the catalog service with uvicorn: in the foreground (``cortex catalog serve``) or in a background
thread (tests, benchmarks, the embedded demo)."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from cortex.catalog.api import create_app
from cortex.catalog.config import CatalogConfig

CONFIG_ENV = "CORTEX_CATALOG_CONFIG_JSON"
"""How ``serve`` hands the configuration (token digests, never tokens) to its worker processes."""
REDIS_ENV = "CORTEX_CATALOG_REDIS_URL"


def serve(config: CatalogConfig, redis_url: str, host: str = "127.0.0.1", port: int = 8080, workers: int = 1) -> None:
    """Serve until interrupted, in ``workers`` processes sharing the port (uvicorn's supervisor). With several,
    request metrics are kept in a shared directory (prometheus_client's multiprocess mode), so /metrics counts
    every worker's requests whichever worker answers the scrape."""
    if workers <= 1:
        uvicorn.run(create_app(config, redis_url), host=host, port=port, log_level="info", access_log=False)
        return
    with tempfile.TemporaryDirectory(prefix="cortex-catalog-metrics-") as metrics_dir:
        os.environ[CONFIG_ENV] = config.model_dump_json()
        os.environ[REDIS_ENV] = redis_url
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # read when a worker imports prometheus_client
        uvicorn.run(
            "cortex.catalog.server:app_from_env",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level="info",
            access_log=False,
        )


def app_from_env() -> FastAPI:
    """The application of one worker process of ``serve``, configured from the environment it set."""
    return create_app(CatalogConfig.model_validate_json(os.environ[CONFIG_ENV]), os.environ[REDIS_ENV])


class BackgroundServer:
    """The catalog on a free loopback port in a thread; ``url`` once started. A context manager."""

    def __init__(self, config: CatalogConfig, redis_url: str, port: int = 0) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(
                create_app(config, redis_url),
                host="127.0.0.1",
                port=port,
                log_level="warning",
                access_log=False,
                lifespan="on",
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="catalog-api", daemon=True)
        self.url = ""

    def start(self, timeout_s: float = 20.0) -> BackgroundServer:
        """Start and wait until the server listens."""
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("catalog server did not start")
            time.sleep(0.01)  # waiting for uvicorn's started flag; it offers no event
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
