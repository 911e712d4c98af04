"""Fixtures: a real Redis server per test session (the embedded one), flushed for each test that uses it.

Tests that need Redis are marked ``integration`` (those using the fixtures are marked here; modules that start
servers or ``cortex run`` themselves say so with ``pytestmark``). ``python3 dev.py test -m "not integration"`` is
the fast loop; to keep the mark honest, a test without it gets a Redis URL that leads nowhere and cannot start an
embedded server, so one that needs Redis after all fails instead of passing slowly.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aredis

from cortex.coord.server import EmbeddedRedis

# No test may reach a model API over the network: only endpoints on this machine (the suite's own
# OpenAI-compatible server) and the scripted model. Processes the tests start inherit the switch.
os.environ["CORTEX_MODEL_REQUESTS"] = "local-only"

ROOT = Path(__file__).resolve().parents[1]
FLEET = ROOT / "examples" / "fleet"


NO_REDIS = "unix:///nonexistent/unit-tests-have-no-redis.sock"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "redis_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
    # The longest tests first: pytest-xdist hands each process a contiguous half of this order and the idle one
    # steals from the end of the other's, so a long test collected last could run alone at the end of the suite.
    items.sort(key=lambda item: -_expected_seconds(item))


def _expected_seconds(item: pytest.Item) -> float:
    marker = item.get_closest_marker("slow")
    return float(marker.args[0]) if marker is not None else 0.0


@pytest.fixture(autouse=True)
def _no_redis_outside_integration(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("integration") is not None:
        return

    def refuse(self: EmbeddedRedis, timeout_s: float = 10.0) -> EmbeddedRedis:
        raise AssertionError("this test starts a Redis server: mark it integration")

    monkeypatch.setenv("CORTEX_REDIS_URL", NO_REDIS)
    monkeypatch.setenv("CORTEX_REDIS_CONNECT_ATTEMPTS", "1")
    monkeypatch.setattr(EmbeddedRedis, "start", refuse)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(appendonly=False) as server:
        yield server


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushall()
    yield client
    await client.aclose()
