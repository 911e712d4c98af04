"""Incremental runs: the demo goal over a fleet of N repositories (copies of examples/fleet's under new names),
run three times with the same state directory: first with nothing recorded, then unchanged (every reusable result
reused), then with one repository changed (its tasks, and what depends on them, run again). Target (issue 15):
the second run under a tenth of the first.

Everything goes through ``cortex run GOAL --targets FLEET --state-dir DIR --json`` with the embedded Redis. A
warm-up run over the fleet first fills the caches of test environments (downloads), without recording results
(``--no-cache``), so the first measured run does the work a user's run does on a warm machine.

    python bench/bench_incremental.py [--repos 40] [--no-warmup]
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


def fleet_of(n: int, base: Path) -> Path:
    """``n`` repositories: examples/fleet's, copied round-robin under numbered names, as git working copies."""
    source = base / "source"
    repos = sorted(p for p in (ROOT / "examples" / "fleet").iterdir() if p.is_dir())
    for i in range(n):
        repo = repos[i % len(repos)]
        shutil.copytree(repo, source / f"{repo.name}-{i:03d}", symlinks=True)
    return working_copy(source, base / "fleet")


def run(fleet: Path, state: Path, *extra: str) -> tuple[float, dict[str, object]]:
    """One ``cortex run``: wall seconds and its report."""
    cmd = [sys.executable, "-m", "cortex", "run", GOAL, "--targets", str(fleet), "--state-dir", str(state), "--json"]
    started = time.monotonic()
    done = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=7200, check=False)
    took = time.monotonic() - started
    if done.returncode not in (0, 1):
        sys.exit(f"cortex run exited {done.returncode}:\n{done.stderr[-3000:]}")
    report: dict[str, object] = json.loads(Path(json.loads(done.stdout)["report_json"]).read_text(encoding="utf-8"))
    return took, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=40)
    parser.add_argument("--no-warmup", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="cortex-bench-incremental-") as tmp:
        base = Path(tmp)
        fleet = fleet_of(args.repos, base)
        state = base / "state"
        if not args.no_warmup:
            took, _ = run(fleet, state, "--no-cache")
            shutil.rmtree(state / "cache", ignore_errors=True)
            print(f"warm-up run (environment caches, nothing recorded): {took:.1f} s", flush=True)
        first_s, first = run(fleet, state)
        print(f"first run:  {first_s:7.1f} s wall, {len(first['tasks'])} tasks, reused {len(first['reused'])}")  # type: ignore[arg-type]
        first_tasks = first["tasks"]
        assert isinstance(first_tasks, list)
        # reusable: tasks on a repository that ran and succeeded (not skipped: those needing a model, with none set)
        reusable = {t["id"] for t in first_tasks if t["target"] is not None and t["state"] == "succeeded"}
        second_s, second = run(fleet, state)
        reused = set(second["reused"])  # type: ignore[arg-type]
        print(
            f"second run (unchanged): {second_s:7.1f} s wall, reused {len(reused & reusable)} of the {len(reusable)} "
            f"reusable tasks ({len(reusable - reused)} not); ratio to the first {second_s / first_s:.3f} (target < 0.1)"
        )
        changed = sorted(p for p in fleet.iterdir() if p.is_dir())[0]
        (changed / "CHANGED.md").write_text("one repository changed\n", encoding="utf-8")
        third_s, third = run(fleet, state)
        ran = [
            t["id"]
            for t in third["tasks"]  # type: ignore[union-attr]
            if t["reused_from"] is None and t["target"] is not None and t["state"] != "skipped"
        ]
        other = [t for t in ran if t.split(":")[1] != changed.name]
        print(
            f"third run ({changed.name} changed): {third_s:7.1f} s wall, {len(ran)} tasks ran "
            f"({len(other)} of them on other repositories), reused {len(third['reused'])}"  # type: ignore[arg-type]
        )


if __name__ == "__main__":
    main()
