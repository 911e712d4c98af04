"""Where an idle chain hop goes: a chain of no-op tasks (each depends on the one before) through the real engine,
4 workers, and for each hop (a task's end to the next one's start) its parts, from the run's own records and the
event times in its archive: the release (by the settle of the task before, or by the coordinator, then dispatched
by the master), the worker's claim event, and the start; and how many hops each way released.

    python bench/bench_hops.py [--chain 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path

from _common import bench_plan, machine, task
from cortex.coord.server import EmbeddedRedis
from cortex.runtime.coordinator import Coordinator

PARTS = ("end -> release", "release -> claim", "claim -> start")


def one(n: int) -> dict[str, list[float]]:
    chain = [task(f"c{i:05d}", deps=[f"c{i - 1:05d}"] if i else []) for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="cortex-bench-hops-") as state, EmbeddedRedis(appendonly=False) as server:
        result = asyncio.run(Coordinator(bench_plan(chain, 4), server.url, Path(state)).run())
        events = [json.loads(line) for line in (result.archive / "events.jsonl").read_text().splitlines()]
    by_settle, claimed = set(), {}
    for e in events:
        what = e.get("context", {}).get("event")
        listed = [t["task_id"] for t in e.get("context", {}).get("tasks", []) if "task_id" in t]
        if what == "dispatched" and not e["from"].endswith("-master"):  # sent by the worker whose settle released
            by_settle.update(listed)
        elif what == "assigned":
            claimed.update(dict.fromkeys(listed, e["ts"]))
    tasks = {t.id: t for t in result.report.tasks}
    ids = sorted(tasks)
    out: dict[str, list[float]] = {p: [] for p in (*PARTS, "hop", "by settle")}
    for a, b in zip(ids, ids[1:], strict=False):
        ta, tb = tasks[a], tasks[b]
        assert ta.finished_at and tb.started_at and tb.released_at
        out["hop"].append(tb.started_at - ta.finished_at)
        out["by settle"].append(float(b in by_settle))
        if b in claimed:
            out[PARTS[0]].append(tb.released_at - ta.finished_at)
            out[PARTS[1]].append(claimed[b] - tb.released_at)
            out[PARTS[2]].append(tb.started_at - claimed[b])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chain", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    for run in range(1, args.repeat + 1):
        parts = one(args.chain)
        hops = sorted(parts["hop"])
        p99 = hops[min(len(hops) - 1, int(0.99 * len(hops)))] * 1000
        shown = ", ".join(f"{p} {statistics.median(parts[p]) * 1000:.2f}" for p in PARTS if parts[p])
        settled = f"{int(sum(parts['by settle']))} of {len(hops)} released by a settle"
        hop = f"hop p50 {statistics.median(hops) * 1000:.2f} ms, p99 {p99:.2f} ms"
        print(f"run {run}: {hop} ({settled}); medians (ms): {shown}")


if __name__ == "__main__":
    main()
