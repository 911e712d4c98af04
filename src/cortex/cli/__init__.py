"""The ``cortex`` command: parses, calls the library, renders with rich.

Each module holds a family of commands (planning, running, views, processes, catalog, chaos); this one assembles
them and owns the single error path (``main``). Heavy imports happen inside commands, so that the processes a
node agent starts come up quickly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Annotated

import typer

from cortex.cli import live, planning, processes, running, views
from cortex.cli.catalog import catalog_app
from cortex.cli.chaos import chaos
from cortex.cli.common import example, exit_for
from cortex.cli.deploy import deploy_app
from cortex.cli.osv import osv_app
from cortex.errors import exit_code_table

HELP = "Cortex: plan-first multi-agent orchestration."
EPILOG = "\b\nExit codes:\n" + exit_code_table()  # \b: click prints the block as it is

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    help=HELP,
    epilog=EPILOG,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXAMPLES: dict[str, tuple[str, ...]] = {
    "plan": ('plan "Run the full catalog toolset across the fleet" --targets examples/fleet --out plans/full',),
    "init": ("init config/",),
    "schemas": ("schemas --out schemas",),
    "run": (
        "run plans/full/plan.json",
        'run "audit security across the fleet" --targets fleet.yaml --nodes cluster --json',
    ),
    "demo": ("demo --metrics-port 9100",),
    "takeover": ("takeover 20261201-101500-ab12cd --wait 30",),
    "status": ("status", "status 20261201-101500-ab12cd --json"),
    "history": ("history --json",),
    "report": ("report 20261201-101500-ab12cd", "report 20261201-101500-ab12cd --json | python -m json.tool"),
    "watch": ("watch --json",),
    "drain": ("drain 20261201-101500-ab12cd scan-worker-01",),
    "resume": ("resume 20261201-101500-ab12cd scan-worker-01",),
    "cancel": ("cancel 20261201-101500-ab12cd testing.run-tests:payments-api",),
    "worker": ("worker --run 20261201-101500-ab12cd --id scan-worker-01 --type scan",),
    "master": ("master --run 20261201-101500-ab12cd --name security",),
    "node": ("node k3s-worker01 --slots 8 --labels zone=a --metrics-host 0.0.0.0 --metrics-port 9101",),
    "chaos": ("chaos --faults kill-worker,kill-node --tasks 200",),
    "ui": ("ui --port 8200", "ui --host 0.0.0.0 --config catalog.yaml"),
}
COMMANDS: dict[str, Callable[..., None]] = {
    "plan": planning.plan,
    "init": planning.init,
    "schemas": planning.schemas,
    "run": running.run,
    "demo": running.demo,
    "takeover": running.takeover,
    "status": views.status,
    "history": views.history,
    "report": views.report,
    "watch": live.watch,
    "drain": live.drain,
    "resume": live.resume,
    "cancel": live.cancel,
    "worker": processes.worker,
    "master": processes.master,
    "node": processes.node,
    "chaos": chaos,
    "ui": processes.ui,
}
for _name, _fn in COMMANDS.items():
    app.command(name=_name, epilog=example(*(f"cortex {e}" for e in EXAMPLES[_name])))(_fn)
app.add_typer(catalog_app, name="catalog")
app.add_typer(osv_app, name="osv")
app.add_typer(deploy_app, name="deploy")


def _version(value: bool) -> None:
    if value:
        from cortex import __version__

        print(f"cortex {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit")
    ] = False,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help="debug, info, warning or error: the structured logs' level (default info)"),
    ] = None,
) -> None:
    """Cortex: plan-first multi-agent orchestration."""
    if log_level is not None:
        from cortex.errors import InputError
        from cortex.observability.logs import LEVELS

        if log_level.lower() not in LEVELS:
            raise InputError("--log-level", f"{log_level!r} is not a level", hint=f"one of {', '.join(LEVELS)}")
        os.environ["CORTEX_LOG_LEVEL"] = log_level.lower()  # every process the command starts inherits it


def main() -> None:
    """Console-script entry point: every command's errors end here, printed literally, with their exit code."""
    try:
        app()
    except Exception as exc:  # the one error path: CortexError by its code, anything else as a bug (70)
        sys.exit(exit_for(exc))
