"""Planning assistance with a model (``cortex plan --assist``): the model proposes, the deterministic planner
disposes (``planner/assist.py``). The call is budgeted from the fallback master's base budget in this process,
since no run, and so no Redis ledger, exists yet."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic_ai import Agent

from cortex.agents.budget import BudgetedModel, CallScope, LocalLedger
from cortex.agents.providers import build_model
from cortex.coord.keys import RunKeys
from cortex.errors import BudgetExceeded, CortexError, InputError
from cortex.models import Cluster, Plan, Roster
from cortex.planner import MAX_GOAL_CHARS, assemble_plan
from cortex.planner.assist import ASSIST_INSTRUCTIONS, PlanProposal, prompt, review
from cortex.planner.decompose import decompose
from cortex.planner.routing import route
from cortex.repo import discover_targets


async def assisted_plan(
    goal: str, targets_dir: Path, roster: Roster, cluster: Cluster, spec: str, env: Mapping[str, str]
) -> Plan:
    """The deterministic plan for ``goal``, extended by the model's valid proposals; the plan's notes and
    ``assistance`` say what was accepted, added and rejected, or why the model's answer was not used."""
    goal = " ".join(goal.split())
    if not goal or len(goal) > MAX_GOAL_CHARS:
        raise InputError("goal", f"the goal must be 1 to {MAX_GOAL_CHARS} characters")
    targets = discover_targets(targets_dir)
    routing = route(goal, roster)
    planned = decompose(roster, routing.selected, targets)
    master = next(m for m in roster.masters if m.name == roster.routing.fallback)
    model = build_model(master.model or spec, env, script_key="planner.assist")
    ledger = LocalLedger({"run": master.base_budget, f"master:{master.name}": master.base_budget})
    scope = CallScope(
        None,
        RunKeys("planning"),
        "planner.assist",
        master.name,
        None,
        False,
        master.max_output_tokens,
        master.degradation,
    )
    agent = Agent(BudgetedModel(model, scope, ledger), output_type=PlanProposal, instructions=ASSIST_INSTRUCTIONS)
    assistance: dict[str, object] = {"model": model.model_name}
    try:
        proposal = (await agent.run(prompt(goal, roster, targets))).output
    except (BudgetExceeded, CortexError) as exc:
        assistance["not_used"] = str(exc)
        tasks = planned
    except Exception as exc:  # a provider failure leaves the deterministic plan, which is complete on its own
        assistance["not_used"] = f"{type(exc).__name__}: {exc}"
        tasks = planned
    else:
        tasks, result = review(proposal, roster, targets, planned)
        assistance.update(accepted=result.accepted, rejected=result.rejected, added=result.added)
    assistance["tokens"] = (await ledger.account("run")).model_dump()
    plan = assemble_plan(goal, targets, roster, cluster, routing, tasks, model_configured=True)
    note = (
        f"Planning assistance by {model.model_name}: not used ({assistance['not_used']})."
        if "not_used" in assistance
        else f"Planning assistance by {model.model_name}: {len(assistance['accepted'])} proposal(s) accepted, "  # type: ignore[arg-type]
        f"{len(assistance['added'])} task(s) added, {len(assistance['rejected'])} rejected."  # type: ignore[arg-type]
    )
    return plan.model_copy(update={"notes": [*plan.notes, note], "assistance": assistance}).sealed()
