"""The exact results the demo's tools report for examples/fleet, checked the same way for every install that runs
the demo (``test_demo``: the library in this checkout; ``test_wheel_install``: a wheel installed without extras)."""

from __future__ import annotations

import shutil
from typing import Any


def check_tool_results(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Assert the findings, test results, coverage and workflow findings of a demo report over examples/fleet;
    return every task's output by task id."""
    outputs = {t["id"]: t["output"] for t in report["tasks"]}

    def found(prefix: str) -> set[tuple[str, str, str]]:
        return {
            (task.split(":")[1], f["tool"], f["id"])
            for task, out in outputs.items()
            if task.startswith(prefix)
            for f in out.get("findings", [])
        }

    assert found("security.dependency-audit") == {
        ("payments-api", "osv", "PYSEC-2018-28"),
        ("payments-api", "osv", "PYSEC-2023-74"),
        ("payments-api", "osv", "PYSEC-2021-142"),
        ("inventory-service", "osv", "PYSEC-2019-217"),
        ("inventory-service", "osv", "PYSEC-2021-66"),
        ("auth-lib", "osv", "PYSEC-2022-202"),
        ("web-frontend", "osv", "GHSA-p6mc-m468-83gw"),
        ("web-frontend", "osv", "GHSA-35jh-r3h4-6jhm"),
        ("web-frontend", "osv", "GHSA-xvch-5gv4-984h"),
        ("web-frontend", "osv", "GHSA-rv95-896h-c2vc"),
        ("billing-worker", "osv", "PYSEC-2018-28"),
        ("billing-worker", "osv", "PYSEC-2023-74"),
        ("edge-proxy", "osv", "GO-2020-0015"),
    }
    assert found("security.static-analysis") == {
        ("payments-api", "bandit", "B602"),
        ("payments-api", "bandit", "B404"),
        ("billing-worker", "bandit", "B105"),
    }
    assert found("security.secrets") == {
        ("payments-api", "detect-secrets", "AWS Access Key"),
        ("billing-worker", "detect-secrets", "GitHub Token"),
        ("billing-worker", "detect-secrets", "Base64 High Entropy String"),
    }
    # the unparsable manifest is a finding with its location, and hid nothing else of its repository
    assert found("inventory.discover") == {("billing-worker", "inventory", "unparsable-manifest")}
    failing = {t for out in outputs.values() for t in out.get("failing", [])}
    assert failing == {"tests/test_money.py::test_apply_fee_rounds_to_nearest_cent"}
    flaky = {t for out in outputs.values() for t in out.get("flaky", [])}
    assert flaky == {"tests/test_cache.py::test_warehouse_cache_is_warm"}
    coverage = {
        task.split(":")[1]: out["coverage_percent"]
        for task, out in outputs.items()
        if task.startswith("testing.run-tests")
    }
    assert set(coverage) == {"payments-api", "inventory-service", "auth-lib", "billing-worker"}
    # measured over every file of the target's packages, imported by a test or not (payments' metrics.py and
    # inventory's app.py are not), not over what the tests happened to import
    assert coverage == {"auth-lib": 100.0, "billing-worker": 71.43, "inventory-service": 56.52, "payments-api": 47.83}
    workflow_rules = {
        (task.split(":")[1], f["rule"], f["where"].split(".github/workflows/")[1])
        for task, out in outputs.items()
        if task.startswith("cicd.workflow-audit")
        for f in out["findings"]
    }
    ci, build, test = "ci.yml", "build.yaml", "test.yml"
    assert workflow_rules == {
        ("payments-api", "permissions", ci),
        ("payments-api", "concurrency", f"{ci}:jobs.test"),
        ("payments-api", "concurrency", f"{ci}:jobs.lint"),
        ("payments-api", "job-timeout", f"{ci}:jobs.test"),
        ("payments-api", "job-timeout", f"{ci}:jobs.lint"),
        ("payments-api", "needless-sequence", f"{ci}:jobs.lint"),
        ("payments-api", "no-dependency-cache", f"{ci}:jobs.test"),
        ("payments-api", "no-dependency-cache", f"{ci}:jobs.lint"),
        ("payments-api", "unpinned-action", f"{ci}:jobs.test"),
        ("payments-api", "unpinned-action", f"{ci}:jobs.lint"),
        ("inventory-service", "permissions", build),
        ("inventory-service", "unpinned-action", f"{build}:jobs.build"),
        ("web-frontend", "permissions", test),
        ("web-frontend", "concurrency", f"{test}:jobs.unit"),
        ("web-frontend", "job-timeout", f"{test}:jobs.unit"),
        ("web-frontend", "no-dependency-cache", f"{test}:jobs.unit"),
        ("web-frontend", "unpinned-action", f"{test}:jobs.unit"),
        ("payments-api", "no-test-matrix", f"{ci}:jobs.test"),
        ("inventory-service", "no-test-matrix", f"{build}:jobs.build"),
        ("web-frontend", "no-test-matrix", f"{test}:jobs.unit"),
    }
    zizmor = {
        task.split(":")[1]: set(out["by_rule"])
        for task, out in outputs.items()
        if task.startswith("cicd.workflow-security")
    }
    assert zizmor == {
        "payments-api": {"artipacked", "excessive-permissions", "unpinned-uses"},
        "inventory-service": {"artipacked", "unpinned-uses"},
        "web-frontend": {"artipacked", "excessive-permissions", "unpinned-uses"},
    }
    results = report["results"]
    assert results["inventory"]["assets"]["repository"] == 6
    node = outputs["testing.run-node-tests:web-frontend"] if shutil.which("npm") else None
    if node is not None:  # Node is optional for Cortex: without it the task is skipped (tested in test_graphrun)
        assert (node["tests"], node["passed"], node["failures"]) == (2, 2, 0)
    extra = 2 if node is not None else 0  # the Node suite's two passing tests
    assert results["testing"]["tests"] == {
        "tests": 10 + extra,
        "passed": 8 + extra,
        "failures": 2,
        "errors": 0,
        "skipped": 0,
        "failing_after_reruns": 1,
        "flaky": 1,
    }
    assert results["testing"]["coverage"] == coverage
    return outputs
