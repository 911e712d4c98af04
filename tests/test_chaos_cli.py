"""``cortex chaos`` and ``cortex takeover`` as a user runs them: the verification table, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cortex.coord.server import EmbeddedRedis

from .test_inputs import cortex

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def test_chaos_command_prints_the_verification_and_exits_0_when_nothing_was_lost(tmp_path: Path) -> None:
    argv = ["chaos", "--tasks", "60", "--seconds", "0.3", "--faults", "kill-worker", "--rate", "30"]
    argv += ["--max-faults", "1", "--state-dir", str(tmp_path / "state"), "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "cortex", *argv], capture_output=True, text=True, timeout=140, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["expected"], result["completed"], result["lost"], result["duplicated"]) == (60, 60, 0, 0)
    assert [f["kind"] for f in result["faults"]] == ["kill-worker"] and result["faults"][0]["recovered_s"] > 0
    assert Path(result["report"]).is_file() and result["status"] == "succeeded"


def test_chaos_and_takeover_refuse_bad_input(tmp_path: Path) -> None:
    bad = cortex("chaos", "--faults", "kill-worker,unplug-cable", cwd=tmp_path)
    assert bad.returncode == 2 and "--faults: unknown fault(s) unplug-cable" in bad.stderr
    assert "known: kill-worker" in bad.stderr
    rate = cortex("chaos", "--rate", "-1", cwd=tmp_path)
    assert rate.returncode == 2 and "--rate: must be above 0" in rate.stderr
    missing = cortex("chaos", str(tmp_path / "nope.json"), cwd=tmp_path)
    assert missing.returncode == 2 and "nope.json" in missing.stderr
    assert not (tmp_path / ".cortex-chaos").exists()  # nothing started, nothing written
    run_id = cortex("run", "x.json", "--run-id", "../evil", cwd=tmp_path)
    assert run_id.returncode == 2 and "--run-id: '../evil' is not a run id" in run_id.stderr
    no_url = cortex("takeover", "r1", cwd=tmp_path, env={"CORTEX_REDIS_URL": ""})
    assert no_url.returncode == 2 and "CORTEX_REDIS_URL: must be set to name" in no_url.stderr
    with EmbeddedRedis(appendonly=False) as server:
        unknown = cortex("takeover", "r1", cwd=tmp_path, env={**os.environ, "CORTEX_REDIS_URL": server.url})
    assert unknown.returncode == 5 and "no run 'r1' in Redis" in unknown.stderr
