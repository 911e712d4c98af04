"""The log file: lines below WARNING written under an event loop are flushed together within ``FLUSH_AFTER_S``; a
warning, a line outside a loop and the handler's close write at once."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from cortex.observability import logs

pytestmark = pytest.mark.timeout(30)


def _events(path: Path) -> list[str]:
    return [json.loads(line)["event"] for line in path.read_text().splitlines()]


def test_info_lines_wait_for_the_timer_warnings_do_not_and_closing_writes_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    handler = logs.attach(path, "p")
    try:

        async def scenario() -> None:
            logs.event("one")
            logs.event("two")
            assert _events(path) == []  # held: one write for both
            await asyncio.sleep(logs.FLUSH_AFTER_S * 3)
            assert _events(path) == ["one", "two"]
            logs.event("three")
            logs.event("bad", logging.WARNING)
            assert _events(path) == ["one", "two", "three", "bad"]  # a warning flushes what waited with it
            logs.event("last")  # the loop ends before its timer: closing the handler writes it

        asyncio.run(scenario())
        assert _events(path) == ["one", "two", "three", "bad"]
        logs.event("outside")  # no loop: written at once, with what waited
        assert _events(path) == ["one", "two", "three", "bad", "last", "outside"]

        async def again() -> None:  # a new loop after one that dropped a timer: held lines still get written
            logs.event("later")
            await asyncio.sleep(logs.FLUSH_AFTER_S * 3)

        asyncio.run(again())
        assert _events(path)[-1] == "later"
        asyncio.run(scenario_tail())
    finally:
        logs.detach(handler)
    assert _events(path)[-1] == "at-close"


async def scenario_tail() -> None:
    logs.event("at-close")
