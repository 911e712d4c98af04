"""``cortex run`` trusts no plan: schema version, the id as the digest of the content, every name it uses, the
graph, the budgets, the placement and the sizes are checked before anything starts, each refusal naming the file
and field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cortex.errors import InputError
from cortex.models import Plan
from cortex.planner import build_plan, load_plan
from cortex.roster import load_cluster, load_roster
from cortex.toolset.registry import known_kinds

from .conftest import FLEET
from .test_inputs import cortex

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def plan_data() -> dict[str, Any]:
    plan = build_plan("audit security and run the tests", FLEET, load_roster(), load_cluster())
    return json.loads(plan.model_dump_json())


def _resealed(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the id a planner would give it: an edit that also fixed the id up."""
    data["id"] = Plan.model_validate(data).content_id()
    return data


def _load(tmp_path: Path, data: dict[str, Any]) -> Plan:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    return load_plan(path, known_kinds=set(known_kinds()))


def test_a_plan_as_written_by_the_planner_loads(tmp_path: Path, plan_data: dict[str, Any]) -> None:
    assert _load(tmp_path, plan_data).id == plan_data["id"]


def test_an_edited_plan_no_longer_matches_its_id(tmp_path: Path, plan_data: dict[str, Any]) -> None:
    data = copy.deepcopy(plan_data)
    data["tasks"][0]["timeout_s"] = 1.0
    with pytest.raises(InputError) as info:
        _load(tmp_path, data)
    assert info.value.field == "id" and "edited after planning" in info.value.problem


def _first_worker(d: dict[str, Any]) -> dict[str, Any]:
    return d["workers"][0]  # type: ignore[no-any-return]


MUTATIONS: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("unknown master", lambda d: d["tasks"][0].update(master="legal"), ".master", "not in the roster"),
    ("unknown worker type", lambda d: d["tasks"][0].update(worker_type="ghost"), ".worker_type", "not in the roster"),
    ("unknown task kind", lambda d: d["tasks"][0].update(kind="inventory.mine-bitcoin"), ".kind", "no handler"),
    ("unknown target", lambda d: d["tasks"][0].update(target="elsewhere"), ".target", "not one of the plan's"),
    ("unknown node", lambda d: _first_worker(d).update(node="ghost-node"), ".node", "not a worker node"),
    ("duplicate task ids", lambda d: d["tasks"].append(copy.deepcopy(d["tasks"][0])), "tasks", "repeated"),
    ("negative budget", lambda d: d["budget"]["lines"][0].update(base=-5), "budget.lines[", "cannot be negative"),
    (
        "budget that does not add up",
        lambda d: d["budget"]["lines"][0].update(reserve=d["budget"]["lines"][0]["reserve"] + 1),
        "budget.lines[",
        "do not add up",
    ),
    (
        "more workers than slots",
        lambda d: d["workers"].extend({**_first_worker(d), "worker_id": f"extra-{i}", "budget": 0} for i in range(40)),
        "cluster.nodes[",
        "slots",
    ),
    (
        "a dependency cycle",
        lambda d: (
            d["tasks"][0].update(depends_on=[d["tasks"][-1]["id"]])
            or d["tasks"][-1].update(depends_on=[d["tasks"][0]["id"]])
        ),
        "tasks",
        "cycle",
    ),
    ("a 1 MB goal", lambda d: d.update(goal="x" * 1_000_000), "goal", "characters"),
]


@pytest.mark.parametrize("name,mutate,field,problem", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_a_plan_that_cannot_run_as_it_says_is_refused_naming_the_field(
    tmp_path: Path,
    plan_data: dict[str, Any],
    name: str,
    mutate: Callable[[dict[str, Any]], None],
    field: str,
    problem: str,
) -> None:
    data = copy.deepcopy(plan_data)
    mutate(data)
    with pytest.raises(InputError) as info:
        _load(tmp_path, _resealed(data))  # even with its id fixed up
    assert info.value.source == str(tmp_path / "plan.json")
    assert field in (info.value.field or ""), info.value
    assert problem in info.value.problem, info.value


def test_a_plan_of_another_schema_version_is_refused_before_the_rest_is_read(
    tmp_path: Path, plan_data: dict[str, Any]
) -> None:
    data = {**plan_data, "schema_version": 99, "a_field_of_version_99": True}
    with pytest.raises(InputError) as info:
        _load(tmp_path, data)
    assert info.value.field == "schema_version" and "99" in info.value.problem


def test_cortex_run_refuses_an_edited_plan_with_one_line_and_starts_nothing(
    tmp_path: Path, plan_data: dict[str, Any]
) -> None:
    data = copy.deepcopy(plan_data)
    data["workers"][0]["budget"] += 1
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    proc = cortex("run", str(path), "--state-dir", str(tmp_path / "state"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "id: the plan's id" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "state").exists()
