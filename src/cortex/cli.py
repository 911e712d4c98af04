"""The ``cortex`` command: parses, calls the library, renders with rich. Heavy imports happen inside commands
so that the worker and master processes a supervisor starts come up quickly."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from cortex.catalog.cli import catalog_app
from cortex.chaos.cli import chaos as chaos_command
from cortex.errors import CortexError

if TYPE_CHECKING:
    from cortex.config import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Cortex: plan-first multi-agent orchestration.")
console = Console()
err = Console(stderr=True)

app.add_typer(catalog_app, name="catalog")
app.command(name="chaos")(chaos_command)

StateDir = Annotated[
    Path | None, typer.Option("--state-dir", help="State directory (default: CORTEX_STATE_DIR or .cortex)")
]
RosterOpt = Annotated[Path | None, typer.Option("--roster", help="Roster YAML (default: the built-in roster)")]
ClusterOpt = Annotated[Path | None, typer.Option("--cluster", help="Cluster YAML (default: the built-in cluster)")]


def _fail(exc: CortexError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
    return typer.Exit(exc.exit_code)


@contextlib.contextmanager
def _redis_url(settings: Settings) -> Iterator[str]:
    """``CORTEX_REDIS_URL`` when set; otherwise a private embedded server for the duration of the block."""
    if settings.redis_url:
        yield settings.redis_url
        return
    from cortex.coord.server import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server.url


def _settings() -> Settings:
    from cortex.config import Settings

    return Settings()


def _state_dir(opt: Path | None, settings: Settings) -> Path:
    return opt or settings.state_dir


@app.command()
def schemas(out: Annotated[Path, typer.Option("--out")] = Path("schemas")) -> None:
    """Export the JSON schemas of the cluster, roster, task, plan, execution state and message envelope."""
    from cortex.models.schemas import write_schemas

    for path in write_schemas(out):
        console.print(f"wrote {path}")


@app.command()
def init(directory: Annotated[Path, typer.Argument()] = Path("."), force: bool = False) -> None:
    """Write editable copies of the default roster.yaml and cluster.yaml."""
    from cortex.roster import write_defaults

    try:
        for path in write_defaults(directory, force=force):
            console.print(f"wrote {path}")
    except CortexError as exc:
        raise _fail(exc) from exc


def _build(goal: str, targets: Path, roster: Path | None, cluster: Path | None) -> Any:
    from cortex.planner import build_plan
    from cortex.roster import load_cluster, load_roster

    return build_plan(goal, targets, load_roster(roster), load_cluster(cluster))


@app.command()
def plan(
    goal: str,
    targets: Annotated[Path, typer.Option("--targets", help="Directory of target repositories")],
    out: Annotated[Path, typer.Option("--out", help="Where to write plan.json and the documents")] = Path(
        "plans/latest"
    ),
    roster: RosterOpt = None,
    cluster: ClusterOpt = None,
    assist: Annotated[
        bool, typer.Option("--assist", help="Ask CORTEX_MODEL to propose tasks; the planner validates them")
    ] = False,
) -> None:
    """Plan GOAL over the repositories under --targets; writes plan.json and Markdown documents."""
    from cortex.planner import write_plan

    try:
        p = _assisted(goal, targets, roster, cluster) if assist else _build(goal, targets, roster, cluster)
        files = write_plan(p, out)
    except CortexError as exc:
        raise _fail(exc) from exc
    console.print(
        f"plan [bold]{p.id}[/]: {len(p.tasks)} tasks, {len(p.masters)} masters, {len(p.workers)} workers, "
        f"routing {p.routing.mode} ({', '.join(p.routing.selected)})"
    )
    console.print(
        f"estimated makespan {p.schedule.makespan_s:.1f} s (lower bound {p.schedule.lower_bound_s:.1f} s); "
        f"{p.budget.total:,} tokens allocated"
    )
    for note in p.notes if assist else []:
        console.print(note)
    for f in files:
        console.print(f"  {f}")


def _assisted(goal: str, targets: Path, roster: Path | None, cluster: Path | None) -> Any:
    from cortex.agents.planning import assisted_plan
    from cortex.errors import InputError
    from cortex.roster import load_cluster, load_roster

    settings = _settings()
    if not settings.model:
        raise InputError("--assist", "planning assistance needs a model", hint="set CORTEX_MODEL=provider:model")
    return _asyncio_run(
        assisted_plan(goal, targets, load_roster(roster), load_cluster(cluster), settings.model, dict(os.environ))
    )


def _progress_table(state: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"run {state['run_id']}: phase {state['phase']} ({state['phase_name']}), {state['status']}")
    for col in ("master", "pending", "released", "running", "retrying", "succeeded", "failed", "skipped"):
        table.add_column(col, justify="left" if col == "master" else "right", no_wrap=True, min_width=len(col))
    for master, counts in sorted(state["tasks"].items()):
        table.add_row(
            master,
            *(
                str(counts.get(c, 0))
                for c in ("pending", "released", "running", "retrying", "succeeded", "failed", "skipped")
            ),
        )
    alive = "  ".join(f"{node} {n}" for node, n in state.get("workers_alive", {}).items())
    table.caption = (
        f"retries {state['retries']}  reassignments {state['reassignments']}  handoffs {state['handoffs']}\n"
        f"workers alive: {alive or 'none yet'}"
    )
    return table


def _execute(
    p: Any,
    state_dir: Path,
    metrics_port: int | None,
    settings: Settings,
    *,
    run_id: str | None = None,
    take_over_within: float | None = None,
) -> None:
    """Run plan ``p`` (or, with ``take_over_within``, take run ``run_id`` over) with a live progress table."""
    from rich.live import Live

    from cortex.runtime.coordinator import Coordinator, PreflightFailed

    prices = {}
    if settings.prices:
        from cortex.agents.prices import load_prices

        prices = load_prices(settings.prices)  # before anything starts: a bad table is an input error
    with _redis_url(settings) as url, Live(console=console, refresh_per_second=4, transient=False) as live:
        coord = Coordinator(
            p,
            url,
            state_dir,
            model=settings.model,
            metrics_port=metrics_port,
            run_id=run_id,
            connect_attempts=settings.redis_connect_attempts,
            catalog_url=settings.catalog_url,
            catalog_token=settings.catalog_token,
            on_update=lambda s: live.update(_progress_table(s)),
            prices=prices,
        )
        work = coord.run() if take_over_within is None else coord.take_over(take_over_within)
        try:
            result = _run_interruptible(work, coord.request_stop)
        except PreflightFailed as exc:
            for c in exc.checks:
                err.print(f"  {'ok ' if c.ok else 'FAIL'} {c.name}: {c.detail}")
            raise
        except Interrupted:
            interrupted = True
        else:
            interrupted = False
    if interrupted:  # processes and the embedded server are stopped by now (the blocks above have closed)
        err.print(f"interrupted: run {coord.run_id} aborted; state in {state_dir}")
        raise typer.Exit(130)
    console.print()
    console.print(f"run {result.run_id} {result.status}")
    console.print(f"report:  {result.report_md}")
    console.print(f"archive: {result.archive}")
    if result.status != "succeeded":
        raise typer.Exit(1)


@app.command()
def run(
    plan_or_goal: Annotated[str, typer.Argument(metavar="PLAN_JSON|GOAL")],
    targets: Annotated[Path | None, typer.Option("--targets", help="With a goal: directory of targets")] = None,
    state_dir: StateDir = None,
    roster: RosterOpt = None,
    cluster: ClusterOpt = None,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics")] = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Name the run (default: time and a random suffix)")
    ] = None,
) -> None:
    """Run a plan.json, or plan GOAL over --targets and run it. Exit 1 if any required task failed, 4 if another
    coordinator took the run over (this one stepped down)."""
    from cortex.errors import InputError
    from cortex.planner import load_plan, write_plan

    settings = _settings()
    sd = _state_dir(state_dir, settings)
    try:
        if run_id is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", run_id):
            raise InputError("--run-id", f"{run_id!r} is not a run id", hint="use letters, digits, '.', '_' or '-'")
        if plan_or_goal.endswith(".json") or Path(plan_or_goal).is_file():
            p = load_plan(Path(plan_or_goal))
        elif targets is None:
            raise InputError("--targets", "a goal needs --targets", hint="or pass the path of a plan.json")
        else:
            p = _build(plan_or_goal, targets, roster, cluster)
            write_plan(p, sd / "plans" / p.id)
        _execute(p, sd, metrics_port, settings, run_id=run_id)
    except CortexError as exc:
        raise _fail(exc) from exc


@app.command()
def demo(
    state_dir: StateDir = None, metrics_port: Annotated[int | None, typer.Option("--metrics-port")] = None
) -> None:
    """Plan and run the full catalog toolset over a working copy of examples/fleet (from the repository root)."""
    from cortex.toolset.fleet import working_copy

    source = Path("examples/fleet")
    if not source.is_dir():
        raise _fail(CortexError("examples/fleet not found: run the demo from the repository root"))
    settings = _settings()
    try:
        fleet = working_copy(source, _state_dir(state_dir, settings) / "fleet")
    except CortexError as exc:
        raise _fail(exc) from exc
    console.print(f"working copy of {source}: {fleet} (git repositories; the checkout is never modified)")
    goal = "Run the full catalog toolset across the fleet"
    console.print(f'$ cortex plan "{goal}" --targets {fleet} --out plans/full')
    plan(goal, targets=fleet, out=Path("plans/full"))
    console.print("$ cortex run plans/full/plan.json")
    from cortex.planner import load_plan

    try:
        _execute(load_plan(Path("plans/full/plan.json")), _state_dir(state_dir, settings), metrics_port, settings)
    except CortexError as exc:
        raise _fail(exc) from exc


@app.command()
def takeover(
    run_id: str,
    state_dir: StateDir = None,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for the current lease to lapse")] = 60.0,
) -> None:
    """Take RUN_ID over from a coordinator that stopped renewing its lease (crashed, paused, cut off) and finish
    it. CORTEX_REDIS_URL must name the run's Redis. Exit 3 if the run is unknown there, 1 if the lease never lapsed."""
    from cortex.runtime.takeover import load_plan

    settings = _settings()
    if not settings.redis_url:
        raise _fail(CortexError("CORTEX_REDIS_URL must name the Redis server of the run to take over"))
    try:
        p = _asyncio_run(load_plan(settings.redis_url, run_id))
        _execute(p, _state_dir(state_dir, settings), None, settings, run_id=run_id, take_over_within=wait)
    except CortexError as exc:
        raise _fail(exc) from exc


