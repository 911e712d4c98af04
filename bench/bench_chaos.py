"""Reliability figures for RELIABILITY.md: one larger chaos run per failure scenario, through the same harness as
``cortex chaos`` and the tests (real processes, a real Redis, faults by signal).

Per scenario it prints the tasks run, the faults injected, tasks lost, effects duplicated, and the time to recover
from each fault (p50 and max). Recovery means: the killed process is back (1, 2), the stalled worker's entries were
requeued (2), results flow again after the Redis restart (3), the failed node's workers run elsewhere (4), every
queued catalog write was replayed (5), a new coordinator holds the lease (7).

    python bench/bench_chaos.py [--tasks 600] [--seconds 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from _common import machine
from cortex.chaos.harness import ChaosResult, run_chaos
from cortex.chaos.plan import chaos_plan

SCENARIOS: list[tuple[str, list[str], dict[str, object], int | None]] = [
    ("1 master crash", ["kill-master"], {}, None),
    ("2 worker crash / stall", ["kill-worker", "pause-worker"], {}, None),
    ("3 Redis crash + restart", ["restart-redis"], {}, None),
    ("4 node failure", ["kill-node"], {}, 2),  # three worker nodes: the last one cannot fail over
    ("5 catalog API down", ["stop-catalog"], {"kind": "chaos.catalog", "params": {"read": "chaos:chaos-0000"}}, None),
    ("7 coordinator paused", ["pause-coordinator"], {}, 2),
    ("8 contended file + kills", ["kill-worker"], {"kind": "chaos.contend", "params": {"hold_s": 0.02}}, None),
]


def pct(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.2f}"


def scenario(
    name: str, faults: list[str], plan_args: dict[str, object], cap: int | None, args: argparse.Namespace
) -> None:
    plan = chaos_plan(args.tasks, seconds=args.seconds, **plan_args)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix="cortex-chaos-") as d:
        r: ChaosResult = asyncio.run(run_chaos(plan, Path(d), faults, rate_per_min=args.rate, max_faults=cap, seed=7))
    recovered = [f.recovered_s for f in r.faults if f.recovered_s is not None]
    dup = str(r.duplicated) if r.counted else "n/a"
    print(
        f"{name:<26} {r.expected:>5} {r.completed:>5} {len(r.faults):>6} {r.lost:>4} {dup:>4} {r.reassignments:>6} "
        f"{pct(recovered, 0.5):>7} {pct(recovered, 1.0):>7} {len(r.faults) - len(recovered):>5} {r.duration_s:>7.1f}",
        flush=True,
    )


def budget(args: argparse.Namespace) -> None:
    """Scenario 6: 6 workers funded with 2,000 tokens each; every task is optional, planned at 50, spends 100."""
    plan = chaos_plan(
        args.tasks,
        kind="chaos.spend",
        seconds=0.05,
        params={"tokens": 100},
        budget=2000,
        estimate_tokens=min(50, 12000 // args.tasks),
        optional_every=1,
    )
    with tempfile.TemporaryDirectory(prefix="cortex-chaos-") as d:
        r = asyncio.run(run_chaos(plan, Path(d), ["kill-worker"], rate_per_min=args.rate * 4, seed=7))
        run = json.loads(Path(r.report).read_text())["tokens"]["run"]
    print(
        f"6 budget exhaustion: {r.expected} optional tasks wanting {100 * r.expected:,} tokens "
        f"of {run['allocated']:,}; "
        f"{r.completed} ran, {r.skipped} skipped; used {run['used']:,}, reserved at end {run['reserved']}, "
        f"overrun {max(0, run['used'] - run['allocated'])}; {len(r.faults)} worker kill(s); lost {r.lost}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=0.3)
    parser.add_argument("--rate", type=float, default=10.0, help="faults per minute")
    parser.add_argument("--only", default="", help="comma-separated scenario numbers (default: all eight)")
    args = parser.parse_args()
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    print(f"machine: {machine()}")
    print(f"{args.tasks} tasks of {args.seconds} s per scenario on 6 workers over 3 nodes, faults at {args.rate}/min")
    print(
        f"{'scenario':<26} {'tasks':>5} {'done':>5} {'faults':>6} {'lost':>4} {'dup':>4} {'reasg':>6} "
        f"{'rec p50':>7} {'rec max':>7} {'unrec':>5} {'run s':>7}"
    )
    for name, faults, plan_args, cap in SCENARIOS:
        if not only or name.split()[0] in only:
            scenario(name, faults, plan_args, cap, args)
    if not only or "6" in only:
        budget(args)


if __name__ == "__main__":
    main()
