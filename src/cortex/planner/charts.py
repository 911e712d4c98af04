"""Pictures for the documents, as Mermaid text a Markdown viewer draws: the schedule as a ``gantt``, a timeline whose
rows follow the plan's length, and ``xychart-beta`` bars and lines. The plan documents and the run report both use
them; every figure drawn is the plan's estimate or the run's measurement, and each chart's title says which."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from cortex.models import Plan

MAX_BARS = 80
"""A Gantt with more bars than this is unreadable: the longest are drawn and the chart says how many were left out."""
STEPS = (5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)


def label(text: str) -> str:
    """``text`` as Mermaid accepts it in a bar or axis label (no ``:``, ``,``, ``#``, ``;`` or quotes)."""
    return re.sub(r"[^A-Za-z0-9 ._/()+-]+", " ", text).strip()[:70] or "-"


def title(text: str) -> str:
    """``text`` as a chart title (commas allowed)."""
    return re.sub(r"[^A-Za-z0-9 ._/(),+-]+", " ", text).strip()[:150] or "-"


@dataclass(frozen=True)
class Bar:
    """One bar of a Gantt: a label, start and end in seconds, and an optional Mermaid tag (``done``, ``crit``)."""

    text: str
    start_s: float
    end_s: float
    tag: str = ""


def gantt(heading: str, sections: dict[str, list[Bar]]) -> str:
    """A Mermaid ``gantt`` with one section per key; at most ``MAX_BARS`` bars (the longest), the rest counted in
    the title. Times are seconds from 0 (shown as minutes:seconds)."""
    bars = [(s, b) for s, bs in sections.items() for b in bs]
    kept = set(sorted(range(len(bars)), key=lambda i: bars[i][1].start_s - bars[i][1].end_s)[:MAX_BARS])
    left_out = len(bars) - len(kept)
    lines = ["gantt", f"    title {title(heading)}" + (f" ({left_out} shorter bars not drawn)" if left_out else "")]
    lines += ["    dateFormat X", "    axisFormat %M:%S"]
    current = None
    for i, (section, bar) in enumerate(bars):
        if i not in kept:
            continue
        if section != current:
            lines.append(f"    section {label(section)}")
            current = section
        start = max(0, round(bar.start_s))
        end = max(start + 1, round(bar.end_s))
        tag = f"{bar.tag}, " if bar.tag else ""
        lines.append(f"    {label(bar.text)} :{tag}b{i}, {start}, {end}")
    return "\n".join(lines) + "\n"


def schedule_gantt(plan: Plan) -> str:
    """Phase 3 as the list scheduler laid it out, one section per worker, the critical path marked."""
    critical = set(plan.schedule.critical_path)
    sections: dict[str, list[Bar]] = {}
    for e in sorted(plan.schedule.entries, key=lambda e: (e.worker_id, e.start_s)):
        tag = "crit" if e.task_id in critical else ""
        text = f"{e.task_id} (expected)" if e.expected else e.task_id
        sections.setdefault(e.worker_id, []).append(Bar(text, e.start_s, e.end_s, tag))
    return gantt("Phase 3 schedule (estimated, critical path in red)", sections)


def step_for(total_s: float, rows: int = 15) -> int:
    """A round row width (seconds) that cuts ``total_s`` into about ``rows`` rows."""
    want = max(1.0, total_s / rows)
    return next((s for s in STEPS if s >= want), STEPS[-1])


@dataclass(frozen=True)
class TimelineRow:
    """What the schedule expects in one window of the run."""

    start_s: float
    end_s: float
    phase: str
    starting: list[str]
    running: int


def timeline_rows(plan: Plan, rows: int = 15) -> tuple[int, list[TimelineRow]]:
    """The run (every phase) cut into windows of a round width chosen so there are about ``rows`` of them."""
    phases = plan.schedule.phases
    total = phases[-1].end_s if phases else plan.schedule.makespan_s
    step = step_for(total, rows)
    execution = next((p for p in phases if p.index == 3), None)
    offset = execution.start_s if execution else 0.0
    out = []
    for i in range(max(1, math.ceil(total / step))):
        lo, hi = i * step, (i + 1) * step
        phase = next((p.name for p in phases if p.start_s <= lo < p.end_s), phases[-1].name if phases else "")
        entries = plan.schedule.entries
        starting = [e.task_id for e in entries if lo <= e.start_s + offset < hi]
        running = sum(1 for e in entries if e.start_s + offset < hi and e.end_s + offset > lo)
        out.append(TimelineRow(lo, hi, phase, starting, running))
    return step, out


def xychart(
    heading: str, x: list[str], y_title: str, *, bars: list[float] | None = None, line: list[float] | None = None
) -> str:
    """A Mermaid ``xychart-beta`` over the categories ``x`` with a bar series, a line series, or both."""
    names = ", ".join(f'"{label(v)}"' for v in x)
    lines = ["xychart-beta", f'    title "{title(heading)}"', f"    x-axis [{names}]", f'    y-axis "{label(y_title)}"']
    if bars is not None:
        lines.append(f"    bar [{', '.join(f'{v:.2f}' for v in bars)}]")
    if line is not None:
        lines.append(f"    line [{', '.join(f'{v:.2f}' for v in line)}]")
    return "\n".join(lines) + "\n"
