"""``cortex run``, ``demo`` and ``takeover``: a coordinator in the foreground with a live progress table."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from cortex.cli.common import (
    AsJson,
    MetricsHost,
    StateDir,
    check_run_id,
    console,
    err,
    print_json,
    private_or_configured_redis,
    require_redis_url,
    run_async,
)
from cortex.cli.common import settings as load_settings
from cortex.cli.common import state_dir as resolve_state_dir
from cortex.cli.planning import ClusterOpt, NoCache, NoHistory, RosterOpt, build, plan
from cortex.cli.progress import progress_view
from cortex.errors import ExitCode, InputError, PreflightFailed, RunInterrupted

if TYPE_CHECKING:
    from cortex.config import Settings
    from cortex.models import Plan
    from cortex.runtime.options import RunOptions

T = TypeVar("T")
MetricsPort = Annotated[int | None, typer.Option("--metrics-port", min=1, max=65535, help="Serve Prometheus metrics")]
NodesOpt = Annotated[
    str, typer.Option("--nodes", help="local: start a node agent per plan node here; cluster: use registered agents")
]
PoolOpt = Annotated[str, typer.Option("--pool", help="Cluster mode: the pool of node agents to place on")]
NodeWaitOpt = Annotated[
    float, typer.Option("--node-wait", min=0, help="Cluster mode: seconds to wait for the plan's nodes to register")
]


def _options(
    settings: Settings,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    nodes: str = "local",
    pool: str = "default",
    node_wait: float = 60.0,
) -> RunOptions:
    """The run's options from the command line and ``CORTEX_*`` settings; bad values are input errors."""
    from cortex.cli.common import check_host
    from cortex.runtime.options import RunOptions

    if nodes not in ("local", "cluster"):
        raise InputError("--nodes", f"{nodes!r} is neither local nor cluster", hint="--nodes local or --nodes cluster")
    prices = {}
    if settings.prices:
        from cortex.agents.prices import load_prices

        prices = load_prices(settings.prices)  # before anything starts: a bad table is an input error
    return RunOptions(
        model=settings.model,
        catalog_url=settings.catalog_url,
        catalog_token=settings.catalog_token,
        prices=prices,
        metrics_port=metrics_port,
        metrics_host=check_host(metrics_host, "--metrics-host"),
        connect_attempts=settings.redis_connect_attempts,
        outage_s=settings.redis_outage_s,
        stall_s=settings.stall_s,
        pool=pool if nodes == "cluster" else None,
        node_wait_s=node_wait,
        log_level=settings.log_level,
        grafana_url=settings.grafana_url,
        grafana_token=settings.grafana_token,
    )


def _execute(
    p: Plan,
    state_dir: Path,
    options: RunOptions,
    *,
    run_id: str | None = None,
    take_over_within: float | None = None,
    as_json: bool = False,
) -> None:
    """Run plan ``p`` (or, with ``take_over_within``, take run ``run_id`` over) with a live progress table (on
    standard error with ``as_json``: standard output gets the result as JSON only)."""
    from rich.live import Live

    from cortex.runtime.coordinator import Coordinator

    screen = err if as_json else console
    with private_or_configured_redis() as url, Live(console=screen, refresh_per_second=4, transient=False) as live:
        coord = Coordinator(
            p,
            url,
            state_dir,
            options,
            run_id=run_id,
            on_update=lambda s: live.update(progress_view(s)),
            notice=lambda text: live.console.print(text, markup=False, highlight=False),
        )
        work = coord.run() if take_over_within is None else coord.take_over(take_over_within)
        try:
            result = _run_interruptible(work, coord.request_stop)
        except PreflightFailed as exc:
            for c in exc.checks:
                err.print(f"  {'ok ' if c.ok else 'FAIL'} {c.name}: {c.detail}", markup=False, highlight=False)
            raise
        except RunInterrupted:
            interrupted = True
        else:
            interrupted = False
    if interrupted:  # processes and the embedded server are stopped by now (the blocks above have closed)
        raise RunInterrupted(f"interrupted: run {coord.run_id} aborted; state in {state_dir}")
    if as_json:
        paths = {"report_md": str(result.report_md), "report_json": str(result.report_json)}
        print_json({"run_id": result.run_id, "status": result.status, **paths, "archive": str(result.archive)})
        if result.status != "succeeded":
            raise typer.Exit(ExitCode.TASKS_FAILED)
        return
    console.print()
    console.print(f"run {result.run_id} {result.status}", markup=False)
    console.print(f"report:  {result.report_md}", markup=False, highlight=False)
    console.print(f"archive: {result.archive}", markup=False, highlight=False)
    if result.status != "succeeded":
        raise typer.Exit(ExitCode.TASKS_FAILED)


