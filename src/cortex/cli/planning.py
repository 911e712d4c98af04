"""``cortex plan``, ``init`` and ``schemas``: everything that happens before a run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cortex.cli.common import AsJson, console, print_json, run_async, settings
from cortex.errors import InputError

if TYPE_CHECKING:
    from cortex.models import Plan

RosterOpt = Annotated[Path | None, typer.Option("--roster", help="Roster YAML (default: the built-in roster)")]
ClusterOpt = Annotated[Path | None, typer.Option("--cluster", help="Cluster YAML (default: the built-in cluster)")]


def schemas(out: Annotated[Path, typer.Option("--out", help="Directory to write into")] = Path("schemas")) -> None:
    """Export the JSON schemas of every file Cortex reads or writes (plan, roster, report, messages...)."""
    from cortex.models.schemas import write_schemas

    for path in write_schemas(out):
        console.print(f"wrote {path}", markup=False)


def init(
    directory: Annotated[Path, typer.Argument(help="Where to write them")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files")] = False,
) -> None:
    """Write editable copies of the default roster.yaml and cluster.yaml."""
    from cortex.roster import write_defaults

    for path in write_defaults(directory, force=force):
        console.print(f"wrote {path}", markup=False)


def build(goal: str, targets: Path, roster: Path | None, cluster: Path | None) -> Plan:
    """Plan ``goal`` over ``targets`` with the given (or built-in) roster and cluster."""
    from cortex.planner import build_plan
    from cortex.roster import load_cluster, load_roster

    s = settings()
    fleet = None
    if targets.is_file():  # a fleet file: its remotes checked out into this host's workspace
        from cortex.toolset.remotes import remote_targets

        fleet = remote_targets(targets, s.state_dir / "workspace")
    return build_plan(
        goal, targets, load_roster(roster), load_cluster(cluster), model_configured=s.model is not None, targets=fleet
    )


def plan(
    goal: str,
    targets: Annotated[
        Path, typer.Option("--targets", help="Directory of target repositories, or a fleet file (YAML) of git remotes")
    ],
    out: Annotated[Path, typer.Option("--out", help="Where to write plan.json and the documents")] = Path(
        "plans/latest"
    ),
    roster: RosterOpt = None,
    cluster: ClusterOpt = None,
    assist: Annotated[
        bool, typer.Option("--assist", help="Ask CORTEX_MODEL to propose tasks; the planner validates them")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Plan GOAL over the repositories under --targets (a directory, or a fleet file of git remotes, checked out
    into the state directory's workspace); writes plan.json and Markdown documents."""
    from cortex.planner import write_plan

    p = _assisted(goal, targets, roster, cluster) if assist else build(goal, targets, roster, cluster)
    files = write_plan(p, out)
    if as_json:
        print_json(
            {
                "plan_id": p.id,
                "goal": p.goal,
                "tasks": len(p.tasks),
                "masters": len(p.masters),
                "workers": len(p.workers),
                "routing": {"mode": p.routing.mode, "selected": p.routing.selected},
                "estimated_makespan_s": p.schedule.makespan_s,
                "lower_bound_s": p.schedule.lower_bound_s,
                "tokens_allocated": p.budget.total,
                "notes": p.notes,
                "files": [str(f) for f in files],
            }
        )
        return
    summary = (
        f"plan {p.id}: {len(p.tasks)} tasks, {len(p.masters)} masters, {len(p.workers)} workers, "
        f"routing {p.routing.mode} ({', '.join(p.routing.selected)})\n"
        f"estimated makespan {p.schedule.makespan_s:.1f} s (lower bound {p.schedule.lower_bound_s:.1f} s); "
        f"{p.budget.total:,} tokens allocated"
    )
    console.print(summary, markup=False, highlight=False)
    for note in p.notes:
        console.print(note, markup=False, highlight=False)
    for f in files:
        console.print(f"  {f}", markup=False, highlight=False)


def _assisted(goal: str, targets: Path, roster: Path | None, cluster: Path | None) -> Plan:
    from cortex.agents.planning import assisted_plan
    from cortex.roster import load_cluster, load_roster

    model = settings().model
    if not model:
        raise InputError("--assist", "planning assistance needs a model", hint="set CORTEX_MODEL=provider:model")
    return run_async(assisted_plan(goal, targets, load_roster(roster), load_cluster(cluster), model, dict(os.environ)))
