"""Node test runs: skipped with the reason when npm is absent; parsed from node's own JUnit report otherwise."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from cortex.coord.keys import RunKeys
from cortex.errors import TaskSkipped
from cortex.models.task import Estimate, Task
from cortex.toolset.context import TaskContext
from cortex.toolset.fleet import working_copy
from cortex.toolset.registry import handler_for

from .conftest import FLEET

pytestmark = pytest.mark.timeout(120)


def run_npm(target: Path) -> dict:  # type: ignore[type-arg]
    task = Task(
        id="t",
        master="testing",
        kind="testing.npm",
        worker_type="test",
        timeout_s=90,
        estimate=Estimate(seconds=1, tokens=0),
    )
    ctx = TaskContext(
        task=task,
        attempt=1,
        target_path=target,
        run_id="r",
        worker_id="w",
        redis=None,  # type: ignore[arg-type]
        keys=RunKeys("r"),
    )
    handler = handler_for("testing.npm")
    assert handler is not None
    return asyncio.run(handler(ctx))


def test_without_npm_the_task_is_skipped_with_the_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no npm or node on it
    with pytest.raises(TaskSkipped, match="npm and node are not installed"):
        run_npm(FLEET / "web-frontend")


@pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm and node")
def test_node_suite_results_come_from_nodes_junit_report(tmp_path: Path) -> None:
    fleet = working_copy(FLEET, tmp_path / "fleet")
    test_file = fleet / "web-frontend" / "test" / "cart.test.js"
    test_file.write_text(test_file.read_text().replace("899", "900"))  # break one assertion
    out = run_npm(fleet / "web-frontend")
    assert (out["tests"], out["passed"], out["failures"]) == (2, 1, 1)
    assert out["failing"] == ["test::discount rounds to the cent"]
