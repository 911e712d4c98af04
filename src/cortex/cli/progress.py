"""The live view of a run (``cortex run``'s display and ``cortex status``): phase and elapsed time against the
plan's estimate with an ETA, tasks per master by state, the running tasks with their worker and time, the latest
failures with their reason, tokens, and workers alive. It fits 80 columns: every column stays, long text is cut
with an ellipsis, never wrapped."""

from __future__ import annotations

import time
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

STATES = ("pending", "released", "running", "retrying", "succeeded", "failed", "skipped")
HEADERS = ("pend", "rel", "run", "retry", "ok", "fail", "skip")
LEGEND = "pend pending, rel released, run running, retry waiting to retry, ok succeeded, fail failed, skip skipped"
MAX_RUNNING = 6
MAX_FAILURES = 3


def _s(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"


def _clock(state: dict[str, Any], now: float) -> str:
    """Elapsed time, the plan's estimate and an ETA (from the tasks done so far; both estimates, and said so)."""
    end = state.get("finished_at") or now
    elapsed = end - state["started_at"]
    line = f"elapsed {_s(elapsed)}"
    estimated = float(state.get("estimated_s") or 0)
    if estimated:
        line += f" of {_s(estimated)} planned"
    counts = [c for c in state.get("tasks", {}).values()]
    total = sum(sum(c.values()) for c in counts)
    done = sum(c.get("succeeded", 0) + c.get("failed", 0) + c.get("skipped", 0) for c in counts)
    if state.get("finished_at") is None and state.get("phase") == 3 and 0 < done < total:
        started = state.get("phase_times", {}).get("execution") or state["started_at"]
        rate = done / max(1e-6, now - float(started))
        line += f", ETA {_s((total - done) / rate)} at the pace so far (estimate)"
    return line


def progress_view(state: dict[str, Any], *, now: float | None = None) -> RenderableType:
    """The run as it stands, from its state document (``current-execution.json`` or the run index)."""
    now = time.time() if now is None else now
    title = Text(f"run {state['run_id']}: phase {state['phase']} ({state['phase_name']}), {state['status']}")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), show_edge=False)
    table.add_column("master", no_wrap=True, overflow="ellipsis", max_width=14)
    for h in HEADERS:
        table.add_column(h, justify="right", no_wrap=True, min_width=len(h))
    for master, counts in sorted(state["tasks"].items()):
        table.add_row(master, *(str(counts.get(c, 0)) for c in STATES))
    parts: list[RenderableType] = [title, Text(_clock(state, now), style="dim"), table, Text(LEGEND, style="dim")]
    running = state.get("running_tasks", [])
    if running:
        parts.append(Text(f"running ({len(running)}{'+' if len(running) >= 20 else ''}):", style="bold"))
        for r in running[:MAX_RUNNING]:
            took = f"{_s(now - r['since'])}" if r.get("since") else "?"
            parts.append(Text(f"  {r['task']}  on {r['worker']}  {took}", no_wrap=True, overflow="ellipsis"))
    failures = state.get("failures", [])
    if failures:
        parts.append(Text("latest failures:", style="bold red"))
        for f in failures[:MAX_FAILURES]:
            reason = " ".join(str(f["error"]).split())
            parts.append(Text(f"  {f['task']}: {reason}", no_wrap=True, overflow="ellipsis"))
    tokens = state.get("tokens", {})
    run = tokens.get("run")
    if run:
        parts.append(Text(f"tokens {run['used']:,} used of {run['allocated']:,}, {run['reserved']:,} reserved"))
    alive = "  ".join(f"{node} {n}" for node, n in state.get("workers_alive", {}).items())
    retries = f"retries {state['retries']}  reassignments {state['reassignments']}  handoffs {state['handoffs']}"
    parts.append(Text(retries, no_wrap=True, overflow="ellipsis"))
    parts.append(Text(f"workers alive: {alive or 'none yet'}"))  # wraps rather than lose a node
    return Group(*parts)
