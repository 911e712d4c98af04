"""Aggregation: the coordinator's review worker merges every task's recorded output into per-master results."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from cortex.toolset.registry import Output, TaskContext, task_kind


def merge(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per master: task outcomes, and the sums of what its tools reported (only what ran counts)."""
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        master = rec["master"]
        agg = out.setdefault(
            master,
            {
                "outcomes": Counter(),
                "assets": Counter(),
                "findings": Counter(),
                "tests": Counter(),
                "written": Counter(),
                "code_lines": 0,
            },
        )
        agg["outcomes"][rec["state"]] += 1
        result = rec.get("output") or {}
        if rec["state"] != "succeeded":
            continue
        agg["assets"].update(result.get("assets", {}))
        if rec["kind"] == "development.bump-pin":
            agg["written"]["fix_branches"] += 1
            agg["written"]["needing_human_review"] += int(bool(result.get("needs_human_review")))
            agg.setdefault("branches", []).append(f"{result['repository']}:{result['branch']}")
        if rec["kind"] == "cicd.workflows":
            agg["written"]["workflow_patches"] += len(result.get("patches", []))
            agg["written"]["workflow_improvements"] += int(result.get("improvements", 0))
        if rec["kind"] == "monitoring.dashboards":
            agg["written"].update({"dashboards": result["dashboards"], "alerts": result["alerts"]})
            agg.setdefault("files", []).extend(result["files"])
        for f in result.get("findings", []):
            agg["findings"][f.get("severity", "unknown")] += 1
        if rec["kind"] in (
            "testing.pytest",
            "testing.npm",
        ):  # other tools use some of the same words ("errors") for other things
            for key in ("tests", "passed", "failures", "errors", "skipped"):
                agg["tests"][key] += int(result.get(key, 0))
            agg["tests"]["failing_after_reruns"] += len(result.get("failing", []))
            agg["tests"]["flaky"] += len(result.get("flaky", []))
            if result.get("coverage_percent") is not None:
                agg.setdefault("coverage", {})[str(result.get("repository"))] = result["coverage_percent"]
        if rec["kind"] == "inventory.metrics":
            agg["code_lines"] += int(result.get("code_lines", 0))
    return {m: {k: dict(v) if isinstance(v, Counter) else v for k, v in a.items()} for m, a in sorted(out.items())}


def open_findings(records: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Findings per target repository, by severity, from the tasks that succeeded."""
    out: dict[str, dict[str, int]] = {}
    for rec in records:
        if rec["state"] != "succeeded" or not rec.get("target"):
            continue
        for f in (rec.get("output") or {}).get("findings", []):
            counts = out.setdefault(rec["target"], {})
            sev = str(f.get("severity", "unknown"))
            counts[sev] = counts.get(sev, 0) + 1
    return out


async def record_health(ctx: TaskContext, findings: dict[str, dict[str, int]]) -> dict[str, str]:
    """Put each repository's open findings into its catalog health: degraded when any is high or critical."""
    from cortex.models.assets import Health, HealthStatus

    client = ctx.extra.get("catalog")
    if client is None:
        return {}
    done = {}
    for repo, counts in sorted(findings.items()):
        current = (await client.get(f"repo:{repo}")).value
        if current is None:
            continue
        bad = counts.get("critical", 0) + counts.get("high", 0)
        status = HealthStatus.degraded if bad else current.health.status
        signals = {**current.health.signals, "open_findings": counts, "findings_run": ctx.run_id}
        health = Health(status=status, signals=signals, checked_at=time.time())
        done[repo] = await client.upsert(current.model_copy(update={"health": health}))
    return done


@task_kind("coordinator.aggregate")
async def aggregate_task(ctx: TaskContext) -> Output:
    """Merge the run's task records, store the result in the run's aggregate hash, and record each repository's
    open findings in the catalog's health signals when the run has a catalog."""
    raw = await ctx.redis.hgetall(ctx.keys.tasks)
    records = [json.loads(v) for k, v in sorted(raw.items()) if k != ctx.task.id]
    merged = merge(records)
    if merged:
        await ctx.redis.hset(ctx.keys.aggregate, mapping={m: json.dumps(v) for m, v in merged.items()})
    health = await record_health(ctx, open_findings(records))
    return {"masters": merged, "tasks_merged": len(records), "catalog_health": health}
