"""Aggregation: the coordinator's review worker merges every task's recorded output into per-master results."""

from __future__ import annotations

import json
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


@task_kind("coordinator.aggregate")
async def aggregate_task(ctx: TaskContext) -> Output:
    """Merge the run's task records and store the result in the run's aggregate hash."""
    raw = await ctx.redis.hgetall(ctx.keys.tasks)
    records = [json.loads(v) for k, v in sorted(raw.items()) if k != ctx.task.id]
    merged = merge(records)
    if merged:
        await ctx.redis.hset(ctx.keys.aggregate, mapping={m: json.dumps(v) for m, v in merged.items()})
    return {"masters": merged, "tasks_merged": len(records)}
