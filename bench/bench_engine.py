"""Engine benchmarks: no-op task throughput and dispatch latency for 1, 2, 4 and 8 workers, and the makespan of
a synthetic DAG of sleep tasks over its lower bound. Everything runs through the real engine: embedded Redis,
node supervisors, master and worker processes.

Throughput: N independent no-op tasks, divided by the measured execution phase: first with the server as
``cortex run`` starts it (append-only, fsync on every write), then, like the other figures, without the AOF.
Dispatch latency: a chain of no-op tasks (each depends on the one before), so every release happens on an idle
system and the figure is release-to-start through coordinator, master stream and worker queue, not time spent
waiting behind a queue.

    python bench/bench_engine.py [--tasks 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import statistics

from _common import bench_plan, machine, run_plan, task


def throughput(workers: int, n: int, appendonly: bool = False) -> float:
    report = run_plan(bench_plan([task(f"t{i:06d}") for i in range(n)], workers), appendonly=appendonly)
    assert all(t["state"] == "succeeded" for t in report["tasks"])
    return float(n / report["phases"]["measured_s"]["execution"])


def latency(workers: int, n: int = 300) -> tuple[float, float]:
    chain = [task(f"c{i:05d}", deps=[f"c{i - 1:05d}"] if i else []) for i in range(n)]
    report = run_plan(bench_plan(chain, workers))
    lat = report["dispatch_latency_s"]
    assert lat["samples"] == n
    return lat["p50"] * 1000, lat["p99"] * 1000


def sleep_dag(seed: int = 7, layers: int = 5, width: int = 8) -> list:  # type: ignore[type-arg]
    """A layered DAG: each task sleeps 0.2-1.0 s and depends on 1-3 tasks of the layer before."""
    rng = random.Random(seed)
    tasks, prev = [], []
    for layer in range(layers):
        current = []
        for i in range(width):
            seconds = round(rng.uniform(0.2, 1.0), 2)
            deps = sorted(rng.sample(prev, k=min(len(prev), rng.randint(1, 3)))) if prev else []
            tid = f"l{layer}-{i}"
            tasks.append(task(tid, "builtin.sleep", seconds, deps, {"seconds": seconds}))
            current.append(tid)
        prev = current
    return tasks


def makespan(workers: int) -> dict[str, float]:
    plan = bench_plan(sleep_dag(), workers)
    report = run_plan(plan)
    measured = report["phases"]["measured_s"]["execution"]
    return {
        "measured_s": measured,
        "lower_bound_s": plan.schedule.lower_bound_s,
        "list_schedule_s": plan.schedule.makespan_s,
        "ratio": measured / plan.schedule.lower_bound_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--aof-only", action="store_true", help="only the throughput with an fsync-always AOF")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(
        f"no-op throughput, 4 workers, Redis with appendonly + appendfsync always (as `cortex run` starts it), "
        f"median of {args.repeat}: "
        f"{statistics.median(throughput(4, args.tasks, appendonly=True) for _ in range(args.repeat)):.0f} tasks/s"
    )
    if args.aof_only:
        return
    print(
        f"no-op throughput ({args.tasks} independent tasks) and dispatch latency (chain of 300), "
        f"median of {args.repeat} runs",
        flush=True,
    )
    print("workers  tasks/s  dispatch p50 ms  dispatch p99 ms")
    for workers in (1, 2, 4, 8):
        rate = statistics.median(throughput(workers, args.tasks) for _ in range(args.repeat))
        lats = [latency(workers) for _ in range(args.repeat)]
        p50 = statistics.median(x[0] for x in lats)
        p99 = statistics.median(x[1] for x in lats)
        print(f"{workers:>7}  {rate:>7.0f}  {p50:>15.2f}  {p99:>15.2f}", flush=True)
    print("makespan of a 40-task sleep DAG (5 layers x 8), 4 workers")
    for _ in range(args.repeat):
        m = makespan(4)
        print(
            f"  measured {m['measured_s']:.3f} s, lower bound {m['lower_bound_s']:.3f} s, "
            f"list schedule {m['list_schedule_s']:.3f} s, ratio {m['ratio']:.3f}"
        )


if __name__ == "__main__":
    main()
