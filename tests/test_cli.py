"""The CLI end to end: init, plan, run (embedded Redis), status, history, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import FLEET
from .test_inputs import cortex

pytestmark = pytest.mark.timeout(180)


def small_config(tmp_path: Path) -> tuple[Path, Path]:
    assert cortex("init", str(tmp_path / "cfg"), cwd=tmp_path).returncode == 0
    roster_path, cluster_path = tmp_path / "cfg" / "roster.yaml", tmp_path / "cfg" / "cluster.yaml"
    cluster = yaml.safe_load(cluster_path.read_text())
    cluster["nodes"] = [n for n in cluster["nodes"] if n["name"] in ("k3s-master01", "k3s-worker01", "k3s-worker02")]
    cluster_path.write_text(yaml.safe_dump(cluster))
    roster = yaml.safe_load(roster_path.read_text())
    for w in roster["worker_types"]:
        w["count"] = 1 if w["name"] in ("catalog", "analysis", "review", "test") else 0
    roster_path.write_text(yaml.safe_dump(roster))
    return roster_path, cluster_path


def on_a_terminal(args: list[str], cwd: Path) -> str:
    """What ``cortex ARGS`` prints when its standard output is a terminal (a pseudo-terminal here)."""
    import os
    import subprocess
    import sys

    primary, secondary = os.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "cortex", *args], stdout=secondary, cwd=cwd, env=env)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # EIO: the other end closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode(errors="replace")


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    assert cortex("init", str(tmp_path), cwd=tmp_path).returncode == 0
    again = cortex("init", str(tmp_path), cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert cortex("init", str(tmp_path), "--force", cwd=tmp_path).returncode == 0


@pytest.mark.slow(30)
@pytest.mark.integration
def test_plan_run_status_history_report(tmp_path: Path) -> None:
    roster, cluster = small_config(tmp_path)
    out = tmp_path / "plans"
    planned = cortex(
        "plan",
        "discover the inventory of assets",
        "--targets",
        str(FLEET),
        "--out",
        str(out),
        "--roster",
        str(roster),
        "--cluster",
        str(cluster),
        cwd=tmp_path,
    )
    assert planned.returncode == 0, planned.stderr
    state = tmp_path / "state"
    ran = cortex("run", str(out / "plan.json"), "--state-dir", str(state), "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr + ran.stdout
    result = json.loads(ran.stdout)  # the live display went to standard error; the result alone to standard out
    assert result["status"] == "succeeded" and Path(result["report_md"]).is_file()
    current = json.loads((state / "current-execution.json").read_text())
    run_id = current["run_id"]
    assert current["status"] == "succeeded" and current["phase"] == 5
    assert current["tasks"]["inventory"]["succeeded"] == 12  # discover + metrics on 6 repositories
    distribution = json.loads((state / "worker-distribution.json").read_text())
    assert set(distribution["nodes"]) == {"k3s-worker01", "k3s-worker02"}

    status = cortex("status", "--state-dir", str(state), "--json", cwd=tmp_path)
    assert status.returncode == 0 and json.loads(status.stdout)["run_id"] == run_id
    history = cortex("history", "--state-dir", str(state), cwd=tmp_path)
    assert run_id in history.stdout
    rows = json.loads(cortex("history", "--state-dir", str(state), "--json", cwd=tmp_path).stdout)
    assert [r["run_id"] for r in rows] == [run_id] and rows[0]["status"] == "succeeded"
    exact = cortex("report", run_id, "--state-dir", str(state), "--json", cwd=tmp_path)
    assert json.loads(exact.stdout)["run_id"] == run_id  # exact JSON, however long its lines
    report = cortex("report", run_id, "--state-dir", str(state), cwd=tmp_path)
    assert report.returncode == 0 and "Tasks by master" in report.stdout and "repository 6" in report.stdout
    shown = on_a_terminal(["report", run_id, "--state-dir", str(state)], tmp_path)
    assert "Tasks by master" in shown and "## Tasks by master" not in shown  # rendered, not the source
    missing = cortex("report", "nope", "--state-dir", str(state), cwd=tmp_path)
    assert missing.returncode == 5 and "no archived execution" in missing.stderr


def test_status_without_any_run_says_so(tmp_path: Path) -> None:
    proc = cortex("status", "--state-dir", str(tmp_path / "empty"), cwd=tmp_path)
    assert proc.returncode == 5 and "no execution recorded" in proc.stderr


def test_every_command_has_short_help_and_an_example() -> None:
    import typer.main

    from cortex.cli import app

    root = typer.main.get_command(app)
    missing = []

    def walk(group: Any, prefix: list[str]) -> None:
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):  # a group of commands (typer ships its own click)
                walk(cmd, [*prefix, name])
            elif "Examples:" not in (cmd.epilog or "") or f"cortex {' '.join([*prefix, name])}" not in cmd.epilog:
                missing.append(" ".join([*prefix, name]))

    walk(root, [])
    assert missing == [] and len(root.commands) > 15  # type: ignore[attr-defined]
    shown = cortex("catalog", "get", "-h", cwd=Path.cwd())
    assert shown.returncode == 0 and "$ cortex catalog get repo:payments-api --json" in shown.stdout
    version = cortex("--version", cwd=Path.cwd())
    assert version.returncode == 0 and version.stdout.startswith("cortex ")


def test_plan_json_is_exact_and_names_what_it_wrote(tmp_path: Path) -> None:
    planned = cortex(
        "plan", "audit security", "--targets", str(FLEET), "--out", str(tmp_path / "p"), "--json", cwd=tmp_path
    )
    assert planned.returncode == 0, planned.stderr
    data = json.loads(planned.stdout)
    plan = json.loads((tmp_path / "p" / "plan.json").read_text())
    assert data["plan_id"] == plan["id"] and data["tasks"] == len(plan["tasks"])
    assert str(tmp_path / "p" / "plan.json") in data["files"]


def test_a_bad_log_level_is_refused(tmp_path: Path) -> None:
    bad = cortex("--log-level", "loud", "status", "--state-dir", str(tmp_path), cwd=tmp_path)
    assert bad.returncode == 2 and "--log-level" in bad.stderr and "debug, info, warning, error" in bad.stderr


def test_the_web_view_refuses_to_be_exposed_without_tokens(tmp_path: Path) -> None:
    exposed = cortex("ui", "--host", "0.0.0.0", cwd=tmp_path)
    assert exposed.returncode == 2 and "--host" in exposed.stderr and "--config" in exposed.stderr
