"""``cortex chaos``: a game day on your own machine. Runs a plan (or a synthetic one) while injecting faults and
ends with the verification table. Exit 0 when nothing was lost or duplicated and every fault was recovered from."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cortex.cli.common import console
from cortex.errors import ExitCode, InputError


def chaos(
    plan: Annotated[
        Path | None, typer.Argument(help="plan.json to run (default: a synthetic plan, see --tasks)")
    ] = None,
    faults: Annotated[
        str,
        typer.Option(
            "--faults",
            help="Comma-separated, injected in turn: kill-worker, pause-worker, kill-master, kill-node, "
            "restart-redis, stop-catalog, pause-coordinator",
        ),
    ] = "kill-worker,kill-master,restart-redis",
    rate: Annotated[float, typer.Option("--rate", help="Faults per minute of execution")] = 6.0,
    max_faults: Annotated[int | None, typer.Option("--max-faults", help="Stop injecting after this many")] = None,
    tasks: Annotated[int, typer.Option("--tasks", help="Synthetic plan: how many tasks")] = 200,
    seconds: Annotated[float, typer.Option("--seconds", help="Synthetic plan: length of each task")] = 0.4,
    kind: Annotated[str, typer.Option("--kind", help="Synthetic plan: chaos.work, chaos.contend, chaos.catalog")] = (
        "chaos.work"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fault schedule and victims")] = 0,
    timeout: Annotated[float, typer.Option("--timeout", help="Give up on the run after this many seconds")] = 900.0,
    state_dir: Annotated[Path, typer.Option("--state-dir", help="Where the run's state goes")] = Path(".cortex-chaos"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run a plan under injected faults and verify it: tasks expected, completed, failed, lost, duplicated
    effects, reassignments, restarts, time to recover."""
    from cortex.chaos.faults import FAULTS
    from cortex.chaos.harness import dumps, run_chaos
    from cortex.chaos.plan import chaos_plan
    from cortex.planner import load_plan

    wanted = [f.strip() for f in faults.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in FAULTS]
    if unknown:
        raise InputError("--faults", f"unknown fault(s) {', '.join(unknown)}", hint=f"known: {', '.join(FAULTS)}")
    if rate <= 0:
        raise InputError("--rate", f"must be above 0 faults per minute, got {rate}")
    if kind not in ("chaos.work", "chaos.contend", "chaos.catalog"):
        raise InputError("--kind", f"{kind!r} is not a chaos workload", hint="chaos.work, chaos.contend, chaos.catalog")
    if plan is None and tasks < 1:
        raise InputError("--tasks", f"must be at least 1, got {tasks}")
    p = load_plan(plan) if plan is not None else chaos_plan(tasks, kind=kind, seconds=seconds)
    result = asyncio.run(
        run_chaos(p, state_dir, wanted, rate_per_min=rate, max_faults=max_faults, seed=seed, timeout_s=timeout)
    )
    if as_json:
        print(dumps(result))
    else:
        table = Table(title=f"chaos run {result.run_id}", show_header=False)
        for name, value in result.rows():
            table.add_row(name, value)
        console.print(table)
        for f in result.faults:
            took = f"{f.recovered_s:.2f} s" if f.recovered_s is not None else "NOT RECOVERED"
            line = f"  {f.at_s:7.2f} s  {f.kind:<18} {f.target:<28} recovered in {took}  {f.detail}"
            console.print(line, markup=False, highlight=False)
        console.print(f"report: {result.report}", markup=False, highlight=False)
    healthy = result.lost == 0 and result.duplicated == 0 and all(f.recovered_s is not None for f in result.faults)
    if not healthy:
        raise typer.Exit(ExitCode.TASKS_FAILED)
