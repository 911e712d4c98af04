"""Tool slots: how many tool processes (tests, scanners, installers) run at once on a host, across every worker
process on it. Tools are CPU-bound; more of them than the host has CPUs only makes each slower and the host's
memory larger, so a tool waits for a slot first.

A slot is an exclusive ``flock`` on one of N files in a directory per host and user (``CORTEX_TOOL_SLOTS``; the
default N is the host's CPU count). The kernel releases a dead process's locks, so a worker killed mid-tool never
leaks its slot. Waiting polls every ``POLL_S`` (flock has no asynchronous wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from cortex.observability import logs

POLL_S = 0.02
SAY_AFTER_S = 30.0
"""A tool that waits this long for a slot says so in its worker's log (once per wait)."""


def slot_count() -> int:
    """Slots on this host: ``CORTEX_TOOL_SLOTS`` when set (a whole number from 1), else the CPU count."""
    raw = os.environ.get("CORTEX_TOOL_SLOTS", "")
    if raw.strip().isdigit() and int(raw) >= 1:
        return int(raw)
    return os.cpu_count() or 1


def _directory() -> Path:
    path = Path(tempfile.gettempdir()) / f"cortex-tool-slots-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _try_take(count: int) -> int | None:
    """A descriptor holding one free slot's lock, or None when all ``count`` are held."""
    directory = _directory()
    for i in range(count):
        fd = os.open(directory / f"slot-{i}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return fd
    return None


@contextlib.asynccontextmanager
async def tool_slot() -> AsyncIterator[None]:
    """Hold one of the host's tool slots for the duration of the block."""
    count = slot_count()
    fd = _try_take(count)
    waited_since, said = time.monotonic(), False
    while fd is None:
        await asyncio.sleep(POLL_S)
        fd = _try_take(count)
        if fd is None and not said and time.monotonic() - waited_since > SAY_AFTER_S:
            # every slot held this long: other runs' tools (the slots are the host's), or a stopped process
            said = True
            logs.event("tool-slot-wait", logging.WARNING, slots=count, waited_s=SAY_AFTER_S, held_in=str(_directory()))
    try:
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
