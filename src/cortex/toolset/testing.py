"""Testing tools: run a repository's pytest suite in a subprocess with a timeout and parse its JUnit XML.

Failing tests are handed to the development master (a run-time handoff) as a fix request.
"""

from __future__ import annotations

import sys
import tempfile
import xml.etree.ElementTree as ET  # noqa: S405  (parses the XML our own pytest run just wrote)
from pathlib import Path
from typing import Any

from cortex.errors import TaskFailed
from cortex.toolset.builtin import run_argv
from cortex.toolset.registry import Output, TaskContext, task_kind

# pytest exit codes: 0 all passed, 1 some failed, 5 none collected; the rest mean the run itself broke.
_RAN = {0, 1, 5}


def parse_junit(path: Path) -> dict[str, Any]:
    """Counts and failing test ids from a JUnit XML report."""
    root = ET.parse(path).getroot()  # noqa: S314
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failing: list[str] = []
    duration = 0.0
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, 0))
        duration += float(suite.get("time", 0))
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failing.append(f"{case.get('classname')}::{case.get('name')}")
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "passed": passed, "duration_s": round(duration, 3), "failing": failing}


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


@task_kind("testing.pytest")
async def pytest_task(ctx: TaskContext) -> Output:
    """Run the target's tests with pytest; fails only when the suite could not run."""
    root = ctx.require_target()
    with tempfile.TemporaryDirectory(prefix="cortex-junit-") as tmp:
        junit = Path(tmp) / "junit.xml"
        config = pytest_config(root, Path(tmp))
        argv = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--rootdir={root}",
            "-c",
            str(config),
            f"--junitxml={junit}",
        ]
        try:
            code, out, err = await run_argv(
                argv, str(root), max(ctx.task.timeout_s - 5, 1), env={"PYTHONDONTWRITEBYTECODE": "1"}
            )
        except TimeoutError as exc:
            raise TaskFailed(f"pytest timed out after {ctx.task.timeout_s:.0f} s") from exc
        if code not in _RAN:
            raise TaskFailed(f"pytest exited with {code}: {(err or out).strip()[-500:]}")
        result: dict[str, Any] = parse_junit(junit) if junit.exists() else {"tests": 0, "passed": 0, "failing": []}
    failing: list[str] = list(result["failing"])
    result["repository"] = root.name
    result["exit_code"] = code
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
