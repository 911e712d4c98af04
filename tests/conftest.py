"""Fixtures: a real Redis server per test session (the embedded one), flushed for each test that uses it."""

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
