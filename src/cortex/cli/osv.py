"""``cortex osv import`` and ``cortex osv info``: a local vulnerability database from osv.dev's downloads, and what
a database holds."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from cortex.cli.common import AsJson, StateDir, console, example, state_dir
from cortex.errors import InputError

osv_app = typer.Typer(no_args_is_help=True, help="The OSV vulnerability database the dependency audit reads.")

IntoOpt = Annotated[
    Path | None, typer.Option("--into", help="Database directory (default: <state-dir>/osv, which audits use)")
]


def _database(into: Path | None, state_dir_opt: Path | None) -> Path:
    return into or state_dir(state_dir_opt) / "osv"


@osv_app.command(name="import", epilog=example("cortex osv import PyPI/all.zip npm/all.zip"))
def import_(
    sources: Annotated[list[Path], typer.Argument(help="osv.dev zips (<Ecosystem>/all.zip) or directories")],
    into: IntoOpt = None,
    state_dir_opt: StateDir = None,
    as_json: AsJson = False,
) -> None:
    """Import OSV records into a local database; again later to update it (only changed records are written)."""
    from cortex.toolset.osvimport import import_osv

    for source in sources:
        if not source.exists():
            raise InputError(str(source), "not found", hint="download e.g. PyPI/all.zip from osv.dev first")
        if source.is_file() and source.suffix != ".zip":
            raise InputError(str(source), "not a zip or a directory of OSV records")
    target = _database(into, state_dir_opt)
    result = import_osv(sources, target)
    if as_json:
        print(json.dumps({"database": str(target), **dataclasses.asdict(result)}, indent=2, sort_keys=True))
        return
    console.print(
        f"{target}: read {result.read}, added {result.added}, updated {result.updated}, unchanged "
        f"{result.unchanged}, withdrawn {result.withdrawn}; now "
        + ", ".join(f"{k} {v}" for k, v in result.ecosystems.items()),
        markup=False,
        highlight=False,
    )


@osv_app.command(epilog=example("cortex osv info --json"))
def info(
    database: Annotated[
        Path | None, typer.Argument(help="A database, directory or zip (default: what audits use)")
    ] = None,
    state_dir_opt: StateDir = None,
    as_json: AsJson = False,
) -> None:
    """What a vulnerability database holds: records per ecosystem and how current it is."""
    from cortex.toolset.osvdb import load_osv
    from cortex.toolset.security import default_database

    path = database or default_database(state_dir(state_dir_opt), None)
    if not path.exists():
        raise InputError(str(path), "not found")
    described = load_osv(path).describe()
    if as_json:
        print(described.model_dump_json(indent=2))
        return
    console.print(f"{described.source}: {described.records} records", markup=False, highlight=False)
    for eco, n in described.ecosystems.items():
        console.print(f"  {eco}: {n}", markup=False, highlight=False)
    console.print(f"newest record modified: {described.newest_modified or 'unknown'}", markup=False)
    if described.bundled_subset:
        console.print("this is the small subset bundled for the demo fleet: import osv.dev's data for real fleets")
