"""Ctrl-C (SIGINT to the whole process group, twice) stops a run cleanly: exit 130, state 'aborted', no process
left behind, the embedded Redis stopped and its directory removed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from .conftest import FLEET, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling an observable state file; there is no event to wait on


def test_sigint_to_the_process_group_stops_everything(tmp_path: Path) -> None:
    state = tmp_path / "state"
    stderr = (tmp_path / "stderr").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cortex",
            "run",
            "Run the full catalog toolset across the fleet",
            "--targets",
            str(FLEET),
            "--state-dir",
            str(state),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    current = state / "current-execution.json"

    def started_nodes() -> bool:
        try:
            return json.loads(current.read_text())["phase"] >= 1
        except (FileNotFoundError, json.JSONDecodeError):
            return False

    try:
        _wait_for(started_nodes, 60, "phase 1")
        family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert any("redis-server" in " ".join(psutil.Process(p).cmdline()) for p in family if psutil.pid_exists(p))
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _wait_for(lambda: json.loads(current.read_text())["status"] == "aborted", 30, "cleanup to start")
        os.kill(proc.pid, signal.SIGINT)  # an impatient second Ctrl-C, in the middle of the cleanup
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        stderr.close()
    printed = (tmp_path / "stderr").read_text()
    assert proc.returncode == 130, printed
    assert "interrupted" in printed
    assert json.loads(current.read_text())["status"] == "aborted"
    survivors = [p for p in family if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert survivors == []
