"""The coordinator's work per task as runs grow: N independent no-op tasks through the real engine (4 workers),
and the CPU time of the coordinator's own thread during phase 3, divided by N. Work per event that does not
depend on the run's size gives the same figure at every N (issue 15); a scan of every record per turn or per
refresh makes it grow with N. ``--chain 10``: the tasks in chains of ten (each waits for the one before), so the
coordinator's first releases arm every later task for release by a settle (``runtime/entries.py``) and the
workers' settles release nine tasks in ten.

    python bench/bench_coordinator.py [--sizes 1000,10000,30000] [--chain 1]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from _common import bench_plan, machine, task
from cortex.coord.server import EmbeddedRedis
from cortex.runtime.coordinator import Coordinator


class Timed(Coordinator):
    """A coordinator that measures its own thread's CPU time in phase 3."""

    cpu_s = 0.0

    async def _execute(self) -> None:
        started = time.thread_time()
        try:
            await super()._execute()
        finally:
            self.cpu_s = time.thread_time() - started


def one(n: int, chain: int = 1) -> tuple[float, float]:
    """Coordinator CPU seconds in phase 3, and the phase's measured seconds, for ``n`` no-op tasks in chains of
    ``chain`` (1: independent)."""
    ids = [f"t{i:06d}" for i in range(n)]
    plan = bench_plan([task(t, deps=[ids[i - 1]] if i % chain else []) for i, t in enumerate(ids)], 4)
    with tempfile.TemporaryDirectory(prefix="cortex-bench-coord-") as state, EmbeddedRedis(appendonly=False) as server:
        coord = Timed(plan, server.url, Path(state))
        result = asyncio.run(coord.run())
    assert all(t.state.value == "succeeded" for t in result.report.tasks)
    return coord.cpu_s, float(result.report.phases.measured_s["execution"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,30000")
    parser.add_argument("--chain", type=int, default=1, help="tasks per chain (1: independent tasks)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"tasks in chains of {args.chain}" if args.chain > 1 else "independent tasks")
    print("tasks   coordinator CPU in phase 3   per task   phase 3    tasks/s")
    for n in (int(x) for x in args.sizes.split(",")):
        cpu, took = one(n, max(1, args.chain))
        print(f"{n:>6}   {cpu:>22.2f} s   {cpu / n * 1e6:>5.0f} us   {took:>6.2f} s   {n / took:>7.0f}")


if __name__ == "__main__":
    main()
