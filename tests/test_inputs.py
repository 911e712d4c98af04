"""Bad input: one clear error naming the file and field, exit code 2, nothing written or started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cortex.errors import InputError
from cortex.roster import load_cluster, load_roster

from .conftest import FLEET, ROOT


def cortex(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cortex", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def test_roster_error_names_the_file_the_master_and_the_field(tmp_path: Path) -> None:
    text = (ROOT / "src/cortex/roster/roster.yaml").read_text().replace("base_budget: 35000", "base_budget: lots")
    path = tmp_path / "roster.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_roster(path)
    assert str(path) in str(info.value)
    assert info.value.field == "masters[1:inventory].base_budget"
    assert "valid integer" in info.value.problem


def test_malformed_yaml_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text("name: x\nnodes:\n  - {name: a, role: worker\n")
    with pytest.raises(InputError) as info:
        load_cluster(path)
    assert info.value.field is not None and info.value.field.startswith("line ")


def test_duplicate_node_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    node = "{name: a, role: worker, cpu: 1, memory_mib: 1, worker_slots: 1}"
    path.write_text(f"name: x\nnodes: [{node}, {node}]\n")
    with pytest.raises(InputError, match="repeated: a"):
        load_cluster(path)


def test_cli_bad_roster_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "roster.yaml"
    bad.write_text("masters: []\nworker_types: []\n")
    out = tmp_path / "plan-out"
    proc = cortex(
        "plan", "audit security", "--targets", str(FLEET), "--roster", str(bad), "--out", str(out), cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "roster.yaml: masters" in proc.stderr
    assert not out.exists()


def test_cli_malformed_plan_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text('{"id": "x", "goal": ')
    proc = cortex("run", str(plan), "--state-dir", str(tmp_path / "state"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "plan.json: line 1" in proc.stderr and "not valid JSON" in proc.stderr
    assert not (tmp_path / "state").exists()


def test_cli_plan_with_a_wrong_field_type_names_it(tmp_path: Path) -> None:
    good = tmp_path / "good"
    assert cortex("plan", "run the tests", "--targets", str(FLEET), "--out", str(good), cwd=tmp_path).returncode == 0
    data = json.loads((good / "plan.json").read_text())
    data["workers"][0]["budget"] = "many"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    proc = cortex("run", str(bad), "--state-dir", str(tmp_path / "state"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "workers[0].budget" in proc.stderr


def test_cli_empty_goal_and_missing_targets_exit_2(tmp_path: Path) -> None:
    proc = cortex("plan", "   ", "--targets", str(FLEET), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 2 and "goal: the goal is empty" in proc.stderr
    proc = cortex("plan", "audit", "--targets", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 2 and "targets must be a directory" in proc.stderr


def test_unreachable_redis_url_fails_clearly_after_bounded_retries(tmp_path: Path) -> None:
    good = tmp_path / "good"
    assert cortex("plan", "run the tests", "--targets", str(FLEET), "--out", str(good), cwd=tmp_path).returncode == 0
    env = {"CORTEX_REDIS_URL": "redis://:s3cret@127.0.0.1:1/0", "CORTEX_REDIS_CONNECT_ATTEMPTS": "2"}
    proc = cortex("run", str(good / "plan.json"), "--state-dir", str(tmp_path / "state"), cwd=tmp_path, env=env)
    assert proc.returncode == 3
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0 after" in proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout
