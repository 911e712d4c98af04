"""Learned estimates: the demo goal run twice (or more) on the same fleet, each run planned from the ones before.

The first plan has no history (the roster's defaults); each later one learns from the runs before it. For every
run the script prints the plan's makespan estimate, the measured execution phase, the error
((estimate - measured) / measured) and the median absolute error of the tasks' estimates. Target (issue 15): the
second plan's makespan within +-20% of its run.

Everything goes through the command line a user runs: ``cortex run GOAL --targets FLEET --state-dir DIR --json``
over a working copy of examples/fleet (git repositories), with the embedded Redis. The first run also builds the
fleet's test environments (downloads, then cached under the state directory): the script runs a warm-up first,
without history, so that the two measured runs do the same work, as a user's second and third runs would.

    python bench/bench_estimates.py [--runs 2] [--no-warmup]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine
from cortex.toolset.fleet import working_copy

ROOT = Path(__file__).resolve().parent.parent
GOAL = "Run the full catalog toolset across the fleet"


def run(fleet: Path, state: Path, *, learn: bool = True) -> dict[str, object]:
    """One ``cortex run`` of the demo goal; its report's data."""
    # --no-cache: every run does the work (reusing recorded results would make the second run nearly free)
    cmd = [sys.executable, "-m", "cortex", "run", GOAL, "--targets", str(fleet), "--state-dir", str(state), "--json"]
    cmd.append("--no-cache")
    if not learn:
        cmd.append("--no-history")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode not in (0, 1):
        sys.exit(f"cortex run exited {done.returncode}:\n{done.stderr[-3000:]}")
    paths = json.loads(done.stdout)
    report: dict[str, object] = json.loads(Path(paths["report_json"]).read_text(encoding="utf-8"))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="measured runs (the first without history)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up run (cold caches in run 1)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="cortex-bench-estimates-") as tmp:
        base = Path(tmp)
        fleet = working_copy(ROOT / "examples" / "fleet", base / "fleet")
        state = base / "state"
        if not args.no_warmup:
            started = time.monotonic()
            run(fleet, state, learn=False)
            shutil.rmtree(state / "history")  # the warm-up builds caches; it is not history the runs learn from
            print(f"warm-up run (caches): {time.monotonic() - started:.1f} s")
        head = f"{'run':>3} {'learned from':>12} {'estimated':>10} {'measured':>9} {'error':>7}"
        print(f"{head} {'task median error':>18}")
        for i in range(1, args.runs + 1):
            r = run(fleet, state)
            makespan = r["makespan"]
            estimates = r["estimates"]
            assert isinstance(makespan, dict) and isinstance(estimates, dict)
            err = makespan["error"]
            med = estimates["task_median_error"]
            print(
                f"{i:>3} {estimates['learned_from_runs']:>9} run {makespan['estimated_s']:>9.2f}s"
                f" {makespan['measured_s']:>8.2f}s {err * 100 if err is not None else float('nan'):>+6.1f}%"
                f" {med * 100 if med is not None else float('nan'):>17.1f}%"
                f"   ({estimates['tasks_compared']} tasks: {estimates['by_basis']};"
                f" expected {estimates['expected']}, admitted {estimates['expected_admitted']})"
            )


if __name__ == "__main__":
    main()
