"""Aggregation: the coordinator's review worker merges every task's recorded output into per-master results."""

from __future__ import annotations

import time
from collections import Counter

from cortex.models.report import MasterSummary, StoredTaskRecord, TaskReport
from cortex.toolset.context import Output, TaskContext, task_kind
from cortex.toolset.findings import by_repository


def _num(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _summarise(agg: MasterSummary, rec: TaskReport) -> None:
    """Add what one task that succeeded reported to its master's summary."""
    result = rec.output
    assets = result.get("assets", {})
    for k, v in assets.items() if isinstance(assets, dict) else []:
        agg.assets[k] = agg.assets.get(k, 0) + _num(v)
    written = Counter(agg.written)
    if rec.kind == "development.bump-pin" and result.get("commit"):
        written["fix_branches"] += 1
        written["needing_human_review"] += int(bool(result.get("needs_human_review")))
        agg.branches.append(f"{result['repository']}:{result['branch']}")
    elif rec.kind == "development.bump-pin":
        written["fixes_refused"] += 1
    if rec.kind == "cicd.workflows":
        patches = result.get("patches", [])
        written["workflow_patches"] += len(patches) if isinstance(patches, list) else 0
        written["workflow_improvements"] += _num(result.get("improvements", 0))
    if rec.kind == "monitoring.dashboards":
        written.update({"dashboards": _num(result["dashboards"]), "alerts": _num(result["alerts"])})
        files = result["files"]
        if isinstance(files, list):
            agg.files.extend(str(f) for f in files)
    agg.written = dict(written)
    if rec.kind in ("testing.pytest", "testing.npm"):  # other tools use some of the same words ("errors") otherwise
        tests = Counter(agg.tests)
        for key in ("tests", "passed", "failures", "errors", "skipped"):
            tests[key] += _num(result.get(key, 0))
        for key, name in (("failing", "failing_after_reruns"), ("flaky", "flaky")):
            items = result.get(key, [])
            tests[name] += len(items) if isinstance(items, list) else 0
        agg.tests = dict(tests)
        coverage = result.get("coverage_percent")
        if isinstance(coverage, int | float):
            agg.coverage[str(result.get("repository"))] = float(coverage)
    if rec.kind == "inventory.metrics":
        agg.code_lines += _num(result.get("code_lines", 0))


def merge(records: list[TaskReport]) -> dict[str, MasterSummary]:
    """Per master: task outcomes, and the sums of what its tools reported (only what ran counts). Findings are
    counted once each, by severity, under the master of the task that found them: a problem two tools report is
    one finding."""
    out: dict[str, MasterSummary] = {}
    master_of = {rec.id: rec.master for rec in records}
    for rec in records:
        agg = out.setdefault(rec.master, MasterSummary())
        agg.outcomes[rec.state.value] = agg.outcomes.get(rec.state.value, 0) + 1
        if rec.state.value == "succeeded":
            _summarise(agg, rec)
    for found in by_repository(records).values():
        for f in found:
            if f.kind == "test":
                continue  # tests are counted as tests
            agg = out[master_of[f.tasks[0]]]
            agg.findings[f.severity] = agg.findings.get(f.severity, 0) + 1
    for agg in out.values():
        agg.outcomes = dict(sorted(agg.outcomes.items()))
        agg.assets, agg.findings = dict(sorted(agg.assets.items())), dict(sorted(agg.findings.items()))
        agg.tests, agg.written = dict(sorted(agg.tests.items())), dict(sorted(agg.written.items()))
    return dict(sorted(out.items()))


def open_findings(records: list[TaskReport]) -> dict[str, dict[str, int]]:
    """Findings per target repository, by severity, from the tasks that succeeded (each problem once)."""
    out: dict[str, dict[str, int]] = {}
    for repo, found in by_repository(records).items():
        for f in found:
            if f.kind != "test":
                counts = out.setdefault(repo, {})
                counts[f.severity] = counts.get(f.severity, 0) + 1
    return out


async def record_health(ctx: TaskContext, findings: dict[str, dict[str, int]]) -> dict[str, str]:
    """Put each repository's open findings into its catalog health: degraded when any is high or critical."""
    from cortex.models.assets import Health, HealthStatus

    client = ctx.services.catalog
    if client is None:
        return {}
    done: dict[str, str] = {}
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
    records: list[TaskReport] = [
        StoredTaskRecord.model_validate_json(v) for k, v in sorted(raw.items()) if k != ctx.task.id
    ]
    merged = merge(records)
    if merged:
        await ctx.redis.hset(ctx.keys.aggregate, mapping={m: v.model_dump_json() for m, v in merged.items()})
    health = await record_health(ctx, open_findings(records))
    masters = {m: v.model_dump(mode="json") for m, v in merged.items()}
    return {"masters": masters, "tasks_merged": len(records), "catalog_health": health}
