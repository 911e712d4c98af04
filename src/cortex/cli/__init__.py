"""The ``cortex`` command: parses, calls the library, renders with rich.

Each module holds a family of commands (planning, running, views, processes, catalog, chaos); this one assembles
them and owns the single error path (``main``). Heavy imports happen inside commands, so that the processes a
node agent starts come up quickly.
"""

from __future__ import annotations

import sys

import typer

from cortex.cli import live, planning, processes, running, views
from cortex.cli.catalog import catalog_app
from cortex.cli.chaos import chaos
from cortex.cli.common import exit_for
from cortex.cli.deploy import deploy_app
from cortex.cli.osv import osv_app
from cortex.errors import exit_code_table

HELP = "Cortex: plan-first multi-agent orchestration."
EPILOG = "\b\nExit codes:\n" + exit_code_table()  # \b: click prints the block as it is

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help=HELP,
    epilog=EPILOG,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

app.command()(planning.plan)
app.command()(planning.init)
app.command()(planning.schemas)
app.command()(running.run)
app.command()(running.demo)
app.command()(running.takeover)
app.command()(views.status)
app.command()(views.history)
app.command()(views.report)
app.command()(live.watch)
app.command()(live.drain)
app.command()(live.resume)
app.command()(live.cancel)
app.command()(processes.worker)
app.command()(processes.master)
app.command()(processes.node)
app.command(name="chaos")(chaos)
app.add_typer(catalog_app, name="catalog")
app.add_typer(osv_app, name="osv")
app.add_typer(deploy_app, name="deploy")


def main() -> None:
    """Console-script entry point: every command's errors end here, printed literally, with their exit code."""
    try:
        app()
    except Exception as exc:  # the one error path: CortexError by its code, anything else as a bug (70)
        sys.exit(exit_for(exc))
