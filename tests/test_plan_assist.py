"""Planning assistance: the scripted model proposes tasks; the deterministic planner keeps the valid ones (with
what they depend on), rejects the rest with the reason, and stays the authority on budgets and schedule."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import FLEET
from .test_inputs import cortex

pytestmark = pytest.mark.timeout(60)

PROPOSAL = {
    "tasks": [
        {"task": "security.dependency-audit", "target": "payments-api", "reason": "payments must be safe"},
        {"task": "security.port-scan", "target": "payments-api", "reason": "invented"},
        {"task": "testing.run-tests", "target": "web-frontend", "reason": "a Node project"},
        {"task": "cicd.workflow-audit", "target": "ghost-repo", "reason": "no such target"},
        {"task": "coordinator.aggregate", "target": "payments-api", "reason": "runs once"},
    ]
}


def plan_assisted(goal: str, out: Path, model: str) -> subprocess.CompletedProcess[str]:
    """``cortex plan GOAL --assist`` over the demo fleet with ``CORTEX_MODEL=model``, written to ``out``."""
    argv = ["plan", goal, "--targets", str(FLEET), "--out", str(out), "--assist"]
    return cortex(*argv, cwd=out.parent, env={"CORTEX_MODEL": model})


def test_the_model_proposes_and_the_planner_disposes(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"planner.assist": [{"output": PROPOSAL}]}))
    out = tmp_path / "plan"
    done = plan_assisted("look after the payments service", out, f"script:{script}")
    assert done.returncode == 0, done.stderr
    assert "1 proposal(s) accepted, 2 task(s) added, 4 rejected" in done.stdout
    plan = json.loads((out / "plan.json").read_text())
    ids = {t["id"] for t in plan["tasks"]}
    # the accepted audit brings the discovery it runs after; nothing else of security or inventory is planned
    assert {"security.dependency-audit:payments-api", "inventory.discover:payments-api"} <= ids
    assert not any(i.startswith(("security.static", "inventory.discover:auth")) for i in ids)
    audit = next(t for t in plan["tasks"] if t["id"] == "security.dependency-audit:payments-api")
    assert audit["depends_on"] == ["inventory.discover:payments-api"]
    why = {r["task"]: r["why"] for r in plan["assistance"]["rejected"]}
    assert why == {
        "security.port-scan": "not in the catalogue",
        "testing.run-tests": "does not apply to web-frontend (its traits do not match)",
        "cicd.workflow-audit": "no target named 'ghost-repo'",
        "coordinator.aggregate": "runs once per run, not per target",
    }
    assert plan["assistance"]["added"] == ["inventory.discover:payments-api", "security.dependency-audit:payments-api"]
    assert 0 < plan["assistance"]["tokens"]["used"] <= plan["assistance"]["tokens"]["allocated"]
    assert {"security", "inventory"} <= {line["master"] for line in plan["budget"]["lines"]}  # funded for it


def test_assist_needs_a_model_and_a_failing_model_leaves_the_deterministic_plan(tmp_path: Path) -> None:
    no_model = cortex(
        "plan", "audit security", "--targets", str(FLEET), "--assist", cwd=tmp_path, env={"CORTEX_MODEL": ""}
    )
    assert no_model.returncode == 2 and "--assist: planning assistance needs a model" in no_model.stderr
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"planner.assist": [{"text": "Test everything, thoroughly."}]}))  # not a proposal
    out = tmp_path / "plan"
    done = plan_assisted("audit security", out, f"script:{script}")
    assert done.returncode == 0, done.stderr
    plan = json.loads((out / "plan.json").read_text())
    assert "ran out of turns" in plan["assistance"]["not_used"]  # it answered in prose, then had nothing more
    plain = cortex("plan", "audit security", "--targets", str(FLEET), "--out", str(tmp_path / "p2"), cwd=tmp_path)
    assert plain.returncode == 0
    assert {t["id"] for t in plan["tasks"]} == {
        t["id"] for t in json.loads((tmp_path / "p2" / "plan.json").read_text())["tasks"]
    }
