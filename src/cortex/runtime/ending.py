"""Phase 5, and how a run ends when something breaks: every run ends with a report and an archive.

``close`` is the normal end: processes stopped, figures measured, report and archive written, the run's keys
deleted. ``close_in_error`` is the end of a run the coordinator could not carry on with (a bug, Redis gone past
the outage limit, processes that would not start): whatever can still be measured is, the rest is left out, and
the report says ``status: error`` with the cause. The run's keys stay in Redis for inspection (or a take-over).
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aredis

from cortex.coord import events
from cortex.coord.keys import RunKeys
from cortex.files import write_atomic
from cortex.models.messages import StreamEvent
from cortex.models.report import MasterSummary, Report, ReportPaths
from cortex.runtime import cache, finish, history, report, runindex, statefiles
from cortex.runtime.nodes import Nodes
from cortex.runtime.report import EndFigures
from cortex.runtime.runstate import RunState
from cortex.toolset.workdirs import reclaim_run

GIVE_UP_S = 10.0
"""How long the error path waits for Redis for each thing it reads: it must end, whatever state Redis is in."""


@dataclass
class Ending:
    """What the run's end needs: its state, Redis, its keys and its nodes."""

    state: RunState
    redis: aredis.Redis
    keys: RunKeys
    nodes: Nodes


async def close(
    end: Ending,
    results: dict[str, MasterSummary],
    status: str,
    *,
    prices: dict[str, dict[str, float]],
    model: str | None,
    on_ended: Callable[[str, Path], Awaitable[None]],
) -> tuple[Report, ReportPaths]:
    """Phase 5: stop processes, measure, report, archive, delete the run's keys. ``on_ended`` is told the status
    (``failed`` when a fix is not on its branch) and where the report goes, just before the run's events are read
    for the archive (its announcement is the last event)."""
    state = end.state
    await end.nodes.stop()
    state.running = {}
    await end.nodes.read_processes()
    figures = await finish.end_figures(end.redis, end.keys, state, prices)
    if figures.lost_fixes:
        status = "failed"  # a fix reported and not on its branch is lost work
    built = report.build(state, results, figures, status)
    if model:
        await finish.summarise(end.redis, end.keys, state, built, model, prices)
    run_dir, state_dir = _where(state)
    await on_ended(status, run_dir / "report.md")
    log = await events.read_events(end.redis, end.keys)
    paths = report.write(built, state.plan, run_dir, state_dir, log, _docs(state, status))
    state.report_paths = paths.model_dump()
    await _index(end, paths, status)
    # what the next plans learn from; a run that broke measured nothing a faithful run would (close_in_error)
    await history.record(end.redis, state_dir, history.from_report(built, state.plan))
    await cache.record(end.redis, state_dir, cache.entries_of(state.run_id, state.graph.records.values()))
    async for key in end.redis.scan_iter(match=end.keys.pattern(), count=500):
        await end.redis.delete(key)
    reclaim_run(state.state_dir, state.run_id, state.plan)
    return built, paths


async def _index(end: Ending, paths: ReportPaths, status: str) -> None:
    """The final state and the report into the run index, for every host (``runindex``)."""
    current = _docs(end.state, status)[statefiles.CURRENT]
    report_json = await asyncio.to_thread(Path(paths.report_json).read_text, encoding="utf-8")
    md = await asyncio.to_thread(Path(paths.report_md).read_text, encoding="utf-8")
    await runindex.publish_report(end.redis, end.state.run_id, current, report_json, md)


async def close_in_error(end: Ending, exc: BaseException) -> tuple[Report, ReportPaths]:
    """End a run that broke: stop its processes, write what is known, say why."""
    state = end.state
    cause = f"{type(exc).__name__}: {exc}"
    with contextlib.suppress(Exception):
        await asyncio.wait_for(end.nodes.stop(), 60)
    state.running = {}
    with contextlib.suppress(Exception):
        await asyncio.wait_for(end.nodes.read_processes(), GIVE_UP_S)
    try:
        figures = await asyncio.wait_for(finish.end_figures(end.redis, end.keys, state, {}), GIVE_UP_S)
    except Exception:  # Redis is part of what broke: the figures it holds are left out
        figures = EndFigures(tokens={}, nodes={})
    from cortex.toolset.aggregate import merge

    built = report.build(state, merge([r.to_report() for r in state.graph.records.values()]), figures, "error")
    built.error = cause
    log: list[StreamEvent] = []
    with contextlib.suppress(Exception):
        log = await asyncio.wait_for(events.read_events(end.redis, end.keys), GIVE_UP_S)
    run_dir, state_dir = _where(state)
    # the whole traceback, for whoever fixes the bug (the report keeps the one line)
    write_atomic(run_dir / "error.txt", "".join(traceback.format_exception(exc)))
    paths = report.write(built, state.plan, run_dir, state_dir, log, _docs(state, "error"))
    state.report_paths = paths.model_dump()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(_index(end, paths, "error"), GIVE_UP_S)
    with contextlib.suppress(Exception):
        reclaim_run(state.state_dir, state.run_id, state.plan)
    return built, paths


def _where(state: RunState) -> tuple[Path, Path]:
    return state.state_dir / "runs" / state.run_id, state.state_dir


def _docs(state: RunState, status: str) -> dict[str, dict[str, Any]]:
    return statefiles.snapshot(state, status, finished=True)
