"""The planner's algorithms on the default roster and cluster and on small known inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from cortex.errors import PlanError
from cortex.models import Cluster, Roster
from cortex.models.task import Estimate, Task
from cortex.planner import build_plan
from cortex.planner.dag import Dag
from cortex.planner.decompose import task_graph
from cortex.planner.routing import route
from cortex.planner.schedule import critical_path, list_schedule
from cortex.roster import load_cluster, load_roster

from .conftest import FLEET

GOAL = "Run the full catalog toolset across the fleet"


def _t(task_id: str, seconds: float, deps: list[str] | None = None, wt: str = "w") -> Task:
    return Task(
        id=task_id,
        master="m",
        kind="builtin.noop",
        worker_type=wt,
        depends_on=deps or [],
        estimate=Estimate(seconds=seconds, tokens=0),
    )


def test_default_roster_reproduces_the_original_system() -> None:
    roster, cluster = load_roster(), load_cluster()
    assert len(roster.masters) == 7
    assert roster.total_workers == 16
    assert len({w.name for w in roster.worker_types}) == 7
    assert sum(m.budget for m in roster.masters) == 340_000
    assert roster.expected_usage_target == 0.83
    assert Counter(n.role.value for n in cluster.nodes) == {"control-plane": 3, "worker": 4}


def test_default_placement_puts_four_workers_on_each_worker_node_and_none_on_control_plane() -> None:
    plan = build_plan(GOAL, FLEET, load_roster(), load_cluster())
    per_node = Counter(w.node for w in plan.workers)
    assert per_node == {f"k3s-worker0{i}": 4 for i in range(1, 5)}
    # same-type workers are spread: no node holds two workers of a type that has at most 4 workers
    for wtype in {w.worker_type for w in plan.workers}:
        nodes = [w.node for w in plan.workers if w.worker_type == wtype]
        assert len(nodes) == len(set(nodes)), wtype
    assert all(m.node.startswith("k3s-master") for m in plan.masters)


def test_placement_refuses_more_workers_than_slots() -> None:
    cluster = load_cluster().model_copy(deep=True)
    for node in cluster.nodes:
        if node.role.value == "worker":
            node.worker_slots = 3
    with pytest.raises(PlanError, match="16 workers do not fit in 12 worker slots"):
        build_plan(GOAL, FLEET, load_roster(), Cluster.model_validate(cluster.model_dump()))


def test_budgets_add_up_and_refuse_an_overdrawn_pool() -> None:
    plan = build_plan(GOAL, FLEET, load_roster(), load_cluster())
    assert plan.budget.total == sum(line.base + line.worker_pool for line in plan.budget.lines)
    for line in plan.budget.lines:
        assert sum(line.workers.values()) + line.reserve == line.worker_pool
    data = load_roster().model_dump()
    next(w for w in data["worker_types"] if w["name"] == "catalog")["budget"] = 5000  # 4 x 5000 > 15000
    with pytest.raises(PlanError, match="workers of inventory need 20,000 tokens"):
        build_plan(GOAL, FLEET, Roster.model_validate(data), load_cluster())


def test_a_playbook_cycle_is_refused_with_the_cycle_named() -> None:
    data = load_roster().model_dump()
    inv = next(m for m in data["masters"] if m["name"] == "inventory")
    inv["playbook"][0]["after"] = ["inventory.metrics"]  # discover after metrics, metrics after discover
    with pytest.raises(PlanError, match="cycle: inventory.(discover|metrics) -> inventory"):
        build_plan(GOAL, FLEET, Roster.model_validate(data), load_cluster())


def test_critical_path_and_lower_bound_on_a_known_graph() -> None:
    tasks = [_t("a", 2), _t("b", 3, ["a"]), _t("c", 1, ["a"]), _t("d", 4, ["b", "c"]), _t("e", 1)]
    graph = task_graph(tasks)
    path, length = critical_path(tasks, graph)
    assert path == ["a", "b", "d"]
    assert length == 9
    workers = [_w(f"w{i}") for i in range(2)]
    entries = {e.task_id: e for e in list_schedule(tasks, graph, workers)}
    assert entries["d"].start_s == 5  # after b (ends 5) and c
    assert max(e.end_s for e in entries.values()) == 9  # meets the lower bound max(9, 11/2)


def _w(wid: str, wt: str = "w"):  # type: ignore[no-untyped-def]
    from cortex.models.plan import WorkerAssignment

    return WorkerAssignment(worker_id=wid, worker_type=wt, master="m", node="n", budget=0)


def test_list_schedule_respects_worker_types_and_capacity() -> None:
    tasks = [_t(f"x{i}", 1) for i in range(4)] + [_t("y", 1, wt="other")]
    entries = list_schedule(tasks, task_graph(tasks), [_w("w1"), _w("o1", "other")])
    by_worker = Counter(e.worker_id for e in entries)
    assert by_worker == {"w1": 4, "o1": 1}
    spans = sorted((e.start_s, e.end_s) for e in entries if e.worker_id == "w1")
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))  # never two at once on one slot


def test_plan_is_deterministic() -> None:
    a = build_plan(GOAL, FLEET, load_roster(), load_cluster())
    b = build_plan(GOAL, FLEET, load_roster(), load_cluster())
    assert a.model_dump_json() == b.model_dump_json()


def test_routing_single_parallel_and_fallback() -> None:
    roster = load_roster()
    single = route("audit vulnerabilities and secrets, cve scan", roster)
    assert (single.mode, single.selected) == ("single", ["security"])
    parallel = route("run the tests and fix the ci workflows", roster)
    assert parallel.mode == "parallel"
    assert {"testing", "cicd"} <= set(parallel.selected)
    fallback = route("make me a sandwich", roster)
    assert (fallback.mode, fallback.selected) == ("fallback", ["coordinator"])
    assert all(s.reason for s in fallback.scores)


def test_decomposition_orders_inventory_before_testing_and_aggregation_last() -> None:
    plan = build_plan(GOAL, FLEET, load_roster(), load_cluster())
    ids = {t.id for t in plan.tasks}
    run_tests = plan.task("testing.run-tests:payments-api")
    assert run_tests.depends_on == ["inventory.discover:payments-api"]
    aggregate = plan.task("coordinator.aggregate")
    assert set(aggregate.depends_on) == ids - {"coordinator.aggregate"}
    assert plan.schedule.lower_bound_s <= plan.schedule.makespan_s


def test_plan_documents_are_rendered_from_the_plan(tmp_path: Path) -> None:
    from cortex.planner import load_plan, write_plan

    plan = build_plan(GOAL, FLEET, load_roster(), load_cluster())
    write_plan(plan, tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"plan.json", "ORCHESTRATION-PLAN.md", "ARCHITECTURE.md", "QUICK-START.md", "EXECUTIVE-SUMMARY.md"}
    assert load_plan(tmp_path / "plan.json") == plan
    arch = (tmp_path / "ARCHITECTURE.md").read_text()
    assert "```mermaid" in arch and "k3s-worker04" in arch
    timeline = (tmp_path / "ORCHESTRATION-PLAN.md").read_text()
    assert f"{plan.schedule.makespan_s:,.1f} s" in timeline


def generated_fleet(root: Path, n: int) -> Path:
    """``n`` small repositories with the traits of the demo fleet's (Python with tests, Kubernetes, workflows)."""
    for i in range(n):
        repo = root / f"svc-{i:04d}"
        (repo / "tests").mkdir(parents=True)
        (repo / "k8s").mkdir()
        (repo / ".github" / "workflows").mkdir(parents=True)
        (repo / "pyproject.toml").write_text('[project]\nname = "x"\n')
        (repo / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    return root


@pytest.mark.parametrize("n", [12, 100, 1000])
def test_the_default_roster_plans_the_demo_goal_for_fleets_of_any_size(tmp_path: Path, n: int) -> None:
    fleet = generated_fleet(tmp_path / "fleet", n)
    plan = build_plan(GOAL, fleet, load_roster(), load_cluster())
    runbooks = [t for t in plan.tasks if t.kind == "documentation.runbook"]
    assert len(runbooks) == n  # kept in the plan, costing nothing: without a model they will be skipped
    monitoring = next(line for line in plan.budget.lines if line.master == "monitoring")
    assert monitoring.expected_usage == 0
    assert any(f"{n} task(s) need a model and none is configured" in note for note in plan.notes)
    with_model = build_plan(GOAL, fleet, load_roster(), load_cluster(), model_configured=True)
    kept = [t for t in with_model.tasks if t.kind == "documentation.runbook"]
    assert len(kept) == min(n, 30_000 // 8_000)  # optional runbooks give way until monitoring's budget holds
    left_out = [note for note in with_model.notes if "documentation" not in note and "left out (optional" in note]
    assert len(left_out) == n - len(kept)
    assert all(line.expected_usage <= line.base + line.worker_pool for line in with_model.budget.lines)
    graph = task_graph(with_model.tasks)  # nothing depends on a task that is gone
    # planned on the first graph cut down to the tasks that fit (``Dag.induced``): the schedule a graph built from
    # those tasks gives
    tasks, timeline = with_model.tasks, with_model.schedule
    assert list_schedule(tasks, graph, with_model.workers) == timeline.entries
    assert critical_path(tasks, graph) == (timeline.critical_path, timeline.critical_path_s)


def test_an_induced_graph_has_the_edges_between_its_nodes_in_an_order_that_respects_them() -> None:
    edges = [("a", "c"), ("b", "c"), ("c", "d"), ("b", "e"), ("e", "d"), ("z", "a")]
    whole = Dag(["a", "b", "c", "d", "e", "z"], edges)
    part = whole.induced({"a", "c", "d", "z"})
    built = Dag(["a", "c", "d", "z"], [(x, y) for x, y in edges if {x, y} <= {"a", "c", "d", "z"}])
    assert part.preds == built.preds and part.succs == built.succs
    assert sorted(part.order) == sorted(built.order)
    assert all(part.order.index(x) < part.order.index(y) for y, xs in part.preds.items() for x in xs)


def test_required_work_gives_way_by_priority_after_optional_work_and_takes_its_dependents() -> None:
    from cortex.planner.fit import fit_budgets

    roster = load_roster()

    def task(tid: str, tokens: int, **kw: object) -> Task:
        return Task(id=tid, master="monitoring", kind="k", worker_type="documentation",
                    estimate=Estimate(seconds=1, tokens=tokens), **kw)  # type: ignore[arg-type]  # fmt: skip

    tasks = [
        task("opt", 5_000, optional=True),
        task("low", 16_000, priority=-1),
        task("after-low", 0, depends_on=["low"]),
        task("high", 15_000, priority=5),
        task("agg", 0, depends_on=["low", "high"], needs="completion"),
    ]
    kept, notes = fit_budgets(roster, ["monitoring"], tasks, model_configured=True)  # monitoring: 30,000
    assert [t.id for t in kept] == ["high", "agg"]
    assert next(t for t in kept if t.id == "agg").depends_on == ["high"]
    assert notes[0].startswith("opt left out (optional") and notes[1].startswith("low left out (priority -1")
    assert notes[2] == "after-low left out: it needed a task that was left out"


_SURVEY_IN_PROCESSES = """
import json, os, sys, threading
from pathlib import Path
import cortex.repo.measures as m
plain = m.survey
def survey(root, **kw):  # the surveys say which process made them
    found = plain(root, **kw)
    found.links.append(("pid", str(os.getpid())))
    return found
m.survey = survey
roots = sorted(Path(sys.argv[1]).iterdir())
forked = m.survey_all(roots, parallel_from=2)
stop = threading.Event()
waiter = threading.Thread(target=stop.wait)
waiter.start()
try:
    beside_a_thread = m.survey_all(roots, parallel_from=2)
finally:
    stop.set()
    waiter.join()
me = os.getpid()
def dying(root, **kw):  # every surveyor but this process dies at once
    if os.getpid() != me:
        os._exit(9)
    return survey(root, **kw)
m.survey = dying
after_deaths = m.survey_all(roots, parallel_from=2)
pids = lambda found: sorted({int(s.links[-1][1]) for s in found})
alike = lambda found: [s.measures for s in found] == [plain(r).measures for r in roots]
print(json.dumps({"me": me, "forked": pids(forked), "beside_a_thread": pids(beside_a_thread),
                  "after_deaths": pids(after_deaths), "same": alike(forked) and alike(after_deaths)}))
"""


@pytest.mark.timeout(60)
def test_a_large_fleet_is_surveyed_by_a_process_per_cpu_alike_never_beside_a_thread_and_despite_deaths(
    tmp_path: Path,
) -> None:
    fleet = generated_fleet(tmp_path / "fleet", 250)  # a fresh process: pytest's own may have threads
    done = subprocess.run(
        [sys.executable, "-c", _SURVEY_IN_PROCESSES, str(fleet)], capture_output=True, text=True, timeout=50
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["same"]  # each target measured as one survey in this process measures it, in order
    cpus = len(os.sched_getaffinity(0))
    if cpus > 1:  # made in other processes, at most one per CPU (one may take every chunk)
        assert seen["me"] not in seen["forked"] and 1 <= len(seen["forked"]) <= cpus
    else:
        assert seen["forked"] == [seen["me"]]
    assert seen["beside_a_thread"] == [seen["me"]]
    assert seen["after_deaths"] == [seen["me"]]  # the surveyors died: this process walked every target itself