def run(
    plan_or_goal: Annotated[str, typer.Argument(metavar="PLAN_JSON|GOAL")],
    targets: Annotated[
        Path | None, typer.Option("--targets", help="With a goal: directory of targets, or a fleet file")
    ] = None,
    state_dir: StateDir = None,
    roster: RosterOpt = None,
    cluster: ClusterOpt = None,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
    nodes: NodesOpt = "local",
    pool: PoolOpt = "default",
    node_wait: NodeWaitOpt = 60.0,
    as_json: AsJson = False,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Name the run (default: time and a random suffix)")
    ] = None,
    no_history: NoHistory = False,
    no_cache: NoCache = False,
) -> None:
    """Run a plan.json, or plan GOAL over --targets and run it: on node agents started here (--nodes local, the
    default) or on the agents registered in a pool (--nodes cluster). Exit 1 if a required task failed, 4 if
    another coordinator took the run over (this one stepped down), 6 if pre-flight failed, 7 if nodes or processes
    did not start."""
    from cortex.planner import load_plan, write_plan

    settings = load_settings()
    sd = state_dir or settings.state_dir
    if run_id is not None:
        check_run_id(run_id, "--run-id")
    if plan_or_goal.endswith(".json") or Path(plan_or_goal).is_file():
        p = load_plan(Path(plan_or_goal), known_kinds=_known_kinds())
    elif targets is None:
        raise InputError("--targets", "a goal needs --targets", hint="or pass the path of a plan.json")
    else:
        p = build(plan_or_goal, targets, roster, cluster, learn=not no_history, reuse=not no_cache, state_dir=sd)
        write_plan(p, sd / "plans" / p.id)
    options = _options(settings, metrics_port, metrics_host, nodes, pool, node_wait)
    options.reuse = not no_cache
    _execute(p, sd, options, run_id=run_id, as_json=as_json)


def _known_kinds() -> set[str]:
    from cortex.toolset.registry import known_kinds

    return set(known_kinds())


def demo(
    state_dir: StateDir = None,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
) -> None:
    """Plan and run the full catalog toolset over a working copy of examples/fleet (from the repository root)."""
    from cortex.planner import load_plan
    from cortex.toolset.fleet import working_copy

    source = Path("examples/fleet")
    if not source.is_dir():
        raise InputError("examples/fleet", "not found here", hint="run the demo from the repository root")
    settings = load_settings()
    sd = resolve_state_dir(state_dir)
    fleet = working_copy(source, sd / "fleet")
    console.print(f"working copy of {source}: {fleet} (git repositories; the checkout is never modified)", markup=False)
    goal = "Run the full catalog toolset across the fleet"
    console.print(f'$ cortex plan "{goal}" --targets {fleet} --out plans/full', markup=False, highlight=False)
    plan(goal, targets=fleet, out=Path("plans/full"), state_dir=sd)
    console.print("$ cortex run plans/full/plan.json", markup=False, highlight=False)
    _execute(load_plan(Path("plans/full/plan.json")), sd, _options(settings, metrics_port, metrics_host))


def takeover(
    run_id: str,
    state_dir: StateDir = None,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for the current lease to lapse")] = 60.0,
) -> None:
    """Take RUN_ID over from a coordinator that stopped renewing its lease (crashed, paused, cut off) and finish
    it. CORTEX_REDIS_URL must name the run's Redis. Exit 5 if the run is unknown there, 4 if its lease never
    lapsed."""
    from cortex.runtime.takeover import load_plan

    check_run_id(run_id)
    url = require_redis_url("to name the Redis server of the run to take over")
    options = _options(load_settings())
    p = run_async(load_plan(url, run_id, attempts=options.connect_attempts))
    _execute(p, resolve_state_dir(state_dir), options, run_id=run_id, take_over_within=wait)


def _run_interruptible(coro: Coroutine[Any, Any, T], request_stop: Callable[[], None]) -> T:
    """Run ``coro``; the first SIGINT/SIGTERM asks it to stop and cancels it (its cleanup runs), later ones only
    say so. Python's default handler would raise KeyboardInterrupt anywhere, including in the middle of that
    cleanup; and a cancellation alone can be absorbed inside a client library, hence the flag too."""
    import asyncio
    import signal

    async def main() -> T:
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
            raise RunInterrupted("interrupted") from None

    return asyncio.run(main())
