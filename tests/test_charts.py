"""The documents' pictures: the plan's schedule as a Gantt with one bar per scheduled task (the longest when there
are too many, saying how many were left out), and a timeline whose rows follow the plan's length."""

from __future__ import annotations

import re

from cortex.chaos.plan import chaos_plan
from cortex.planner import build_plan
from cortex.planner.charts import MAX_BARS, Bar, gantt, schedule_gantt, timeline_rows, xychart
from cortex.planner.render import render_documents
from cortex.roster import load_cluster, load_roster

from .conftest import FLEET

BAR = re.compile(r"^    [^:]+ :(?:(done|active|crit), )?b\d+, \d+, \d+$")


def test_the_schedule_gantt_has_one_bar_per_scheduled_task() -> None:
    plan = build_plan("Run the full catalog toolset across the fleet", FLEET, load_roster(), load_cluster())
    text = schedule_gantt(plan)
    bars = [line for line in text.splitlines() if BAR.match(line)]
    assert len(bars) == len(plan.schedule.entries) <= MAX_BARS
    assert sum(":crit," in b for b in bars) == len(
        [t for t in plan.schedule.critical_path if t in {e.task_id for e in plan.schedule.entries}]
    )
    sections = {line.split("section ", 1)[1] for line in text.splitlines() if "section " in line}
    assert sections == {e.worker_id for e in plan.schedule.entries}
    doc = render_documents(plan)["ORCHESTRATION-PLAN.md"]
    assert "```mermaid\ngantt" in doc


def test_a_gantt_with_too_many_bars_keeps_the_longest_and_says_so() -> None:
    bars = {"w": [Bar(f"t{i}", 0, i + 1) for i in range(MAX_BARS + 20)]}
    text = gantt("many", bars)
    drawn = [line for line in text.splitlines() if BAR.match(line)]
    assert len(drawn) == MAX_BARS and "(20 shorter bars not drawn)" in text
    assert "    t0 :" not in text and f"    t{MAX_BARS + 19} :" in text  # the shortest went
    assert "t1:x" not in gantt("x", {"w": [Bar("t1:x", 0, 1)]})  # a colon would end the label early


def test_timeline_rows_follow_the_plan_s_length() -> None:
    short = chaos_plan(20, seconds=0.5)
    long = chaos_plan(600, seconds=20)
    (s_step, s_rows), (l_step, l_rows) = timeline_rows(short), timeline_rows(long)
    assert s_step < l_step
    assert 1 <= len(s_rows) <= 20 and 8 <= len(l_rows) <= 20
    assert sum(len(r.starting) for r in l_rows) == len(long.schedule.entries)  # every task starts in one row


def test_xychart_lists_its_categories_and_series() -> None:
    text = xychart("CPU, by node", ["k3s-worker01", "a:b"], "CPU seconds", bars=[1.5, 2])
    assert 'x-axis ["k3s-worker01", "a b"]' in text and "bar [1.50, 2.00]" in text and 'title "CPU, by node"' in text
