"""Incremental runs: a second run over an unchanged fleet reuses every recorded result (handoff tasks included,
their handoffs replayed); changing one repository re-runs that repository's tasks only; --no-cache runs all."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cortex.coord.server import EmbeddedRedis
from cortex.models.report import Report
from cortex.planner import build_plan
from cortex.roster import load_cluster, load_roster
from cortex.runtime.cache import PlanningCache, fingerprint
from cortex.runtime.coordinator import Coordinator
from cortex.runtime.options import RunOptions
from cortex.toolset.fleet import working_copy

from .conftest import FLEET

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
GOAL = "security audit and bug fix"  # security and development: the audit hands pin bumps over


async def run_once(fleet: Path, state: Path, *, reuse: bool = True) -> tuple[dict[str, str], Report]:
    cache = PlanningCache(fingerprint(), state) if reuse else None
    plan = build_plan(GOAL, fleet, load_roster(), load_cluster(), cache=cache)
    with EmbeddedRedis() as server:
        result = await Coordinator(plan, server.url, state, RunOptions(reuse=reuse)).run()
    assert result.status == "succeeded", result.report.error
    return plan.reuse, result.report


@pytest.mark.slow(60)
async def test_unchanged_fleet_reuses_every_result_and_a_changed_repository_runs_again(tmp_path: Path) -> None:
    source = tmp_path / "source"
    for name in ("auth-lib", "edge-proxy"):  # a Python library with a vulnerable pin (a handoff), and a Go service
        shutil.copytree(FLEET / name, source / name)
    fleet = working_copy(source, tmp_path / "fleet")
    state = tmp_path / "state"

    expected, first = await run_once(fleet, state)
    assert expected == {} and first.reused == {}
    bump = "development.bump-pin:auth-lib:pyjwt"
    keyed = {t.id for t in first.tasks if t.target is not None}
    assert bump in keyed and all(t.state.value == "succeeded" for t in first.tasks)

    expected, second = await run_once(fleet, state)
    planned = {t.id for t in second.tasks if t.origin == "plan" and t.target is not None}
    # the plan expected every planned task's result; the run reused those and the handoff task its replay admitted
    assert expected == {t: first.run_id for t in sorted(planned)}
    assert second.reused == {t: first.run_id for t in sorted(keyed)}
    assert [h.task for h in second.handoffs if h.decision == "admitted"] == [bump]
    by_id = {t.id: t for t in second.tasks}
    assert by_id[bump].output == next(t.output for t in first.tasks if t.id == bump)  # the branch it made then
    assert second.executions == 0 and {t.worker for t in second.tasks} == {"cache"}  # no worker ran anything
    assert second.lost_fixes == []  # the reused fix is still on its branch
    report_md = Path(second.paths.report_md)  # type: ignore[union-attr]
    assert "## Reused results (incremental run)" in report_md.read_text()  # noqa: ASYNC240

    (fleet / "edge-proxy" / "NOTES.md").write_text("changed\n")
    expected, third = await run_once(fleet, state)
    ran = {t.id for t in third.tasks if t.reused_from is None}
    assert {t for t in ran if t.startswith("security.")} == {t for t in keyed if t.endswith(":edge-proxy")}
    assert set(third.reused) == {t for t in keyed if ":auth-lib" in t}
    assert set(expected) == {t for t in planned if t.endswith(":auth-lib")}

    expected, forced = await run_once(fleet, state, reuse=False)
    assert expected == {} and forced.reused == {}
