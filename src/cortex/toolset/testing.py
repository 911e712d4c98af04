"""Testing tools: run a repository's pytest suite in a subprocess with a timeout and parse its JUnit XML.

Failing tests are handed to the development master (a run-time handoff) as a fix request.
"""

from __future__ import annotations

import json
import sys
import tempfile
import xml.etree.ElementTree as ET  # noqa: S405  (parses the XML our own pytest run just wrote)
from pathlib import Path
from typing import Any, TypedDict

from cortex.errors import TaskFailed
from cortex.toolset.builtin import run_argv
from cortex.toolset.context import Output, TaskContext, task_kind

# pytest exit codes: 0 all passed, 1 some failed, 5 none collected; the rest mean the run itself broke.
_RAN = {0, 1, 5}


def _node_id(case: ET.Element) -> str:
    """pytest's node id of a JUnit test case (xunit1 reports carry the file)."""
    file, classname, name = case.get("file", ""), case.get("classname", ""), case.get("name", "")
    if not file:  # xunit2 reports carry no file: the dotted class name is the best id there is
        return f"{classname}::{name}"
    module = Path(file).with_suffix("").as_posix().replace("/", ".")
    cls = classname.removeprefix(module).strip(".")
    return "::".join(p for p in (file, cls, name) if p)


class JunitCounts(TypedDict):
    """What a JUnit XML report says: counts, the run's duration and the ids of the failing tests."""

    tests: int
    failures: int
    errors: int
    skipped: int
    passed: int
    duration_s: float
    failing: list[str]


def no_report() -> JunitCounts:
    """The counts of a run that wrote no report (nothing was collected)."""
    return JunitCounts(tests=0, failures=0, errors=0, skipped=0, passed=0, duration_s=0.0, failing=[])


def parse_junit(path: Path) -> JunitCounts:
    """Counts and failing test ids from a JUnit XML report."""
    root = ET.parse(path).getroot()  # noqa: S314
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    if not suites:  # node's reporter lists test cases directly under <testsuites>, without counts
        cases = list(root.iter("testcase"))
        bad = [_node_id(c) for c in cases if c.find("failure") is not None or c.find("error") is not None]
        skipped = sum(1 for c in cases if c.find("skipped") is not None)
        return JunitCounts(
            tests=len(cases),
            failures=len(bad),
            errors=0,
            skipped=skipped,
            passed=len(cases) - len(bad) - skipped,
            duration_s=0.0,
            failing=bad,
        )
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failing: list[str] = []
    duration = 0.0
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, 0))
        duration += float(suite.get("time", 0))
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failing.append(_node_id(case))
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return JunitCounts(
        tests=counts["tests"],
        failures=counts["failures"],
        errors=counts["errors"],
        skipped=counts["skipped"],
        passed=passed,
        duration_s=round(duration, 3),
        failing=failing,
    )


_CONFIGS = (
    ("pytest.ini", None),
    (".pytest.ini", None),
    ("pyproject.toml", "[tool.pytest"),
    ("tox.ini", "[pytest]"),
    ("setup.cfg", "[tool:pytest]"),
)


def pytest_config(root: Path, scratch: Path) -> Path:
    """The repository's own pytest configuration, or an empty one in ``scratch``.

    Without this, pytest climbs out of the repository looking for configuration and may run the tests under
    some enclosing project's settings; the run must be confined to the target.
    """
    for name, marker in _CONFIGS:
        path = root / name
        if path.is_file() and (marker is None or marker in path.read_text(encoding="utf-8", errors="replace")):
            return path
    empty = scratch / "pytest.ini"
    empty.write_text("[pytest]\n")
    return empty


def _pytest_argv(root: Path, config: Path, *extra: str) -> list[str]:
    return ["-m", "pytest", "-q", "-p", "no:cacheprovider", f"--rootdir={root}", "-c", str(config), *extra]


async def _coverage(root: Path, scratch: Path, timeout_s: float) -> float | None:
    """Line coverage of the last run, from coverage's JSON report (None when there was nothing to measure)."""
    data, report = scratch / ".coverage", scratch / "coverage.json"
    argv = [sys.executable, "-m", "coverage", "json", f"--data-file={data}", "-o", str(report), "-q"]
    code, _, _ = await run_argv(argv, str(root), timeout_s)
    if code != 0 or not report.exists():
        return None
    return round(float(json.loads(report.read_text())["totals"]["percent_covered"]), 2)


