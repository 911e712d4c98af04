"""Whatever goes wrong inside the coordinator, the run ends with a report and an archive that say what happened
(``status: error`` and the cause), its processes stopped, and exit code 8."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from cortex.chaos.plan import chaos_plan
from cortex.planner import write_plan
from cortex.runtime import finish

from .test_fuzz_cli import invoke

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_a_coordinator_failure_ends_the_run_with_an_error_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError("injected: aggregation broke")

    monkeypatch.setattr(finish, "aggregate", broken)  # a bug in phase 4, after every task ran
    write_plan(chaos_plan(6, seconds=0.05, workers=2, nodes=1, slots=2), tmp_path / "plan")
    state = tmp_path / "state"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    code, stderr = invoke(
        ["run", str(tmp_path / "plan" / "plan.json"), "--run-id", "broken-run"],
        {"CORTEX_STATE_DIR": str(state), "CORTEX_REDIS_URL": ""},
    )
    assert code == 8, stderr
    assert "ended in error: RuntimeError: injected: aggregation broke" in stderr and "Traceback" not in stderr
    report = json.loads((state / "runs" / "broken-run" / "report.json").read_text())
    assert report["status"] == "error" and "injected: aggregation broke" in report["error"]
    assert sum(1 for t in report["tasks"] if t["state"] == "succeeded") == 6  # what did happen is reported
    archive = state / "archives" / "CORTEX-EXEC-broken-run"
    assert json.loads((archive / "report.json").read_text())["status"] == "error"
    assert "RuntimeError: injected" in (state / "runs" / "broken-run" / "error.txt").read_text()
    current = json.loads((state / "current-execution.json").read_text())
    assert current["status"] == "error" and current["finished_at"] is not None
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()]
    assert not [p for p in left if p.status() != psutil.STATUS_ZOMBIE], "the run left processes behind"
