"""The catalog API through a Redis crash (failure scenario 3): commands retry, and live subscribers are
subscribed again, so changes made after the restart still reach them."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis

from cortex.catalog.config import CatalogConfig, new_token
from cortex.catalog.server import BackgroundServer
from cortex.coord.keys import CatalogKeys
from cortex.coord.server import EmbeddedRedis

from .test_catalog_api import body

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_server_sent_events_survive_a_redis_crash_and_restart(tmp_path: Path) -> None:
    writer, w_spec = new_token("writer", ["read", "write"])
    config = CatalogConfig(tokens=[w_spec], prefix="cortex:catalog:resilience")
    auth = {"Authorization": f"Bearer {writer}"}
    received: list[str] = []
    subscribed = threading.Event()
    with EmbeddedRedis(tmp_path / "redis") as server, BackgroundServer(config, server.url) as api:

        def listen() -> None:
            with httpx.stream("GET", f"{api.url}/events", headers=auth, timeout=60) as stream:
                for line in stream.iter_lines():
                    subscribed.set()
                    if line.startswith("data: "):
                        received.append(json.loads(line[6:])["id"])
                        if received[-1] == "repo:after":
                            return

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        assert subscribed.wait(10)
        assert httpx.put(f"{api.url}/assets/repo:before", json=body("repo:before"), headers=auth).status_code == 201
        server.crash_and_restart()
        probe = redis.Redis(unix_socket_path=str(server.socket), decode_responses=True)
        channel = CatalogKeys(config.prefix).channel
        deadline = time.monotonic() + 30
        while probe.pubsub_numsub(channel)[0][1] == 0:  # until the API has subscribed again
            assert time.monotonic() < deadline, "the SSE subscriber never came back"
            time.sleep(0.05)  # polling the server for its subscriber count: Redis offers no event
        probe.close()
        reply = httpx.put(f"{api.url}/assets/repo:after", json=body("repo:after"), headers=auth, timeout=20)
        assert reply.status_code == 201
        thread.join(20)
        assert received == ["repo:before", "repo:after"]
        got = httpx.get(f"{api.url}/assets/repo:before", headers=auth, timeout=10)
        assert got.status_code == 200  # the write before the crash was on disk (append-only, fsync always)
