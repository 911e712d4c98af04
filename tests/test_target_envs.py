"""A target's tests run with the target's own dependencies, not Cortex's: a package only the target declares,
installed from a wheel this test builds (no network), is what its tests import; a pin bump rebuilds the
environment, and the run after the bump uses the bumped version."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.util
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aredis

from cortex.coord.keys import RunKeys
from cortex.models.task import Estimate, Task
from cortex.toolset.context import Services, TaskContext
from cortex.toolset.registry import handler_for

pytestmark = pytest.mark.timeout(300)

PROBE_TEST = """import importlib.metadata

import probe_dep


def test_the_module_is_the_pinned_one():
    assert probe_dep.VERSION == "1.0"


def test_the_metadata_agrees():
    assert importlib.metadata.version("probe-dep") == probe_dep.VERSION
"""


def wheel(directory: Path, version: str) -> Path:
    """A minimal, valid wheel of ``probe-dep`` (module ``probe_dep``), written by hand."""
    files = {
        "probe_dep/__init__.py": f'VERSION = "{version}"\n',
        f"probe_dep-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: probe-dep\nVersion: {version}\n",
        f"probe_dep-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = f"probe_dep-{version}.dist-info/RECORD"
    lines = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        lines.append(f"{name},sha256={digest},{len(text.encode())}")
    files[record] = "\n".join([*lines, f"{record},,"]) + "\n"
    path = directory / f"probe_dep-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def target(tmp_path: Path) -> Path:
    repo = tmp_path / "probe-service"
    (repo / "tests").mkdir(parents=True)
    (repo / "requirements.txt").write_text("probe-dep==1.0\n")
    (repo / "tests" / "test_probe.py").write_text(PROBE_TEST)
    return repo


def context(repo: Path, services: Services, kind: str, redis: Any = None, **params: object) -> TaskContext:
    task = Task(
        id=f"{kind}:{repo.name}",
        master="testing",
        kind=kind,
        worker_type="test",
        target=repo.name,
        params=params,
        timeout_s=240,
        estimate=Estimate(seconds=1, tokens=0),
    )
    return TaskContext(task, 1, repo, "env-run", "w1", redis, RunKeys("env-run"), services)


def services(tmp_path: Path) -> Services:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel(wheels, "1.0")
    wheel(wheels, "2.0")
    return Services(state_dir=tmp_path / "state", target_index_url="none", target_find_links=[str(wheels)])


def test_the_target_s_tests_import_what_the_target_declares(tmp_path: Path) -> None:
    assert importlib.util.find_spec("probe_dep") is None  # not in Cortex's environment
    repo = target(tmp_path)
    svc = services(tmp_path)
    handler = handler_for("testing.pytest")
    assert handler is not None
    out = asyncio.run(handler(context(repo, svc, "testing.pytest")))
    assert (out["status"], out["tests"], out["passed"]) == ("passed", 2, 2)
    env = out["environment"]
    assert env["from"] == ["requirements.txt"] and env["requirements"] == 1 and not env["reused"]
    assert str(tmp_path / "state" / "envs") in env["python"]
    again = asyncio.run(handler(context(repo, svc, "testing.pytest")))
    assert again["environment"]["reused"] and again["environment"]["key"] == env["key"]  # cached by the files


def test_an_environment_that_cannot_be_built_fails_the_task_with_the_resolver_s_reason(tmp_path: Path) -> None:
    from cortex.errors import TaskFailed

    repo = target(tmp_path)
    (repo / "requirements.txt").write_text("probe-dep==9.9\n")  # no such wheel, and no index
    handler = handler_for("testing.pytest")
    assert handler is not None
    with pytest.raises(
        TaskFailed, match=r"installing probe-service's dependencies \(requirements.txt\) failed"
    ) as info:
        asyncio.run(handler(context(repo, services(tmp_path), "testing.pytest")))
    assert "probe-dep" in str(info.value) and not info.value.retryable


def git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(["git", *args], cwd=repo, env={**env, "HOME": str(repo)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.integration
async def test_a_bump_is_verified_with_the_bumped_version_installed(redis: aredis.Redis, tmp_path: Path) -> None:
    repo = target(tmp_path)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "probe"]):
        git(repo, *args)
    handler = handler_for("development.bump-pin")
    assert handler is not None
    params = {"package": "probe-dep", "from": "1.0", "to": "2.0", "file": "requirements.txt", "advisories": []}
    out = await handler(context(repo, services(tmp_path), "development.bump-pin", redis, **params))
    assert out["fixed"] and out["verified_version"] == "2.0"
    tests = out["tests"]
    assert tests["before"].startswith("2 passed, 0 failed") and tests["after"].startswith("1 passed, 1 failed")
    # the bumped module says 2.0: the test pinned to 1.0 now fails, and it is reported as the bump's regression
    assert tests["regressions"] == ["tests/test_probe.py::test_the_module_is_the_pinned_one"]
    assert git(repo, "show", f"{out['branch']}:requirements.txt") == "probe-dep==2.0\n"
    log = git(repo, "log", "-1", "--format=%B", out["branch"])
    assert "Cortex-Run: env-run" in log and "Cortex-Task: development.bump-pin:probe-service" in log


@pytest.mark.integration
async def test_a_second_run_never_resets_the_first_run_s_branch(redis: aredis.Redis, tmp_path: Path) -> None:
    repo = target(tmp_path)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "probe"]):
        git(repo, *args)
    handler = handler_for("development.bump-pin")
    assert handler is not None
    svc = services(tmp_path)
    params = {"package": "probe-dep", "from": "1.0", "to": "2.0", "file": "requirements.txt", "advisories": []}
    first = await handler(context(repo, svc, "development.bump-pin", redis, **params))
    again = await handler(context(repo, svc, "development.bump-pin", redis, **params))  # redelivered: same run
    assert (again["branch"], again["commit"], again["redelivered"]) == (first["branch"], first["commit"], True)
    assert again["fixed"] is True and again["tests"] is None  # the branch stands; its figures are the first's
    other = context(repo, svc, "development.bump-pin", redis, **params)
    other.run_id = "a-later-run"
    later = await handler(other)
    assert later["branch"] == "cortex/fix-probe-dep-2.0-2" and later["commit"] != first["commit"]
    assert git(repo, "rev-parse", first["branch"]).strip() == first["commit"]  # the first run's commit stands


def test_no_tests_is_said_so_and_a_suite_that_cannot_run_fails_the_task(tmp_path: Path) -> None:
    from cortex.errors import TaskFailed

    repo = target(tmp_path)
    (repo / "tests" / "test_probe.py").unlink()  # a tests folder with no test in it
    handler = handler_for("testing.pytest")
    assert handler is not None
    svc = services(tmp_path)
    out = asyncio.run(handler(context(repo, svc, "testing.pytest")))
    assert (out["status"], out["tests"], out["coverage_percent"]) == ("no tests", 0, None)
    (repo / "tests" / "conftest.py").write_text("import not_a_module_anywhere\n")
    (repo / "tests" / "test_x.py").write_text("def test_x():\n    pass\n")
    with pytest.raises(TaskFailed, match="pytest could not run the suite of probe-service") as info:
        asyncio.run(handler(context(repo, svc, "testing.pytest")))
    assert "not_a_module_anywhere" in str(info.value) and not info.value.retryable
