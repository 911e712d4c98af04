"""The coordinator's work per task as runs grow: N independent no-op tasks through the real engine (4 workers),
and the CPU time of the coordinator's own thread during phase 3, divided by N. Work per event that does not
depend on the run's size gives the same figure at every N (issue 15); a scan of every record per turn or per
refresh makes it grow with N.

    python bench/bench_coordinator.py [--sizes 1000,10000,30000]
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


def one(n: int) -> tuple[float, float]:
    """Coordinator CPU seconds in phase 3, and the phase's measured seconds, for ``n`` no-op tasks."""
    plan = bench_plan([task(f"t{i:06d}") for i in range(n)], 4)
    with tempfile.TemporaryDirectory(prefix="cortex-bench-coord-") as state, EmbeddedRedis(appendonly=False) as server:
        coord = Timed(plan, server.url, Path(state))
        result = asyncio.run(coord.run())
    assert all(t.state.value == "succeeded" for t in result.report.tasks)
    return coord.cpu_s, float(result.report.phases.measured_s["execution"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,30000")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print("tasks   coordinator CPU in phase 3   per task   phase 3    tasks/s")
    for n in (int(x) for x in args.sizes.split(",")):
        cpu, took = one(n)
        print(f"{n:>6}   {cpu:>22.2f} s   {cpu / n * 1e6:>5.0f} us   {took:>6.2f} s   {n / took:>7.0f}")


if __name__ == "__main__":
    main()
