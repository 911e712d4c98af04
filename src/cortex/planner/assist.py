"""Planning assistance: a model proposes tasks for the goal from the toolset catalogue (the roster's playbook
entries); the deterministic planner validates each proposal against the catalogue and the targets, repairs what
it can (a proposal brings the tasks it depends on), rejects the rest with the reason, and stays the authority on
budgets, placement and schedule. Without a usable answer the plan is the deterministic one, and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from cortex.models import Roster
from cortex.models.plan import Target
from cortex.models.task import Task
from cortex.planner.decompose import decompose

ASSIST_INSTRUCTIONS = """You help plan work over a fleet of repositories. From the catalogue of tasks you are
given, choose the ones the goal needs, each for one target (or for every matching target when you leave the
target out). Use only task names and targets from the catalogue, and say why for each."""


class ProposedTask(BaseModel):
    """One proposal: a catalogue entry, optionally for one target."""

    task: str = Field(description="catalogue entry, master.name")
    target: str | None = None
    reason: str = ""


class PlanProposal(BaseModel):
    """The model's answer."""

    tasks: list[ProposedTask]


@dataclass
class Review:
    """What the planner made of a proposal."""

    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    added: list[str] = field(default_factory=list)


def catalogue(roster: Roster, targets: list[Target]) -> list[dict[str, Any]]:
    """Every playbook entry with the targets it can run on (the model's menu)."""
    out = []
    for m in roster.masters:
        for p in m.playbook:
            fits = [t.name for t in targets if p.when is None or p.when in t.traits]
            entry = {"task": f"{m.name}.{p.name}", "kind": p.kind, "per": p.per, "needs_model": p.requires_model}
            out.append({**entry, "targets": fits if p.per == "target" else []})
    return out


def review(
    proposal: PlanProposal, roster: Roster, targets: list[Target], planned: list[Task]
) -> tuple[list[Task], Review]:
    """``planned`` plus the accepted proposals and what they depend on; what was accepted, added and rejected."""
    menu = {c["task"]: c for c in catalogue(roster, targets)}
    names = {t.name for t in targets}
    full = {t.id: t for t in decompose(roster, [m.name for m in roster.masters], targets)}
    keep = {t.id for t in planned}
    result = Review()
    wanted: set[str] = set()
    for item in proposal.tasks:
        entry = menu.get(item.task)
        why = _refusal(item, entry, names)
        if why:
            result.rejected.append({**item.model_dump(), "why": why})
            continue
        ids = {i for i, t in full.items() if i.split(":")[0] == item.task and item.target in (None, t.target)}
        wanted |= ids
        result.accepted.append({**item.model_dump(), "tasks": sorted(ids)})
    stack = sorted(wanted - keep)
    while stack:  # a proposed task brings what it depends on (not "*": that means whatever else is planned)
        task_id = stack.pop()
        if task_id in keep:
            continue
        keep.add(task_id)
        result.added.append(task_id)
        template = next(p for m in roster.masters for p in m.playbook if f"{m.name}.{p.name}" == task_id.split(":")[0])
        if "*" not in template.after:
            stack.extend(d for d in full[task_id].depends_on if d not in keep)
    tasks = [
        t.model_copy(update={"depends_on": [d for d in t.depends_on if d in keep]})
        for i, t in full.items()
        if i in keep
    ]
    result.added.sort()
    return sorted(tasks, key=lambda t: t.id), result


def _refusal(item: ProposedTask, entry: dict[str, Any] | None, targets: set[str]) -> str:
    if entry is None:
        return "not in the catalogue"
    if item.target is not None and item.target not in targets:
        return f"no target named {item.target!r}"
    if entry["per"] == "run" and item.target is not None:
        return "runs once per run, not per target"
    if item.target is not None and item.target not in entry["targets"]:
        return f"does not apply to {item.target} (its traits do not match)"
    if entry["per"] == "target" and not entry["targets"]:
        return "no target it applies to"
    return ""


def prompt(goal: str, roster: Roster, targets: list[Target]) -> str:
    """What the model is asked: the goal, the targets with their traits, the catalogue."""
    facts = {
        "goal": goal,
        "targets": [{"name": t.name, "traits": t.traits} for t in targets],
        "catalogue": catalogue(roster, targets),
    }
    return json.dumps(facts, sort_keys=True)
