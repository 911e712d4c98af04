"""How long planning takes for the default case: in-process (build_plan + write_plan) and the whole
``cortex plan`` command including interpreter start-up.

    python bench/bench_plan.py [--runs 50]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine
from cortex.planner import build_plan, write_plan
from cortex.roster import load_cluster, load_roster

ROOT = Path(__file__).resolve().parents[1]
GOAL = "Run the full catalog toolset across the fleet"


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    fleet = ROOT / "examples" / "fleet"
    inproc = []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.runs):
            start = time.perf_counter()
            write_plan(build_plan(GOAL, fleet, load_roster(), load_cluster()), Path(out))
            inproc.append((time.perf_counter() - start) * 1000)
        cli = []
        for _ in range(max(5, args.runs // 10)):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "cortex", "plan", GOAL, "--targets", str(fleet), "--out", out],
                check=True,
                capture_output=True,
            )
            cli.append((time.perf_counter() - start) * 1000)
    print(
        f"build_plan + write_plan, default roster/cluster, examples/fleet, {args.runs} runs: "
        f"p50 {pct(inproc, 0.5):.1f} ms, p99 {pct(inproc, 0.99):.1f} ms"
    )
    print(
        f"`cortex plan` command (with interpreter start-up), {len(cli)} runs: "
        f"p50 {pct(cli, 0.5):.0f} ms, p99 {pct(cli, 0.99):.0f} ms"
    )


if __name__ == "__main__":
    main()
