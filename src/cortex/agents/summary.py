"""The executive summary of a run, written by the coordinator's model from the report data only (the same
content as ``report.json``, without the per-task outputs and lineage that would only add length). Its calls go
through the ledger like any other; a summary that cannot be written leaves the reason instead, never fails the
run."""

from __future__ import annotations

import redis.asyncio as aredis
from pydantic import BaseModel
from pydantic_ai import Agent

from cortex.agents.budget import BudgetedModel, CallScope
from cortex.agents.providers import build_model, load_provider
from cortex.coord.keys import RunKeys
from cortex.errors import BudgetExceeded, CortexError
from cortex.models.report import ExecutiveSummary, Report
from cortex.models.roster import Master

SUMMARY_INSTRUCTIONS = """You write the executive summary of an orchestration run for a busy engineering
manager, from the report data you are given and nothing else. State the outcome, the most important findings
with their numbers as given, and what needs a human decision. Do not invent figures."""

LEAVE_OUT = {"tasks", "lineage", "processes", "nodes", "critical_path", "executive_summary", "paths"}


class SummaryText(BaseModel):
    """What the model writes: a headline, a few paragraphs, and the decisions it asks for."""

    headline: str
    paragraphs: list[str]
    decisions_needed: list[str]


async def write_summary(
    redis: aredis.Redis, keys: RunKeys, master: Master, spec: str, env: dict[str, str], report: Report
) -> ExecutiveSummary:
    """The summary with the model that wrote it, or why it was not written."""
    facts = report.model_dump_json(by_alias=True, exclude=LEAVE_OUT)
    try:
        await load_provider(master.model or spec)  # off the loop: the coordinator still renews its lease meanwhile
        model = build_model(master.model or spec, env, script_key="coordinator.summary")
        scope = CallScope(
            redis, keys, "coordinator.summary", master.name, None, False, master.max_output_tokens, master.degradation
        )
        agent = Agent(BudgetedModel(model, scope), output_type=SummaryText, instructions=SUMMARY_INSTRUCTIONS)
        result = await agent.run("Report data (JSON):\n" + facts)
    except (CortexError, BudgetExceeded) as exc:
        return ExecutiveSummary(not_written=str(exc))
    except Exception as exc:  # a provider error must not lose the run's report
        return ExecutiveSummary(not_written=f"{type(exc).__name__}: {exc}")
    return ExecutiveSummary(by=model.model_name, **result.output.model_dump(), model_calls=scope.calls)
