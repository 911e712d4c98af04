"""The catalog serves everyone: no GraphQL query, stream of changes or signal lets one client starve the others
or leave a server behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import psutil
import pytest

from cortex.catalog.api import create_app
from cortex.catalog.config import CatalogConfig
from cortex.coord.server import EmbeddedRedis

from .test_catalog_api import Catalog, body, make_catalog

pytestmark = [pytest.mark.timeout(120), pytest.mark.integration]

NESTED_LINEAGE = (
    '{lineage(id:"repo:a0",depth:5){nodes{lineage(depth:5){nodes{lineage(depth:5){nodes{lineage(depth:5)'
    "{nodes{id}}}}}}}}}"
)


@pytest.fixture
def small(redis_server: EmbeddedRedis) -> Iterator[Catalog]:
    server, cat = make_catalog(redis_server, max_event_streams=3)
    try:
        yield cat
    finally:
        server.stop()


def _graphql(c: httpx.Client, query: str) -> list[str]:
    answer = c.post("/graphql", json={"query": query})
    assert answer.status_code in (200, 400), answer.text
    return [e["message"] for e in answer.json().get("errors") or []]


def test_nested_lineage_is_refused_before_it_runs_and_others_are_served(small: Catalog) -> None:
    assert len(NESTED_LINEAGE) < 130  # the 127-byte query that used to take every Redis connection
    with httpx.Client(base_url=small.url, headers=small.writer, timeout=30) as c:
        for i in range(30):  # a dense graph: every asset is within a few hops of every other
            c.put(f"/assets/repo:a{i}", json=body(f"repo:a{i}"))
        for i in range(30):
            for j in (1, 2, 3):
                edge = {"upstream": f"repo:a{i}", "downstream": f"repo:a{(i + j) % 30}", "relation": "depends_on"}
                assert c.post("/lineage", json=edge).status_code in (200, 201)
        errors = _graphql(c, NESTED_LINEAGE)
        assert errors and "query cost is over the limit" in errors[0]
        assert c.get("/assets/repo:a1").status_code == 200
        # one level of lineage is still fine
        assert _graphql(c, '{lineage(id:"repo:a0",depth:2){nodes{id}}}') == []


def test_depth_aliases_and_tokens_are_limited(small: Catalog) -> None:
    deep = "{assets{items{" + "health{" * 1 + "status}}}}"
    too_deep = '{lineage(id:"x"){nodes{' + "lineage{nodes{" * 6 + "id" + "}}" * 7 + "}"
    aliases = "{" + " ".join(f"a{i}: stats {{ assets }}" for i in range(21)) + "}"
    tokens = "{ stats { " + "assets " * 2100 + "} }"
    with httpx.Client(base_url=small.url, headers=small.reader, timeout=30) as c:
        assert _graphql(c, deep) == []
        assert any("exceeds maximum operation depth" in e for e in _graphql(c, too_deep))
        assert any("aliases" in e for e in _graphql(c, aliases))
        assert any("token" in e.lower() for e in _graphql(c, tokens))


def test_event_streams_are_capped_and_rest_is_unaffected(small: Catalog) -> None:
    with ExitStack() as stack, httpx.Client(base_url=small.url, headers=small.reader, timeout=30) as c:
        for _ in range(3):
            stream = stack.enter_context(c.stream("GET", "/events"))
            assert stream.status_code == 200
        refused = c.get("/events")
        assert refused.status_code == 503 and "too many open streams" in refused.json()["detail"]
        assert c.get("/assets").status_code == 200  # REST has its own connections
        ready = c.get("/readyz").json()
        assert ready["event_streams"] == {"open": 3, "max": 3}
    with httpx.Client(base_url=small.url, headers=small.reader, timeout=30) as c:
        deadline = time.monotonic() + 20
        while True:  # the closed streams give their slots back once the server notices (within a tick)
            with c.stream("GET", "/events") as stream:
                if stream.status_code == 200:
                    break
            assert time.monotonic() < deadline, "closed streams never gave their slots back"
            time.sleep(0.2)


async def test_readiness_reports_a_saturated_pool(redis_server: EmbeddedRedis) -> None:
    app = create_app(CatalogConfig(redis_max_connections=2, redis_pool_timeout_s=0.5), redis_server.url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://catalog") as c:
            assert (await c.get("/readyz")).status_code == 200
            pool = app.state.redis.connection_pool
            held = [await pool.get_connection() for _ in range(2)]
            answer = await c.get("/readyz")
            assert answer.status_code == 503 and answer.json()["status"] == "saturated"
            assert answer.json()["redis_connections"] == {"in_use": 2, "max": 2}
            for conn in held:
                await pool.release(conn)
            assert (await c.get("/readyz")).status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[str], base: str) -> None:
    """Until the catalog at ``base`` answers /readyz (it must not exit meanwhile), at most 60 s."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "catalog did not start"
        time.sleep(0.1)  # waiting for the server process to listen


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stopped_by_a_signal_stops_its_embedded_redis(tmp_path: Path, sig: signal.Signals) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "CORTEX_REDIS_URL"}
    argv = [sys.executable, "-m", "cortex", "catalog", "serve", "--read-open", "--port", str(port)]
    proc = subprocess.Popen([*argv, "--state-dir", str(tmp_path)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        _wait_ready(proc, f"http://127.0.0.1:{port}")
        servers = [p for p in psutil.Process(proc.pid).children(recursive=True) if "redis" in p.name()]
        assert servers, "no embedded redis-server under cortex catalog serve"
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        _, stderr = proc.communicate()
        assert "Traceback" not in stderr
        gone, alive = psutil.wait_procs(servers, timeout=15)
        assert not alive, "the embedded redis-server outlived cortex catalog serve"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_with_workers_keeps_auth_and_counts_every_workers_requests(tmp_path: Path) -> None:
    from cortex.catalog.config import new_token

    port = _free_port()
    token, spec = new_token("reader", ["read"])
    config = tmp_path / "catalog.json"
    config.write_text(json.dumps({"tokens": [json.loads(spec.model_dump_json())]}))
    env = {k: v for k, v in os.environ.items() if k != "CORTEX_REDIS_URL"}
    argv = [sys.executable, "-m", "cortex", "catalog", "serve", "--config", str(config), "--port", str(port)]
    proc = subprocess.Popen(
        [*argv, "--workers", "2", "--state-dir", str(tmp_path)], env=env, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, base)
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if "redis" not in p.name()]
        assert len(workers) >= 2
        assert httpx.get(f"{base}/assets").status_code == 401  # reads need the token
        for _ in range(30):  # new connections each: the kernel spreads them over the workers
            assert httpx.get(f"{base}/assets?limit=1", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        metrics = httpx.get(f"{base}/metrics").text
        counted = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("cortex_catalog_requests_total{")
        }
        ok = [v for k, v in counted.items() if 'route="/assets"' in k and 'status="200"' in k]
        assert ok == [30.0], counted  # every worker's requests, whichever worker answered the scrape
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        _, stderr = proc.communicate()
        assert "Traceback" not in stderr
        gone, alive = psutil.wait_procs(workers, timeout=15)
        assert not alive, "a catalog worker outlived cortex catalog serve"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
