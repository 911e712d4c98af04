"""JUnit XML reports (pytest's and node's) as counts and failing test ids, and where a repository keeps its pytest
configuration."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405  (parses the XML our own test run just wrote)
from pathlib import Path
from typing import TypedDict


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
