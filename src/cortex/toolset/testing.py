"""Testing tools: a repository's pytest suite in its own environment, and a Node package's ``npm test``.

Failing tests are handed to the development master (a run-time handoff) as a fix request.
"""

from __future__ import annotations

from typing import Any

from cortex.toolset.context import Output, TaskContext, task_kind
from cortex.toolset.nodesuite import run_node_suite
from cortex.toolset.suites import describe_env, rerun_failures, run_suite, target_env
from cortex.toolset.workdirs import copy_target, scratch


@task_kind("testing.pytest")
async def pytest_task(ctx: TaskContext) -> Output:
    """Run the target's tests in its own environment (its declared dependencies, built or reused) under coverage;
    re-run failures ``params.reruns`` times (default 2): a test that passes on a re-run is flaky, one that never
    does is failing. Fails when the environment cannot be built or the suite cannot run at all."""
    root = ctx.require_target()
    reruns = int(ctx.task.params.get("reruns", 2))
    budget = max(ctx.task.timeout_s - 5, 1)
    env, spec = await target_env(ctx, root, timeout_s=float(ctx.task.params.get("install_timeout_s", budget)))
    with scratch(ctx.services.state_dir, ctx.run_id, ctx.task.id) as tmp:
        # the suite may write into its tree: never into the target (the copy keeps its name, which messages show)
        tree = copy_target(root, tmp / "tree" / root.name)
        run = await run_suite(env, tree, tmp, timeout_s=budget)
        await rerun_failures(env, tree, tmp, run, reruns, budget)
    result: dict[str, Any] = {
        **run.counts,
        "repository": root.name,
        "status": run.status,
        "exit_code": run.code,
        "coverage_percent": run.coverage_percent,
        "failing": run.failing,
        "flaky": run.flaky,
        "reruns": reruns,
        "environment": describe_env(env, spec),
    }
    if run.failing:
        result["handoffs"] = [
            {
                "to": "development",
                "kind": "development.fix-tests",
                "worker_type": "implementation",
                "requires_model": True,
                "estimate_tokens": 6000,
                "params": {"failing": run.failing},
                "reason": f"{len(run.failing)} failing test(s) in {root.name}",
            }
        ]
    return result


@task_kind("testing.npm")
async def npm_test_task(ctx: TaskContext) -> Output:
    """The package's own test script, in a copy of the package with its locked dependencies installed
    (``npm ci --ignore-scripts``), when npm and node are installed; skipped otherwise, since Cortex itself needs
    only Python. Results come from node's JUnit reporter."""
    root = ctx.require_target()
    with scratch(ctx.services.state_dir, ctx.run_id, ctx.task.id) as tmp:
        run = await run_node_suite(root, tmp, max(ctx.task.timeout_s - 5, 1))
    status = "no tests" if run.counts["tests"] == 0 else "passed" if not run.counts["failing"] else "failed"
    return {
        **run.counts,
        "repository": root.name,
        "status": status,
        "exit_code": run.code,
        "runner": "npm test (node --test)",
        "installed": run.installed,
        "flaky": [],
    }
