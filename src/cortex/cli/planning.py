"""``cortex plan``, ``init`` and ``schemas``: everything that happens before a run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cortex.cli.common import AsJson, StateDir, console, err, print_json, run_async, settings
from cortex.errors import InputError

if TYPE_CHECKING:
    from cortex.models import Plan
    from cortex.models.history import RunHistory
    from cortex.runtime.cache import PlanningCache

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


NoCache = Annotated[
    bool, typer.Option("--no-cache", help="Reuse no recorded result: every task runs (and the plan expects it)")
]
NoHistory = Annotated[
    bool, typer.Option("--no-history", help="Estimate with the roster's defaults only, learning nothing from past runs")
]


def past_runs(state_dir: Path | None = None) -> list[RunHistory]:
    """The runs plans learn from, newest first: Redis's record when CORTEX_REDIS_URL is set (cluster mode), else
    the state directory's. Unreadable records, or a Redis that does not answer, are said on stderr: the plan then
    uses what it could read (the roster's defaults at worst), and says so."""
    from cortex.errors import RedisUnavailable
    from cortex.runtime import history

    s = settings()
    if s.redis_url:
        from cortex.coord.connection import connect, redact_url

        url = s.redis_url

        async def read() -> tuple[list[RunHistory], list[str]]:
            redis = await connect(url, attempts=1)
            try:
                return await history.load_redis(redis)
            finally:
                await redis.aclose()

        try:
            runs, problems = run_async(read())
        except RedisUnavailable as exc:
            runs, problems = [], [f"past runs not read from {redact_url(url)} ({exc}): estimates are defaults"]
    else:
        runs, problems = history.load_local(state_dir or s.state_dir)
    for problem in problems:
        err.print(f"warning: {problem}", markup=False, highlight=False, soft_wrap=True)
    return runs


def build(
    goal: str,
    targets: Path,
    roster: Path | None,
    cluster: Path | None,
    *,
    learn: bool = True,
    reuse: bool = True,
    state_dir: Path | None = None,
) -> Plan:
    """Plan ``goal`` over ``targets`` with the given (or built-in) roster and cluster, learning estimates from past
    runs unless ``learn`` is False, and expecting recorded results to be reused unless ``reuse`` is False."""
    from cortex.planner import build_plan
    from cortex.roster import load_cluster, load_roster

    s = settings()
    fleet = None
    if targets.is_file():  # a fleet file: its remotes checked out into this host's workspace
        from cortex.toolset.remotes import remote_targets

        fleet = remote_targets(targets, (state_dir or s.state_dir) / "workspace")
    cache = recorded_results(state_dir) if reuse else None
    plan = build_plan(
        goal,
        targets,
        load_roster(roster),
        load_cluster(cluster),
        model_configured=s.model is not None,
        targets=fleet,
        history=past_runs(state_dir) if learn else [],
        cache=cache,
    )
    if cache is not None and cache.problem:
        err.print(f"warning: {cache.problem}", markup=False, highlight=False, soft_wrap=True)
    return plan


def recorded_results(state_dir: Path | None) -> PlanningCache:
    """The results recorded by past runs, as the planner looks them up (Redis's with CORTEX_REDIS_URL)."""
    from cortex.runtime.cache import PlanningCache, fingerprint

    s = settings()
    return PlanningCache(fingerprint(s.osv_path, s.osv_api), state_dir or s.state_dir, s.redis_url)


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
    no_history: NoHistory = False,
    no_cache: NoCache = False,
    state_dir: StateDir = None,
    as_json: AsJson = False,
) -> None:
    """Plan GOAL over the repositories under --targets (a directory, or a fleet file of git remotes, checked out
    into the state directory's workspace); writes plan.json and Markdown documents. Estimates are learned from
    past runs (the state directory's, or Redis's with CORTEX_REDIS_URL) unless --no-history."""
    from cortex.planner import write_plan

    if assist:
        p = _assisted(goal, targets, roster, cluster)
    else:
        p = build(goal, targets, roster, cluster, learn=not no_history, reuse=not no_cache, state_dir=state_dir)
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
                "learned_from_runs": p.history_runs,
                "expected_reuse": len(p.reuse),
                "previous": p.previous.model_dump() if p.previous else None,
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
        f"{p.budget.total:,} tokens allocated\n{_basis(p)}"
    )
    console.print(summary, markup=False, highlight=False)
    for note in p.notes:
        console.print(note, markup=False, highlight=False)
    for f in files:
        console.print(f"  {f}", markup=False, highlight=False)


def _basis(p: Plan) -> str:
    """One line on where the estimates come from, and how the last plan for this goal and fleet fared."""
    learned = sum(1 for t in p.tasks if t.estimate.basis != "default")
    line = (
        f"estimates: {learned} of {len(p.tasks)} tasks learned from {p.history_runs} past run(s), the rest defaults"
        if p.history_runs
        else "estimates: the roster's defaults (no past runs recorded)"
    )
    if p.expected:
        line += f"; {len(p.expected)} task(s) expected from past handoffs"
    if p.reuse:
        line += f"\n{len(p.reuse)} of {len(p.tasks)} tasks expected to reuse recorded results (--no-cache: run all)"
    if p.previous:
        prev = p.previous
        line += (
            f"\nprevious plan for this goal and fleet (run {prev.run_id}): makespan estimated "
            f"{prev.estimated_makespan_s:.1f} s, measured {prev.measured_makespan_s:.1f} s "
            f"(error {prev.makespan_error:+.0%})"
        )
    return line


def _assisted(goal: str, targets: Path, roster: Path | None, cluster: Path | None) -> Plan:
    from cortex.agents.planning import assisted_plan
    from cortex.roster import load_cluster, load_roster

    model = settings().model
    if not model:
        raise InputError("--assist", "planning assistance needs a model", hint="set CORTEX_MODEL=provider:model")
    return run_async(assisted_plan(goal, targets, load_roster(roster), load_cluster(cluster), model, dict(os.environ)))
