"""``cortex status``, ``history`` and ``report``: reading what runs left in the state directory."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer
from rich.table import Table

from cortex.cli.common import AsJson, StateDir, check_run_id, console, err, state_dir
from cortex.errors import InputError, RunNotFound

STATES = ("pending", "released", "running", "retrying", "succeeded", "failed", "skipped")


def progress_table(state: dict[str, Any]) -> Table:
    """The live table of a run: tasks per master by state, retries, reassignments, handoffs, workers alive."""
    table = Table(title=f"run {state['run_id']}: phase {state['phase']} ({state['phase_name']}), {state['status']}")
    for col in ("master", *STATES):
        table.add_column(col, justify="left" if col == "master" else "right", no_wrap=True, min_width=len(col))
    for master, counts in sorted(state["tasks"].items()):
        table.add_row(master, *(str(counts.get(c, 0)) for c in STATES))
    alive = "  ".join(f"{node} {n}" for node, n in state.get("workers_alive", {}).items())
    table.caption = (
        f"retries {state['retries']}  reassignments {state['reassignments']}  handoffs {state['handoffs']}\n"
        f"workers alive: {alive or 'none yet'}"
    )
    return table


def status(state_dir_opt: StateDir = None, as_json: AsJson = False) -> None:
    """Show the running or last execution."""
    from cortex.files import read_json
    from cortex.runtime.statefiles import CURRENT

    sd = state_dir(state_dir_opt)
    try:
        state = read_json(sd / CURRENT)
    except (OSError, ValueError) as exc:
        raise InputError(str(sd / CURRENT), f"not a readable state file ({exc})", hint="remove it") from None
    if state is None:
        raise RunNotFound(f"no execution recorded in {sd}: run `cortex run` first")
    if not isinstance(state, dict) or not {"status", "pid", "run_id"} <= state.keys():
        raise InputError(str(sd / CURRENT), "not a state file Cortex wrote", hint="remove it")
    if state["status"] == "running" and not _pid_alive(int(state["pid"])):
        state["status"] = "interrupted (coordinator no longer running)"
    if as_json:
        print(json.dumps(state, indent=2, sort_keys=True))
        return
    console.print(progress_table(state))
    if state.get("report"):
        console.print(f"report: {state['report'].get('report_md')}", markup=False, highlight=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def history(state_dir_opt: StateDir = None) -> None:
    """List past executions (archives)."""
    sd = state_dir(state_dir_opt)
    table = Table("run", "status", "duration", "tasks", "goal")
    for report_file in sorted((sd / "archives").glob("CORTEX-EXEC-*/report.json"), reverse=True):
        try:
            r = json.loads(report_file.read_text(encoding="utf-8"))
            row = [r["run_id"], r["status"], f"{r['duration_s']:.1f} s", str(len(r["tasks"])), r["goal"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:  # one damaged archive hides none of the others
            err.print(f"warning: {report_file}: not a readable report ({type(exc).__name__}); left out", markup=False)
            continue
        table.add_row(*(str(x) for x in row))
    console.print(table)


def report(
    run_id: Annotated[str, typer.Argument(help="Run id (or CORTEX-EXEC-<id>), see `cortex history`")],
    state_dir_opt: StateDir = None,
    as_json: AsJson = False,
) -> None:
    """Show the report of a past execution."""
    sd = state_dir(state_dir_opt)
    check_run_id(run_id.removeprefix("CORTEX-EXEC-"))
    folder = sd / "archives" / f"CORTEX-EXEC-{run_id.removeprefix('CORTEX-EXEC-')}"
    path = folder / ("report.json" if as_json else "report.md")
    if not path.is_file():
        raise RunNotFound(f"no archived execution {run_id!r} in {sd / 'archives'}: see `cortex history`")
    print(path.read_text(), end="")
