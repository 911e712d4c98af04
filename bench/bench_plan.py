"""How long planning takes: the default case in-process (build_plan + write_plan) and the whole ``cortex plan``
command including interpreter start-up; and the demo goal over generated fleets of 12, 100 and 1,000
repositories with the default roster (with and without a model configured).

    python bench/bench_plan.py [--runs 50] [--sizes 12,100,1000]
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


def generated_fleet(root: Path, n: int) -> Path:
    """``n`` repositories with the demo fleet's traits (Python with tests, Kubernetes, workflows)."""
    for i in range(n):
        repo = root / f"svc-{i:04d}"
        (repo / "tests").mkdir(parents=True)
        (repo / "k8s").mkdir()
        (repo / ".github" / "workflows").mkdir(parents=True)
        (repo / "pyproject.toml").write_text('[project]\nname = "x"\n')
        (repo / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    return root


def fleet_sizes(sizes: list[int]) -> None:
    """Planning time of the demo goal over generated fleets, median of 3 (target discovery included)."""
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            fleet = generated_fleet(Path(tmp), n)
            for model in (False, True):
                times, plan = [], None
                for _ in range(3):
                    plan = None  # the previous plan is freed before the clock starts (0.1-0.15 s at 10,000 targets)
                    start = time.perf_counter()
                    plan = build_plan(GOAL, fleet, load_roster(), load_cluster(), model_configured=model)
                    times.append(time.perf_counter() - start)
                assert plan is not None
                left_out = sum("left out" in note for note in plan.notes)
                print(
                    f"{n:>5} repositories, {'a model' if model else 'no model'}: {len(plan.tasks):,} tasks, "
                    f"{left_out} left out to fit the budgets, planned in {statistics.median(times):.2f} s (median of 3)"
                )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--sizes", default="12,100,1000")
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
    fleet_sizes([int(n) for n in args.sizes.split(",") if n])


if __name__ == "__main__":
    main()
