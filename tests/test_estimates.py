"""Learned estimates: what plans learn from past runs, how they scale to targets never measured, the handoffs
they expect, and what they say of the previous plan's error. Runs are built as history records; the end-to-end
recording of a real run is checked in test_demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cortex.models.history import RunHistory, TaskSample
from cortex.models.plan import TargetMeasures
from cortex.planner import build_plan
from cortex.planner.estimates import confidence
from cortex.repo import discover_targets
from cortex.repo.measures import measure
from cortex.roster import load_cluster, load_roster

from .conftest import FLEET

pytestmark = pytest.mark.timeout(60)
GOAL = "Run the full catalog toolset across the fleet"
FLEET_NAMES = sorted(t.name for t in discover_targets(FLEET))


def sample(task_id: str, seconds: float, *, measures: TargetMeasures | None = None, **extra: object) -> TaskSample:
    kind = extra.pop("kind", None) or {"security": "security.secrets", "testing": "testing.pytest"}.get(
        task_id.split(".")[0], "development.bump-pin"
    )
    fields: dict[str, object] = {
        "id": task_id,
        "kind": kind,
        "master": task_id.split(".")[0],
        "worker_type": "scan",
        "target": task_id.split(":")[1] if ":" in task_id else None,
        "origin": "plan",
        "duration_s": seconds,
        "estimate_s": 3.0,
        "measures": measures,
    }
    fields.update(extra)
    return TaskSample.model_validate(fields)


def past(run_id: str, tasks: list[TaskSample], *, at: float, goal: str = GOAL, measured: float = 30.0) -> RunHistory:
    return RunHistory(
        run_id=run_id,
        plan_id="p-" + run_id,
        goal=goal,
        fleet=FLEET_NAMES,
        status="succeeded",
        finished_at=at,
        estimated_makespan_s=20.0,
        measured_makespan_s=measured,
        tasks=tasks,
    )


def plan_with(*runs: RunHistory):  # type: ignore[no-untyped-def]
    return build_plan(GOAL, FLEET, load_roster(), load_cluster(), history=list(runs))


def test_without_history_every_estimate_is_the_rosters_default_and_says_so() -> None:
    plan = plan_with()
    assert {t.estimate.basis for t in plan.tasks} == {"default"}
    assert {(t.estimate.samples, t.estimate.confidence) for t in plan.tasks} == {(0, 0.0)}
    assert plan.history_runs == 0 and plan.previous is None and plan.expected == []


def test_same_task_is_the_median_of_its_runs_and_one_outlier_does_not_move_it() -> None:
    task = "security.secrets:auth-lib"
    runs = [past(f"r{i}", [sample(task, s)], at=100.0 - i) for i, s in enumerate([1.0, 1.2, 40.0])]
    est = plan_with(*runs).task(task).estimate
    assert (est.seconds, est.basis, est.samples) == (1.2, "target", 3)
    assert est.spread_s == 0.2  # median absolute deviation from 1.2 of (1.0, 1.2, 40.0)
    assert est.confidence == confidence(3) == 0.5
    # tasks of the same kind on other targets learn from these samples too (basis: kind)
    other = plan_with(*runs).task("security.secrets:payments-api").estimate
    assert other.basis == "kind" and other.samples == 3


def test_a_target_never_measured_is_scaled_by_what_the_kind_scales_with() -> None:
    # testing.pytest scales with tests: 1 s + 1 s per test file on three other targets, and one outlier
    tasks = [
        sample(f"testing.run-tests:t{n}", 1.0 + n, measures=TargetMeasures(files=9, lines=9, tests=n, packages=1))
        for n in (1, 3, 5, 7)
    ]
    tasks.append(sample("testing.run-tests:slow", 60.0, measures=TargetMeasures(files=9, lines=9, tests=2, packages=1)))
    plan = plan_with(past("r1", tasks, at=1.0))
    target = {t.name: t for t in plan.targets}
    for task in plan.tasks:
        if task.kind == "testing.pytest":
            tests = target[task.target or ""].measures.tests  # type: ignore[union-attr]
            assert task.estimate.basis == "kind"
            assert task.estimate.seconds == pytest.approx(1.0 + tests, abs=0.01), task.id


def test_handoffs_of_past_runs_are_expected_scheduled_and_counted_before_the_aggregation() -> None:
    bump = "development.bump-pin:auth-lib:pyjwt"
    tasks = [
        sample("security.dependency-audit:auth-lib", 0.5, kind="security.dependency-audit"),
        sample(
            bump,
            50.0,
            worker_type="implementation",
            origin="handoff:security",
            source_task="security.dependency-audit:auth-lib",
        ),
    ]
    plan = plan_with(past("r1", tasks, at=1.0))
    assert [(e.id, e.after, e.estimate.seconds, e.from_run) for e in plan.expected] == [
        (bump, "security.dependency-audit:auth-lib", 50.0, "r1")
    ]
    entries = {e.task_id: e for e in plan.schedule.entries}
    assert entries[bump].expected and not entries["security.dependency-audit:auth-lib"].expected
    assert entries[bump].start_s >= entries["security.dependency-audit:auth-lib"].end_s
    assert entries["coordinator.aggregate"].start_s >= entries[bump].end_s
    assert plan.schedule.makespan_s >= 50.0 and plan.schedule.lower_bound_s >= 50.0
    assert bump in plan.schedule.critical_path
    # the expected task is not one of the plan's tasks: it runs only if a handoff admits it again
    assert bump not in {t.id for t in plan.tasks}


def test_the_lower_bound_is_never_above_the_schedule() -> None:
    for runs in ([], [past("r1", [sample("security.secrets:auth-lib", 90.0)], at=1.0)]):
        s = plan_with(*runs).schedule
        assert s.critical_path_s <= s.lower_bound_s <= s.makespan_s


def test_previous_plan_error_is_the_latest_run_of_the_same_goal_and_fleet() -> None:
    task = "security.secrets:auth-lib"
    latest = past("new", [sample(task, 2.0, estimate_s=3.0)], at=2.0, measured=25.0)
    older = past("old", [sample(task, 1.0)], at=1.0, measured=40.0)
    other_goal = past("other", [sample(task, 1.0)], at=3.0, goal="audit security")
    plan = plan_with(other_goal, latest, older)
    assert plan.previous is not None
    assert (plan.previous.run_id, plan.previous.measured_makespan_s) == ("new", 25.0)
    assert plan.previous.makespan_error == pytest.approx((20.0 - 25.0) / 25.0)
    assert plan.previous.task_median_error == 0.5 and plan.previous.tasks_compared == 1


def test_measures_count_files_lines_tests_and_packages_without_following_links(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "app.py").write_text("a = 1\nb = 2\n")
    (repo / "tests" / "test_app.py").write_text("def test_a():\n    pass\n")
    (repo / "tests" / "data.json").write_text("{}\n")
    (repo / "requirements.txt").write_text("requests==2.0\nflask>=1\n")
    (repo / ".git").mkdir()
    (repo / ".git" / "HEAD").write_text("ref\n" * 50)
    outside = tmp_path / "outside.py"
    outside.write_text("x\n" * 1000)
    (repo / "link.py").symlink_to(outside)
    measured = measure(repo)
    assert measured.model_copy(update={"revision": ""}) == TargetMeasures(files=4, lines=7, tests=1, packages=2)
    # the revision follows the files: touching one changes it, reading them does not
    assert measure(repo).revision == measured.revision
    (repo / "app.py").write_text("a = 1\nb = 3\n")
    os.utime(repo / "app.py", ns=(1, 1))
    assert measure(repo).revision != measured.revision


def _plan_cli(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CORTEX_REDIS_URL"}  # history from the state directory
    return subprocess.run(
        [sys.executable, "-m", "cortex", "plan", GOAL, "--targets", str(FLEET), "--out", str(tmp_path / "p"),
         "--state-dir", str(tmp_path / "state"), "--json", *extra],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip


def test_cortex_plan_learns_from_the_state_directory_names_a_damaged_record_and_can_ignore_history(
    tmp_path: Path,
) -> None:
    recorded = tmp_path / "state" / "history"
    recorded.mkdir(parents=True)
    good = past("r1", [sample("security.secrets:auth-lib", 2.5)], at=1.0)
    (recorded / "r1.json").write_text(good.model_dump_json())
    (recorded / "r2.json").write_text('{"run_id": "r2", "tasks": "not a list"')
    learned = _plan_cli(tmp_path)
    assert learned.returncode == 0, learned.stderr
    assert f"{recorded / 'r2.json'}: not a readable run history" in learned.stderr
    out = json.loads(learned.stdout)
    assert out["learned_from_runs"] == 1 and out["previous"]["run_id"] == "r1"
    plan = json.loads((tmp_path / "p" / "plan.json").read_text())
    secrets = next(t for t in plan["tasks"] if t["id"] == "security.secrets:auth-lib")
    assert (secrets["estimate"]["seconds"], secrets["estimate"]["basis"]) == (2.5, "target")
    doc = (tmp_path / "p" / "ORCHESTRATION-PLAN.md").read_text()
    assert "The previous plan for this goal and fleet** (run `r1`" in doc and "| target (1, ±0.0 s) |" in doc

    fresh = _plan_cli(tmp_path, "--no-history")
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout)["learned_from_runs"] == 0 and "r2.json" not in fresh.stderr
