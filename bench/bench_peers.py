"""Cortex side by side with Celery, RQ and ARQ on one Redis server, in one run: no-op throughput with 4 workers and
the idle chain hop (a task's end to the start of the task that depends on it), with the ratios.

Each system gets the same embedded Redis (unix socket, no append-only file), emptied between measurements, and 4
worker processes started before the clock starts:

- Cortex: its engine as ``cortex run`` drives it (coordinator, node agents, one master, 4 workers); throughput is
  N independent no-op tasks over the measured execution phase; the chain is N no-op tasks, each depending on the
  one before; its times come from the report.
- Celery: 4 ``celery worker --pool solo`` processes; throughput from the first enqueue until every job counted
  itself; the chain is a Celery ``chain``.
- RQ: 4 ``rq worker --worker-class rq.worker.SimpleWorker`` processes; the chain uses ``depends_on``.
- ARQ: 4 ``arq`` workers polling every 10 ms (``max_jobs=1``); ARQ has no dependencies, so each link enqueues
  the next as it ends.

The peers' jobs make one Redis call to be counted or timed (``bench/peers_jobs.py``); Cortex's make none. The
peers run in an environment of their own, made on first use under ``.cache/peers-venv`` (``peers_python``), driven
by ``bench/peers_drive.py``; Cortex runs here, with the redis-py it requires.

    python bench/bench_peers.py [--tasks 2000] [--chain 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from _common import bench_plan, machine, task
from cortex.coord.server import EmbeddedRedis
from cortex.models.task import Task
from cortex.runtime.coordinator import Coordinator
from peers_drive import WORKERS, hops_of

BENCH = Path(__file__).resolve().parent


def percentiles(values: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``values`` (milliseconds)."""
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return pick(0.5), pick(0.99)


# ------------------------------------------------------------------------------------------------- Cortex
def cortex_report(url: str, tasks: list[Task]) -> dict[str, Any]:
    """Run ``tasks`` through the engine on the shared server; every task must succeed."""
    with tempfile.TemporaryDirectory(prefix="cortex-bench-peers-") as state:
        result = asyncio.run(Coordinator(bench_plan(tasks, WORKERS), url, Path(state)).run())
    report = result.report.model_dump(mode="json")
    assert all(t["state"] == "succeeded" for t in report["tasks"])
    return report


def cortex_run(url: str, n: int, chain_n: int) -> tuple[float, list[float]]:
    report = cortex_report(url, [task(f"t{i:06d}") for i in range(n)])
    rate = float(n / report["phases"]["measured_s"]["execution"])
    report = cortex_report(url, [task(f"c{i:05d}", deps=[f"c{i - 1:05d}"] if i else []) for i in range(chain_n)])
    links = sorted(report["tasks"], key=lambda t: t["id"])
    return rate, hops_of([(t["started_at"], t["finished_at"]) for t in links])


# ------------------------------------------------------------------------------------------------- peers
PEERS = {"Celery (solo pool)": "celery", "RQ (SimpleWorker)": "rq", "ARQ (10 ms poll)": "arq"}
PEER_REQUIREMENTS = ["celery[redis]==5.6.3", "rq==3.0.0", "arq==0.28.0", "redis[hiredis]==5.3.1"]
"""The versions measured in BENCHMARKS.md, installed into their own environment (``peers_python``): ARQ and
Celery's kombu pin redis-py below 6, while Cortex needs 8 (before 8, redis-py's asyncio pool checked each connection
with a read under a zero timeout, an event-loop turn per command: 12% of an idle chain hop here)."""
PEERS_VENV = BENCH.parent / ".cache" / "peers-venv"


def peers_python() -> Path:
    """The peers' interpreter: a virtual environment made (once) beside the checkout with ``PEER_REQUIREMENTS``."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / "requirements.txt"
    wanted = "\n".join(PEER_REQUIREMENTS) + "\n"
    if not (python.exists() and stamp.exists() and stamp.read_text() == wanted):
        print(f"installing the peers into {PEERS_VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEERS_VENV)], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", *PEER_REQUIREMENTS], check=True)
        stamp.write_text(wanted)
    return python


def peer_run(python: Path, system: str, socket: str, n: int, chain_n: int) -> tuple[float, list[float]]:
    """One measurement of a peer by ``peers_drive.py`` in the peers' environment."""
    argv = [str(python), str(BENCH / "peers_drive.py"), system, socket, str(n), str(chain_n)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=900).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return float(data["rate"]), [float(h) for h in data["hops"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--chain", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    python = peers_python()
    versions = subprocess.run(
        [str(python), "-c", "from importlib.metadata import version as v; "
         "print(', '.join(f'{p} {v(p)}' for p in ('celery', 'rq', 'arq', 'redis')))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    print(f"machine: {machine()}")
    print(f"Cortex with redis-py {redis.__version__}; the peers: {versions}")
    print(f"{WORKERS} workers each, {args.tasks} no-op tasks, a chain of {args.chain}; median of {args.repeat} runs")
    results: dict[str, tuple[float, float, float]] = {}
    with EmbeddedRedis(appendonly=False) as server:
        socket = server.url.removeprefix("unix://")
        r = redis.Redis(unix_socket_path=socket)
        systems: dict[str, Callable[[], tuple[float, list[float]]]] = {
            "Cortex": lambda: cortex_run(server.url, args.tasks, args.chain),
            **{
                name: (lambda system=system: peer_run(python, system, socket, args.tasks, args.chain))
                for name, system in PEERS.items()
            },
        }
        for name, measure in systems.items():
            runs = []
            for _ in range(args.repeat):
                r.flushall()
                rate, hops = measure()
                runs.append((rate, percentiles(hops)))
            print(f"  {name}: {[round(x[0]) for x in runs]} tasks/s", flush=True)
            results[name] = (
                statistics.median(x[0] for x in runs),
                statistics.median(x[1][0] for x in runs),
                statistics.median(x[1][1] for x in runs),
            )
    best = max(v[0] for k, v in results.items() if k != "Cortex")
    print(f"{'system':<20} {'tasks/s':>8} {'hop p50 ms':>11} {'hop p99 ms':>11}")
    for name, (rate, p50, p99) in results.items():
        print(f"{name:<20} {rate:>8.0f} {p50:>11.2f} {p99:>11.2f}")
    cortex = results["Cortex"]
    print(f"Cortex throughput / best peer's: {cortex[0] / best:.2f}x (target 5x); chain hop p50 {cortex[1]:.2f} ms "
          f"(target <= 2 ms), p99 {cortex[2]:.2f} ms (target <= 5 ms)")  # fmt: skip


if __name__ == "__main__":
    main()
