"""``cortex status``, ``history`` and ``report``: what runs left in the run index in Redis (when
``CORTEX_REDIS_URL`` is set and no ``--state-dir`` is given: any host sees every run of that Redis), or in the
state directory (this host's runs)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from cortex.cli.common import (
    AsJson,
    StateDir,
    check_run_id,
    console,
    err,
    print_json,
    run_async,
    settings,
    state_dir,
)
from cortex.cli.progress import progress_view
from cortex.errors import InputError, RunNotFound

if TYPE_CHECKING:
    import redis.asyncio as aredis

T = TypeVar("T")


def _from_redis(state_dir_opt: Path | None) -> str | None:
    """The Redis to read the run index from: ``CORTEX_REDIS_URL`` unless a state directory was named."""
    return None if state_dir_opt is not None else settings().redis_url


def _indexed(url: str, read: Callable[[aredis.Redis], Awaitable[T]]) -> T:
    from cortex.cli.common import redis_client

    async def main() -> T:
        redis = await redis_client(url)
        try:
            return await read(redis)
        finally:
            await redis.aclose()

    return run_async(main())


def status(
    run_id: Annotated[str | None, typer.Argument(help="Run id (default: the latest)")] = None,
    state_dir_opt: StateDir = None,
    as_json: AsJson = False,
) -> None:
    """Show a run as it stands: from the run index in Redis when CORTEX_REDIS_URL is set (any host), else the
    state directory's latest execution."""
    from cortex.runtime import runindex

    if run_id is not None:
        check_run_id(run_id)
    url = _from_redis(state_dir_opt)
    if url:
        state = _indexed(url, lambda r: runindex.current(r, run_id)).model_dump(mode="json")
    else:
        state = _local_status(state_dir(state_dir_opt), run_id)
    if as_json:
        print_json(state)
        return
    console.print(progress_view(state))
    if state.get("report"):
        console.print(f"report: {state['report'].get('report_md')}", markup=False, highlight=False)


def _local_status(sd: Path, run_id: str | None) -> dict[str, Any]:
    from cortex.files import read_json
    from cortex.runtime.statefiles import CURRENT

    try:
        state = read_json(sd / CURRENT)
    except (OSError, ValueError) as exc:
        raise InputError(str(sd / CURRENT), f"not a readable state file ({exc})", hint="remove it") from None
    if state is None:
        raise RunNotFound(f"no execution recorded in {sd}: run `cortex run` first")
    if not isinstance(state, dict) or not {"status", "pid", "run_id"} <= state.keys():
        raise InputError(str(sd / CURRENT), "not a state file Cortex wrote", hint="remove it")
    if run_id is not None and state["run_id"] != run_id:
        raise RunNotFound(f"the latest execution in {sd} is {state['run_id']}, not {run_id}: see `cortex history`")
    if state["status"] == "running" and not _pid_alive(int(state["pid"])):
        state["status"] = "interrupted (coordinator no longer running)"
    return state


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def history(state_dir_opt: StateDir = None, as_json: AsJson = False) -> None:
    """List past executions: the run index in Redis when CORTEX_REDIS_URL is set, else the archives."""
    from cortex.runtime import runindex

    rows: list[dict[str, Any]] = []
    url = _from_redis(state_dir_opt)
    if url:
        for s in _indexed(url, runindex.history):
            tasks = sum(sum(c.model_dump().values()) for c in s.tasks.values())
            duration = round((s.finished_at or s.updated_at) - s.started_at, 3)
            rows.append(
                {"run_id": s.run_id, "status": s.status, "duration_s": duration, "tasks": tasks, "goal": s.goal}
            )
    else:
        sd = state_dir(state_dir_opt)
        for report_file in sorted((sd / "archives").glob("CORTEX-EXEC-*/report.json"), reverse=True):
            try:
                r = json.loads(report_file.read_text(encoding="utf-8"))
                rows.append(
                    {
                        "run_id": r["run_id"],
                        "status": r["status"],
                        "duration_s": float(r["duration_s"]),
                        "tasks": len(r["tasks"]),
                        "goal": r["goal"],
                    }
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:  # one damaged archive hides none of the others
                name = type(exc).__name__
                err.print(f"warning: {report_file}: not a readable report ({name}); left out", markup=False)
    if as_json:
        print_json(rows)
        return
    table = Table("run", "status", "duration", "tasks", "goal")
    for row in rows:
        table.add_row(row["run_id"], row["status"], f"{row['duration_s']:.1f} s", str(row["tasks"]), row["goal"])
    console.print(table)


def report(
    run_id: Annotated[str, typer.Argument(help="Run id (or CORTEX-EXEC-<id>), see `cortex history`")],
    state_dir_opt: StateDir = None,
    as_json: AsJson = False,
    raw: Annotated[bool, typer.Option("--raw", help="The Markdown source, even on a terminal")] = False,
) -> None:
    """Show the report of a past execution: from this host's archives, else from the run index in Redis. On a
    terminal the Markdown is rendered; piped, it is printed as it is."""
    from cortex.runtime import runindex

    run_id = check_run_id(run_id.removeprefix("CORTEX-EXEC-"))
    sd = state_dir(state_dir_opt)
    path = sd / "archives" / f"CORTEX-EXEC-{run_id}" / ("report.json" if as_json else "report.md")
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        url = _from_redis(state_dir_opt)
        if not url:
            raise RunNotFound(f"no archived execution {run_id!r} in {sd / 'archives'}: see `cortex history`")
        field = "report_json" if as_json else "report_md"
        text = _indexed(url, lambda r: runindex.report(r, run_id, field))
    if as_json or raw or not console.is_terminal:
        sys.stdout.write(text)
        return
    from rich.markdown import Markdown

    console.print(Markdown(text))
