"""Agents for tasks: the master's model (its own, or ``CORTEX_MODEL``) wrapped in the budget, its instructions."""

from __future__ import annotations

from cortex.agents.budget import BudgetedModel, CallScope
from cortex.agents.providers import build_model, load_provider
from cortex.errors import ModelUnavailable, TaskFailed, TaskSkipped
from cortex.models import Plan
from cortex.models.roster import Master
from cortex.toolset.context import TaskContext

_plans: dict[str, Plan] = {}


async def master_of(ctx: TaskContext) -> Master:
    """The roster entry of the task's master (from the run's plan in Redis, read once per process)."""
    if ctx.run_id not in _plans:
        text = await ctx.redis.get(ctx.keys.plan)
        if text is None:
            raise TaskFailed(f"run {ctx.run_id} has no plan in Redis", retryable=False)
        _plans[ctx.run_id] = Plan.model_validate_json(text)
    plan = _plans[ctx.run_id]
    return next(m for m in plan.roster.masters if m.name == ctx.task.master)


async def budgeted_model(ctx: TaskContext) -> tuple[BudgetedModel, Master]:
    """The model this task's agent calls, inside the ledger; skipped when no model is configured."""
    master = await master_of(ctx)
    spec = master.model or ctx.services.model
    if not spec:
        raise TaskSkipped("no model configured (set CORTEX_MODEL, or a model for this master in the roster)")
    env = dict(ctx.services.env)
    for needed in (spec, master.degradation.model):
        if needed:
            await load_provider(needed)
    try:
        model = build_model(spec, env, script_key=ctx.task.kind)
        cheaper = (
            build_model(master.degradation.model, env, script_key=ctx.task.kind) if master.degradation.model else None
        )
    except ModelUnavailable as exc:
        raise TaskFailed(str(exc), retryable=False) from exc
    scope = CallScope(
        redis=ctx.redis,
        keys=ctx.keys,
        task_id=ctx.task.id,
        master=master.name,
        worker=ctx.worker_id,
        optional=ctx.task.optional,
        max_output_tokens=master.max_output_tokens,
        policy=master.degradation,
        cheaper=cheaper,
    )
    return BudgetedModel(model, scope), master


def instructions(master: Master, task_instructions: str, worker_prompt: str = "") -> str:
    """The master's system prompt, the worker type's, then the task's own instructions (roster data first)."""
    parts = (master.system_prompt.strip(), worker_prompt.strip(), task_instructions.strip())
    return "\n\n".join(p for p in parts if p)


async def worker_prompt(ctx: TaskContext) -> str:
    """The system prompt of the task's worker type in the roster."""
    await master_of(ctx)
    plan = _plans[ctx.run_id]
    return next((w.system_prompt for w in plan.roster.worker_types if w.name == ctx.task.worker_type), "")