async def _rerun(root: Path, config: Path, node_id: str, times: int, timeout_s: float) -> int:
    """How many of ``times`` re-runs of one failing test passed."""
    passed = 0
    for _ in range(times):
        code, _, _ = await run_argv(
            [sys.executable, *_pytest_argv(root, config, node_id)],
            str(root),
            timeout_s,
            env={"PYTHONDONTWRITEBYTECODE": "1"},
        )
        passed += code == 0
    return passed


@task_kind("testing.pytest")
async def pytest_task(ctx: TaskContext) -> Output:
    """Run the target's tests under coverage; re-run failures ``params.reruns`` times (default 2): a test that
    passes on a re-run is flaky, one that never does is failing. Fails only when the suite could not run."""
    root = ctx.require_target()
    reruns = int(ctx.task.params.get("reruns", 2))
    budget = max(ctx.task.timeout_s - 5, 1)
    with tempfile.TemporaryDirectory(prefix="cortex-tests-") as tmp:
        scratch = Path(tmp)
        junit = scratch / "junit.xml"
        config = pytest_config(root, scratch)
        omit = ",".join(str(root / d / "*") for d in ("tests", "test"))
        argv = [
            sys.executable,
            "-m",
            "coverage",
            "run",
            f"--data-file={scratch / '.coverage'}",
            f"--source={root}",
            f"--omit={omit}",
            *_pytest_argv(root, config, f"--junitxml={junit}", "-o", "junit_family=xunit1"),
        ]
        try:
            code, out, err = await run_argv(argv, str(root), budget, env={"PYTHONDONTWRITEBYTECODE": "1"})
        except TimeoutError as exc:
            raise TaskFailed(f"pytest timed out after {budget:.0f} s") from exc
        if code not in _RAN:
            raise TaskFailed(f"pytest exited with {code}: {(err or out).strip()[-500:]}")
        result: dict[str, Any] = {**(parse_junit(junit) if junit.exists() else no_report())}
        result["coverage_percent"] = await _coverage(root, scratch, budget)
        flaky: list[str] = []
        failing: list[str] = []
        for node_id in result["failing"]:
            (flaky if await _rerun(root, config, node_id, reruns, budget) else failing).append(node_id)
    result.update(repository=root.name, exit_code=code, failing=failing, flaky=flaky, reruns=reruns)
    if failing:
        result["handoffs"] = [
            {
                "to": "development",
                "kind": "development.fix-tests",
                "worker_type": "implementation",
                "requires_model": True,
                "estimate_tokens": 6000,
                "params": {"failing": failing},
                "reason": f"{len(failing)} failing test(s) in {root.name}",
            }
        ]
    return result


@task_kind("testing.npm")
async def npm_test_task(ctx: TaskContext) -> Output:
    """The package's own test script (``npm test``), when npm and node are installed; skipped otherwise, since
    Cortex itself needs only Python. Results come from node's JUnit reporter (asked for through NODE_OPTIONS,
    which reaches the node process the script starts)."""
    import shutil

    from cortex.errors import TaskSkipped

    root = ctx.require_target()
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise TaskSkipped("npm and node are not installed here; Node test suites need them")
    with tempfile.TemporaryDirectory(prefix="cortex-npm-") as tmp:
        junit = Path(tmp) / "junit.xml"
        env = {"NODE_OPTIONS": f"--test-reporter=junit --test-reporter-destination={junit}", "CI": "true"}
        try:
            code, out, err = await run_argv(
                [npm, "test", "--silent"], str(root), max(ctx.task.timeout_s - 5, 1), env=env
            )
        except TimeoutError as exc:
            raise TaskFailed(f"npm test timed out after {ctx.task.timeout_s:.0f} s") from exc
        if not junit.exists():
            raise TaskFailed(f"npm test exited with {code} and wrote no test report: {(err or out).strip()[-500:]}")
        result: dict[str, Any] = {**parse_junit(junit)}
    result.update(repository=root.name, exit_code=code, runner="npm test (node --test)", flaky=[])
    return result
