"""``cortex node``, ``worker`` and ``master``: the node agent that serves runs on a host, and the processes of a
run it starts (also runnable alone, as a Kubernetes pod would). They join the Redis that ``CORTEX_REDIS_URL`` names
(auth and TLS through the URL)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from cortex.cli.common import MetricsHost, check_host, check_run_id, require_redis_url, run_async, settings
from cortex.errors import InputError

RunOpt = Annotated[str, typer.Option("--run", help="Run id to join")]
WHY = "for node agents, workers and masters (they join runs in that Redis)"


def worker(
    run: RunOpt,
    id: Annotated[str, typer.Option("--id", help="Worker id, e.g. scan-worker-01")],
    type: Annotated[str, typer.Option("--type", help="Worker type, e.g. scan")],
    prefetch: Annotated[int, typer.Option("--prefetch", min=1, help="Entries claimed per read at first")] = 1,
) -> None:
    """Run one worker process by hand (node agents start them; a worker the run has not placed is refused)."""
    from cortex.runtime.worker import WorkerServices, run_worker

    url = require_redis_url(WHY)
    check_run_id(run, "--run")
    _placed(url, run, id)
    _log_to(run, id)
    services = WorkerServices.from_settings()
    outage_s = settings().redis_outage_s
    run_async(run_worker(url, run, id, type, prefetch=prefetch, services=services, outage_s=outage_s))


def master(run: RunOpt, name: Annotated[str, typer.Option("--name", help="Master name, e.g. security")]) -> None:
    """Run one master process by hand (node agents start them; a master the run has not placed is refused)."""
    from cortex.runtime.master import run_master

    url = require_redis_url(WHY)
    check_run_id(run, "--run")
    _placed(url, run, f"master-{name}")
    _log_to(run, f"master-{name}")
    run_async(run_master(url, run, name, outage_s=settings().redis_outage_s))


def _log_to(run: str, process_id: str) -> None:
    """This process's structured log: ``<state>/runs/<run>/logs/<process>.jsonl``."""
    from cortex.observability import logs

    s = settings()
    logs.attach(s.state_dir / "runs" / run / "logs" / f"{process_id}.jsonl", process_id, s.log_level)


def _placed(url: str, run: str, process_id: str) -> None:
    """The run's placement lists ``process_id``: a process it did not place would take tasks unlisted, unmetered
    and never restarted."""
    from cortex.cli.common import redis_client
    from cortex.coord.keys import RunKeys

    async def node() -> str | None:
        redis = await redis_client(url)
        try:
            return await redis.hget(RunKeys(run).placement, process_id)  # type: ignore[no-any-return]
        finally:
            await redis.aclose()

    if not run_async(node()):
        raise InputError(
            "--id" if not process_id.startswith("master-") else "--name",
            f"{process_id} is not placed in run {run} (or the run is not in this Redis)",
            hint="processes are started by node agents: run `cortex node NAME` on this host",
        )


NODE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
LABEL = re.compile(r"([A-Za-z0-9][A-Za-z0-9._/-]{0,252})=([A-Za-z0-9._-]{0,63})")


def _labels(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        for item in filter(None, value.split(",")):
            m = LABEL.fullmatch(item.strip())
            if not m:
                raise InputError("--labels", f"{item!r} is not key=value", hint="e.g. --labels zone=a,disk=ssd")
            out[m[1]] = m[2]
    return out


def node(
    name: Annotated[str, typer.Argument(help="Node name, as plans name nodes (e.g. worker-node-1)")],
    labels: Annotated[list[str], typer.Option("--labels", help="key=value[,key=value] (repeatable)")] = [],  # noqa: B006
    slots: Annotated[
        int | None, typer.Option("--slots", min=0, help="Worker processes it runs at once (default: 2 per CPU)")
    ] = None,
    pool: Annotated[str, typer.Option("--pool", help="Pool of nodes a coordinator places on")] = "default",
    drain_s: Annotated[
        float, typer.Option("--drain-s", min=0, help="On SIGTERM, how long running tasks may finish")
    ] = 60.0,
    metrics_host: MetricsHost = "127.0.0.1",
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", min=1, max=65535, help="Serve /metrics")] = None,
    for_run: Annotated[
        str | None, typer.Option("--for-run", hidden=True, help="Serve only this run, then exit")
    ] = None,
) -> None:
    """Run a node agent: register this host in the pool, start and supervise the masters and workers that runs
    place on it, report their CPU and memory, and drain on SIGTERM (running tasks finish, none are taken)."""
    from cortex.runtime.agent import AgentOptions, run_agent

    url = require_redis_url(WHY)
    if not NODE_NAME.fullmatch(name):
        raise InputError("NAME", f"{name!r} is not a node name", hint="lower-case letters, digits and '-'")
    if not NODE_NAME.fullmatch(pool):
        raise InputError("--pool", f"{pool!r} is not a pool name", hint="lower-case letters, digits and '-'")
    if for_run is not None:
        check_run_id(for_run, "--for-run")
    options = AgentOptions(
        name=name,
        pool=pool,
        labels=_labels(labels),
        slots=slots,
        drain_s=drain_s,
        metrics_host=check_host(metrics_host, "--metrics-host"),
        metrics_port=metrics_port,
        for_run=for_run,
    )
    run_agent(url, options)


def ui(
    host: Annotated[str, typer.Option("--host", help="Address to bind (127.0.0.1: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8200,
    config: Annotated[
        Path | None, typer.Option("--config", help="Catalog YAML whose tokens (read scope) guard the view")
    ] = None,
) -> None:
    """Serve the web view of runs, findings, plans and the catalog from the Redis of CORTEX_REDIS_URL (or the run
    going on in the state directory). Bound beyond this machine, it asks for a token (--config)."""
    import uvicorn

    from cortex.catalog.config import CatalogConfig
    from cortex.cli.live import run_redis_url
    from cortex.roster import load_model
    from cortex.ui.app import create_app

    bind = check_host(host, "--host")
    cfg = load_model(CatalogConfig, config) if config else None
    if cfg is None and bind not in ("127.0.0.1", "::1", "localhost"):
        raise InputError("--host", f"{bind} is reachable from other machines", hint="give --config with tokens")
    app = create_app(run_redis_url(None), cfg, settings().state_dir)
    uvicorn.run(app, host=bind, port=port, log_level="warning")
