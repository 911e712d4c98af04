"""``cortex worker``, ``master`` and ``supervisor``: the processes of a run, as a node supervisor or a Kubernetes
pod starts them. They join the run in the Redis that ``CORTEX_REDIS_URL`` names."""

from __future__ import annotations

from typing import Annotated

import typer

from cortex.cli.common import check_run_id, require_redis_url, run_async, settings

RunOpt = Annotated[str, typer.Option("--run", help="Run id to join")]
WHY = "for worker, master and supervisor processes (they join a run in that Redis)"


def worker(
    run: RunOpt,
    id: Annotated[str, typer.Option("--id", help="Worker id, e.g. scan-worker-01")],
    type: Annotated[str, typer.Option("--type", help="Worker type, e.g. scan")],
    prefetch: Annotated[int, typer.Option("--prefetch", min=1, help="Entries claimed per read at first")] = 1,
) -> None:
    """Run one worker process (what a supervisor or a Kubernetes pod starts)."""
    from cortex.runtime.worker import WorkerServices, run_worker

    url = require_redis_url(WHY)
    check_run_id(run, "--run")
    services = WorkerServices.from_settings()
    outage_s = settings().redis_outage_s
    run_async(run_worker(url, run, id, type, prefetch=prefetch, services=services, outage_s=outage_s))


def master(run: RunOpt, name: Annotated[str, typer.Option("--name", help="Master name, e.g. security")]) -> None:
    """Run one master process."""
    from cortex.runtime.master import run_master

    url = require_redis_url(WHY)
    check_run_id(run, "--run")
    run_async(run_master(url, run, name, outage_s=settings().redis_outage_s))


def supervisor(run: RunOpt, node: Annotated[str, typer.Option("--node", help="Node name from the plan")]) -> None:
    """Run the supervisor of one node: starts and restarts its masters and workers."""
    from cortex.runtime.supervisor import run_supervisor

    url = require_redis_url(WHY)
    check_run_id(run, "--run")
    run_supervisor(url, run, node)
