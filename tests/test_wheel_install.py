"""Cortex installed the ordinary way: a wheel built from this checkout, installed without extras into a fresh
environment, runs the demo with the exact results test_demo requires of this checkout (``demo_results``). (Before
per-target environments, a plain install reported a suite that never ran as passed: pytest was only a dev extra.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cortex.toolset.pyenv import uv_binary

from .conftest import ROOT
from .demo_results import check_tool_results

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CORTEX_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env["CORTEX_MODEL_REQUESTS"] = "local-only"
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def demo(cortex: list[str], where: Path) -> dict[str, Any]:
    """Run ``cortex demo`` in a directory of its own (it writes plans/ where it runs) and return its report."""
    where.mkdir()
    shutil.copytree(ROOT / "examples" / "fleet", where / "examples" / "fleet")
    done = run([*cortex, "demo", "--state-dir", str(where / "state")], where)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (report,) = (where / "state" / "runs").glob("*/report.json")
    data: dict[str, Any] = json.loads(report.read_text())
    return data


def test_a_wheel_installed_without_extras_gives_the_same_results(tmp_path: Path) -> None:
    uv = uv_binary()
    built = run([uv, "build", "--wheel", "--out-dir", str(tmp_path / "dist"), str(ROOT)], ROOT)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("cortex_orchestrator-*.whl")
    env = tmp_path / "plain"
    assert run([uv, "venv", "--quiet", "--python", sys.executable, str(env)], tmp_path).returncode == 0
    installed = run([uv, "pip", "install", "--quiet", "--python", str(env / "bin" / "python"), str(wheel)], tmp_path)
    assert installed.returncode == 0, installed.stderr
    probe = run([str(env / "bin" / "python"), "-c", "import cortex, sys; print(cortex.__file__)"], tmp_path)
    assert str(env) in probe.stdout  # the wheel's copy, not this checkout's sources

    plain = demo([str(env / "bin" / "cortex")], tmp_path / "from-wheel")
    assert plain["status"] == "succeeded"
    outputs = check_tool_results(plain)  # every finding, suite result and coverage figure the checkout gives
    assert outputs["testing.run-tests:payments-api"]["status"] == "failed"
    assert outputs["testing.run-tests:auth-lib"]["status"] == "passed"
