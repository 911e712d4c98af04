"""Phases 4 and 5 as the coordinator runs them: the per-master results, and what is read from Redis once every
process has stopped (ledger, node usage, model calls, degradations) for the report."""

from __future__ import annotations

import asyncio
import importlib
import os
from pathlib import Path

import redis.asyncio as aredis

from cortex.coord.keys import RunKeys
from cortex.coord.ledger import Ledger
from cortex.models.report import Degradation, MasterSummary, NodeUsage, Report, TokenSpend
from cortex.models.state import LedgerAccount
from cortex.runtime.report import EndFigures, model_usage
from cortex.runtime.runstate import RunState


async def aggregate(redis: aredis.Redis, keys: RunKeys, state: RunState) -> dict[str, MasterSummary]:
    """Phase 4: per-master results from the aggregation task when it ran, else merged here from the records."""
    from cortex.toolset.aggregate import merge

    raw = await redis.hgetall(keys.aggregate)
    if raw:
        return {m: MasterSummary.model_validate_json(v) for m, v in sorted(raw.items())}
    return merge([r.to_report() for r in state.graph.records.values()])


async def accounts(ledger: Ledger, state: RunState) -> dict[str, LedgerAccount]:
    """Every master's ledger account and the run's."""
    tokens = {line.master: await ledger.account(f"master:{line.master}") for line in state.plan.budget.lines}
    tokens["run"] = await ledger.account("run")
    return tokens


async def end_figures(
    redis: aredis.Redis, keys: RunKeys, state: RunState, prices: dict[str, dict[str, float]]
) -> EndFigures:
    """What the report measures once every process has stopped. Reservations still held belong to processes that
    died holding them; none can commit any more, so they are released first."""
    ledger = Ledger(redis, keys)
    orphans = await ledger.release_orphans()
    executions = {k: int(v) for k, v in (await redis.hgetall(keys.executions)).items()}
    nodes = {k: NodeUsage.model_validate_json(v) for k, v in (await redis.hgetall(keys.nodes)).items()}
    return EndFigures(
        tokens=await accounts(ledger, state),
        nodes=nodes,
        models=model_usage(await redis.hgetall(keys.model_usage), prices),
        degradations=[Degradation.model_validate_json(d) for d in await redis.lrange(keys.degradations, 0, -1)],
        token_spend=[TokenSpend.model_validate_json(t) for t in await redis.lrange(keys.token_log, 0, -1)],
        orphan_reservations=orphans,
        executions=executions,
        lost_fixes=await asyncio.to_thread(lost_fixes, state),
    )


def lost_fixes(state: RunState) -> list[str]:
    """Every fix a task reported (a branch and a commit in its output) that its branch does not hold: on the
    remote it was pushed to, or in the checkout that keeps it when that is on this host (a branch kept on another
    node is reported with where it is, ``kept_at``)."""
    from cortex.errors import RemoteError
    from cortex.toolset.remotes import remote_head
    from cortex.toolset.workdirs import lost_fix

    targets = {t.name: t for t in state.plan.targets}
    lost = []
    for rec in state.graph.records.values():
        branch, commit = rec.output.get("branch"), rec.output.get("commit")
        target = targets.get(rec.task.target or "")
        if rec.state.value != "succeeded" or not isinstance(branch, str) or not isinstance(commit, str) or not target:
            continue
        why = None
        if target.remote is not None and rec.output.get("pushed"):
            try:
                head = remote_head(target.remote, branch)
            except RemoteError as exc:
                head, why = None, f"not verifiable on the remote: {exc}"
            if why is None and head != commit:
                why = f"branch {branch} on the remote is at {head or 'nothing'}, not {commit}"
        else:
            kept = str(rec.output.get("kept_at") or "").partition(":")[2]
            root = Path(kept) if kept else Path(target.path)
            why = lost_fix(root, branch, commit) if root.is_dir() else None
        if why:
            lost.append(f"{rec.task.id}: {why}")
    return lost


async def summarise(
    redis: aredis.Redis, keys: RunKeys, state: RunState, report: Report, model: str, prices: dict[str, dict[str, float]]
) -> None:
    """The executive summary by the fallback master's model, from the report's data; its tokens join the
    report's figures."""
    # imported in a thread first: pydantic-ai takes seconds to import, and the coordinator's loop renews its lease
    await asyncio.to_thread(importlib.import_module, "cortex.agents.summary")
    from cortex.agents.summary import write_summary

    name = state.plan.roster.routing.fallback
    master = next(m for m in state.plan.roster.masters if m.name == name)
    report.executive_summary = await write_summary(redis, keys, master, model, dict(os.environ), report)
    report.tokens = await accounts(Ledger(redis, keys), state)
    report.token_spend = [TokenSpend.model_validate_json(t) for t in await redis.lrange(keys.token_log, 0, -1)]
    report.models = model_usage(await redis.hgetall(keys.model_usage), prices)
