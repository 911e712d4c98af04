"""Tool slots: no more tools at once on a host than it has slots, across processes; a killed holder frees its
slot."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cortex.toolset import slots
from cortex.toolset.builtin import run_argv
from cortex.toolset.slots import _try_take, slot_count

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _own_slots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slots of this test's own: where a process started with TMPDIR=tmp_path keeps them too."""
    directory = tmp_path / f"cortex-tool-slots-{os.getuid()}"
    directory.mkdir()
    monkeypatch.setattr(slots, "_directory", lambda: directory)
    monkeypatch.setenv("TMPDIR", str(tmp_path))


# Each run claims a marker file exclusively, holds it a moment, and gives it back: two at once collide.
EXCLUSIVE = textwrap.dedent(
    """
    import os, sys, time
    marker = sys.argv[1]
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        print("overlap"); sys.exit(3)
    time.sleep(0.2)
    os.close(fd); os.unlink(marker)
    """
)


async def _three_at_once(tmp_path: Path) -> list[int]:
    marker = str(tmp_path / "running")
    runs = [run_argv([sys.executable, "-c", EXCLUSIVE, marker], str(tmp_path), 30) for _ in range(3)]
    return [code for code, _, _ in await asyncio.gather(*runs)]


async def test_one_slot_runs_tools_one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORTEX_TOOL_SLOTS", "1")
    assert await _three_at_once(tmp_path) == [0, 0, 0]


async def test_without_the_limit_the_same_tools_collide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: three slots let the same three runs overlap."""
    monkeypatch.setenv("CORTEX_TOOL_SLOTS", "3")
    assert 3 in await _three_at_once(tmp_path)


def test_a_killed_holder_frees_its_slot_and_the_count_follows_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORTEX_TOOL_SLOTS", "1")
    assert slot_count() == 1
    hold = "from cortex.toolset.slots import _try_take as t; import time; t(1); print('held', flush=True); " + (
        "time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert _try_take(1) is None  # held by the other process
        holder.kill()
        holder.wait(timeout=10)
        assert _try_take(1) is not None  # the kernel released the dead holder's lock
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    monkeypatch.setenv("CORTEX_TOOL_SLOTS", "zero")
    assert slot_count() >= 1  # not a number: the CPU count


async def test_a_long_wait_for_a_slot_is_logged_once_and_the_tool_runs_when_one_frees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every slot held (another run's tools, a stopped process): the wait says so, instead of looking like a hang."""
    import json

    from cortex.observability import logs

    monkeypatch.setenv("CORTEX_TOOL_SLOTS", "1")
    monkeypatch.setattr(slots, "SAY_AFTER_S", 0.2)
    held = _try_take(1)
    assert held is not None
    log = logs.attach(tmp_path / "w.jsonl", "w")
    try:
        tool = asyncio.ensure_future(run_argv([sys.executable, "-c", "print('ran')"], str(tmp_path), 30))
        await asyncio.sleep(0.6)
        assert not tool.done()  # still waiting for the slot
        os.close(held)
        code, out, _ = await tool
    finally:
        logs.detach(log)
    assert (code, out.strip()) == (0, "ran")
    lines = [json.loads(line) for line in (tmp_path / "w.jsonl").read_text().splitlines()]
    waits = [line for line in lines if line["event"] == "tool-slot-wait"]
    assert len(waits) == 1 and waits[0]["level"] == "warning" and waits[0]["slots"] == 1
