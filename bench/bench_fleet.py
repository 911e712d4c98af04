"""The demo goal over fleets of growing size: wall time, execution phase, tasks per second, time per repository,
and the memory of the whole process tree (PSS, sampled every second: coordinator, embedded Redis, node agents,
masters, workers and their tool subprocesses).

Fleets are copies of examples/fleet's six repositories under numbered names (git working copies). A warm-up run
over one copy of each first builds the test environments (downloads, then cached), as on a machine that ran
Cortex before. Every measured run uses ``--no-cache`` (nothing reused: the work itself is measured).

    python bench/bench_fleet.py [--sizes 4,50,200] [--keep DIR]

``--keep DIR``: copy each measured run's report.json to ``DIR/report-<size>.json`` (per-task durations, to see
where the time of a repository goes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from _common import machine
from cortex.toolset.fleet import working_copy

ROOT = Path(__file__).resolve().parent.parent
GOAL = "Run the full catalog toolset across the fleet"


def fleet_of(n: int, base: Path) -> Path:
    """``n`` repositories: examples/fleet's, copied round-robin under numbered names."""
    source = base / f"source-{n}"
    repos = sorted(p for p in (ROOT / "examples" / "fleet").iterdir() if p.is_dir())
    for i in range(n):
        repo = repos[i % len(repos)]
        shutil.copytree(repo, source / f"{repo.name}-{i:03d}", symlinks=True)
    return working_copy(source, base / f"fleet-{n}")


class TreeMemory:
    """Samples the PSS of a process and all its descendants every second, in a thread."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            pss = 0
            for p in procs:
                try:
                    pss += p.memory_full_info().pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            self.samples.append((pss / 2**20, len(procs)))

    def __enter__(self) -> TreeMemory:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def run(fleet: Path, state: Path) -> tuple[float, dict[str, object], TreeMemory]:
    cmd = [sys.executable, "-m", "cortex", "run", GOAL, "--targets", str(fleet), "--state-dir", str(state)]
    started = time.monotonic()
    proc = subprocess.Popen([*cmd, "--json", "--no-cache"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with TreeMemory(proc.pid) as memory:
        out, err = proc.communicate(timeout=14400)
    took = time.monotonic() - started
    if proc.returncode not in (0, 1):
        sys.exit(f"cortex run exited {proc.returncode}:\n{err[-3000:]}")
    report: dict[str, object] = json.loads(Path(json.loads(out)["report_json"]).read_text(encoding="utf-8"))
    return took, report, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="4,50,200")
    parser.add_argument("--keep", type=Path, help="a directory to copy each measured run's report.json into")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="cortex-bench-fleet-") as tmp:
        base = Path(tmp)
        state = base / "state"
        took, _, _ = run(fleet_of(6, base), state)
        print(f"warm-up (6 repositories, environments built): {took:.1f} s", flush=True)
        print(
            "repos  tasks  wall s  exec s  tasks/s  s/repo (wall)  PSS MiB peak  median  processes peak  status",
            flush=True,
        )
        for n in sizes:
            took, report, memory = run(fleet_of(n, base), state)
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                (args.keep / f"report-{n}.json").write_text(json.dumps(report), encoding="utf-8")
            tasks = report["tasks"]
            assert isinstance(tasks, list)
            phases = report["phases"]
            assert isinstance(phases, dict)
            execution = float(phases["measured_s"]["execution"])
            pss = [m for m, _ in memory.samples] or [0.0]
            procs = max((p for _, p in memory.samples), default=0)
            print(
                f"{n:>5}  {len(tasks):>5}  {took:>6.1f}  {execution:>6.1f}  {len(tasks) / execution:>7.2f}  "
                f"{took / n:>13.2f}  {max(pss):>12.0f}  {statistics.median(pss):>6.0f}  {procs:>15}  "
                f"{report['status']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
