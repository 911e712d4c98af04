"""``cortex watch``, ``drain``, ``resume`` and ``cancel``: following a live run's channels and sending the control
messages its processes obey."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cortex.cli.common import StateDir, check_run_id, console, err, run_async, settings, state_dir
from cortex.errors import InputError, NotFound, RunNotFound

if TYPE_CHECKING:
    from cortex.runtime.control import Command

RunId = Annotated[str, typer.Argument(help="Run id (see `cortex status`)")]


def run_redis_url(state_dir_opt: Path | None) -> str:
    """``CORTEX_REDIS_URL``; else the Redis of the run in the state directory, when it runs on this machine with
    the embedded server (its URL holds no password, so the state file has it whole)."""
    url = settings().redis_url
    if url:
        return url
    from cortex.files import read_json
    from cortex.runtime.statefiles import CURRENT

    current = read_json(state_dir(state_dir_opt) / CURRENT) or {}
    if current.get("status") == "running" and current.get("redis") and "***" not in current["redis"]:
        return str(current["redis"])
    raise InputError(
        "CORTEX_REDIS_URL",
        "must be set to reach a run's Redis",
        hint="or use the state directory of a run going on on this machine (--state-dir)",
    )


def watch(
    run_id: Annotated[str | None, typer.Argument(help="Run id (default: the latest live run)")] = None,
    state_dir_opt: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    wait: Annotated[
        float, typer.Option("--wait", min=0, help="Seconds to wait for RUN_ID to start (e.g. run next)")
    ] = 0.0,
) -> None:
    """Follow a live run: print every message on its channels as it happens, until the run ends."""
    from cortex.cli.common import redis_client
    from cortex.runtime.watch import describe, follow, latest_run

    if run_id is not None:
        check_run_id(run_id)
    url = run_redis_url(state_dir_opt)

    def ready(target: str) -> None:
        err.print(f"watching run {target} (Ctrl-C to stop)", markup=False, highlight=False)

    async def main() -> None:
        redis = await redis_client(url)
        try:
            target = run_id or await latest_run(redis)
            async for event in follow(redis, target, wait_s=wait, on_ready=lambda: ready(target)):
                if as_json:
                    print(json.dumps({"channel": event.channel, **json.loads(event.envelope.dumps())}), flush=True)
                else:
                    console.print(describe(event), markup=False, highlight=False, soft_wrap=True)
        finally:
            await redis.aclose()

    run_async(main())


def _send(
    run_id: str, process_id: str, command: Command, state_dir_opt: Path | None, task_id: str | None = None
) -> None:
    from cortex.cli.common import redis_client
    from cortex.coord.keys import RunKeys
    from cortex.models import Plan
    from cortex.runtime.control import send

    check_run_id(run_id)
    url = run_redis_url(state_dir_opt)

    async def main() -> None:
        redis = await redis_client(url)
        keys = RunKeys(run_id)
        try:
            text = await redis.get(keys.plan)
            if text is None:
                raise RunNotFound(f"no live run {run_id!r} in this Redis (it ended, or never started here)")
            plan = Plan.model_validate_json(text)
            known = {f"master-{m.master}" for m in plan.masters} | {w.worker_id for w in plan.workers}
            if process_id not in known:
                raise InputError("PROCESS", f"{process_id!r} is not a process of run {run_id}", hint=_known(known))
            await send(redis, keys, process_id, command, by="operator", task_id=task_id)
        finally:
            await redis.aclose()

    run_async(main())


def _known(ids: set[str]) -> str:
    shown = sorted(ids)
    return "one of " + ", ".join(shown[:8]) + (", ..." if len(shown) > 8 else "")


def drain(
    run_id: RunId,
    process: Annotated[str, typer.Argument(help="Worker id (scan-worker-01) or master (master-security)")],
    state_dir_opt: StateDir = None,
) -> None:
    """Ask a worker to finish its current task and take no new one (or a master to stop dispatching)."""
    _send(run_id, process, "drain", state_dir_opt)
    console.print(f"drain sent to {process} of run {run_id}", markup=False, highlight=False)


def resume(
    run_id: RunId,
    process: Annotated[str, typer.Argument(help="Worker id or master-<name>")],
    state_dir_opt: StateDir = None,
) -> None:
    """Let a drained worker or master take work again."""
    _send(run_id, process, "resume", state_dir_opt)
    console.print(f"resume sent to {process} of run {run_id}", markup=False, highlight=False)


def cancel(
    run_id: RunId,
    task_id: Annotated[str, typer.Argument(help="Id of a running task")],
    state_dir_opt: StateDir = None,
) -> None:
    """Stop a running task: it ends failed, with who cancelled it, and is not retried."""
    from cortex.cli.common import redis_client
    from cortex.coord.keys import RunKeys

    check_run_id(run_id)

    async def worker_of() -> str:
        redis = await redis_client(run_redis_url(state_dir_opt))
        try:
            return str(await redis.hget(RunKeys(run_id).running, task_id) or "")
        finally:
            await redis.aclose()

    worker = run_async(worker_of())
    if not worker:
        raise NotFound(f"task {task_id!r} is not running in run {run_id} (see `cortex status`)")
    _send(run_id, worker, "cancel", state_dir_opt, task_id=task_id)
    console.print(f"cancel of {task_id} sent to {worker}", markup=False, highlight=False)