@app.command()
def status(state_dir: StateDir = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the running or last execution."""
    from cortex.runtime.statefiles import CURRENT, read_json

    sd = _state_dir(state_dir, _settings())
    state = read_json(sd / CURRENT)
    if state is None:
        raise _fail(CortexError(f"no execution recorded in {sd}: run `cortex run` first"))
    if state["status"] == "running" and not _pid_alive(int(state["pid"])):
        state["status"] = "interrupted (coordinator no longer running)"
    if as_json:
        console.print_json(json.dumps(state))
        return
    console.print(_progress_table(state))
    if state.get("report"):
        console.print(f"report: {state['report'].get('report_md')}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@app.command()
def history(state_dir: StateDir = None) -> None:
    """List past executions (archives)."""
    from rich.table import Table

    sd = _state_dir(state_dir, _settings())
    table = Table("run", "status", "duration", "tasks", "goal")
    for report_file in sorted((sd / "archives").glob("CORTEX-EXEC-*/report.json"), reverse=True):
        r = json.loads(report_file.read_text())
        table.add_row(r["run_id"], r["status"], f"{r['duration_s']:.1f} s", str(len(r["tasks"])), r["goal"])
    console.print(table)


@app.command()
def report(run_id: str, state_dir: StateDir = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the report of a past execution."""
    sd = _state_dir(state_dir, _settings())
    folder = sd / "archives" / f"CORTEX-EXEC-{run_id.removeprefix('CORTEX-EXEC-')}"
    path = folder / ("report.json" if as_json else "report.md")
    if not path.is_file():
        raise _fail(CortexError(f"no archived execution {run_id!r} in {sd / 'archives'}: see `cortex history`"))
    console.print(path.read_text(), markup=False, highlight=False)


@app.command(hidden=False)
def worker(
    run: Annotated[str, typer.Option("--run")],
    id: Annotated[str, typer.Option("--id")],
    type: Annotated[str, typer.Option("--type")],
    prefetch: int = 1,
) -> None:
    """Run one worker process (what a supervisor or a Kubernetes pod starts)."""
    from cortex.runtime.worker import WorkerServices, run_worker

    _asyncio_run(run_worker(_require_url(), run, id, type, prefetch=prefetch, services=WorkerServices.from_settings()))


@app.command()
def master(run: Annotated[str, typer.Option("--run")], name: Annotated[str, typer.Option("--name")]) -> None:
    """Run one master process."""
    from cortex.runtime.master import run_master

    _asyncio_run(run_master(_require_url(), run, name))


@app.command()
def supervisor(run: Annotated[str, typer.Option("--run")], node: Annotated[str, typer.Option("--node")]) -> None:
    """Run the supervisor of one node: starts and restarts its masters and workers."""
    from cortex.runtime.supervisor import run_supervisor

    run_supervisor(_require_url(), run, node)


class Interrupted(Exception):
    """The run was stopped by SIGINT or SIGTERM, after its cleanup finished."""


def _run_interruptible(coro: Any, request_stop: Callable[[], None]) -> Any:
    """Run ``coro``; the first SIGINT/SIGTERM asks it to stop and cancels it (its cleanup runs), later ones only
    say so. Python's default handler would raise KeyboardInterrupt anywhere, including in the middle of that
    cleanup; and a cancellation alone can be absorbed inside a client library, hence the flag too."""
    import asyncio
    import signal

    from cortex.runtime.coordinator import RunInterrupted

    async def main() -> Any:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if task.cancelling():
                err.print("still stopping processes...")
            else:
                request_stop()
                task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            return await task
        except (asyncio.CancelledError, RunInterrupted):
            # Cleanup is done; let nothing cut the exit short. The loop's handlers are removed first, or closing
            # the loop would put Python's KeyboardInterrupt handler back over SIG_IGN.
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
                signal.signal(sig, signal.SIG_IGN)
            raise Interrupted from None

    return asyncio.run(main())


def _asyncio_run(coro: Any) -> Any:
    import asyncio

    return asyncio.run(coro)


def _require_url() -> str:
    url = _settings().redis_url
    if not url:
        raise _fail(CortexError("CORTEX_REDIS_URL must be set for worker, master and supervisor processes"))
    return url


def main() -> None:
    """Console-script entry point."""
    app()
