"""Targets are confined to their root: a symbolic link that leads out of a target (or a target directory that is a
link) is not followed, at plan time or at run time, and it is reported."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from cortex.planner import build_plan
from cortex.repo import declared_packages
from cortex.roster import load_cluster, load_roster
from cortex.toolset.inventory import discover
from cortex.toolset.pyenv import Env
from cortex.toolset.suites import run_suite

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    """A fleet with one real repository (``app``) and, outside it, a directory the links point into."""
    outside = tmp_path / "outside"
    (outside / "tests").mkdir(parents=True)
    (outside / "tests" / "test_outside.py").write_text("def test_outside():\n    assert False, 'read outside'\n")
    (outside / "requirements.txt").write_text("django==1.2\n")
    (outside / "Dockerfile").write_text("FROM python:3.12\n")
    fleet = tmp_path / "fleet"
    app = fleet / "app"
    (app / "tests").mkdir(parents=True)
    (app / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "1"\n')
    (app / "tests" / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    (app / "tests" / "elsewhere").symlink_to(outside / "tests")
    (app / "requirements.txt").symlink_to(outside / "requirements.txt")
    (app / "Dockerfile").symlink_to(outside / "Dockerfile")
    (fleet / "borrowed").symlink_to(outside, target_is_directory=True)
    return fleet


def test_the_plan_follows_no_link_out_of_a_target_and_says_so(fleet: Path) -> None:
    plan = build_plan("audit security and run the tests", fleet, load_roster(), load_cluster())
    assert [t.name for t in plan.targets] == ["app"]  # "borrowed" is a link: not a target
    (app,) = plan.targets
    assert "docker" not in app.traits  # its Dockerfile is a link out of it
    assert sorted(link.split(" -> ")[0] for link in app.links_outside) == [
        "Dockerfile",
        "requirements.txt",
        "tests/elsewhere",
    ]
    notes = " ".join(plan.notes)
    assert "borrowed ->" in notes and "app: symbolic links leading out of it are not followed" in notes
    assert plan.id == plan.content_id()


def test_discovery_reads_nothing_through_a_link_and_reports_each_one(fleet: Path) -> None:
    app = fleet / "app"
    assert declared_packages(app).packages == []  # requirements.txt leads outside: django 1.2 is not app's
    found = discover(app)
    links = sorted(f["file"] for f in found["findings"] if f["id"] == "link-outside-repository")
    assert links == ["Dockerfile", "requirements.txt", "tests/elsewhere"]
    assert found["dockerfiles"] == []


def test_the_test_suite_does_not_collect_tests_through_a_link(fleet: Path, tmp_path: Path) -> None:
    app = fleet / "app"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = Env(python=Path(sys.executable), key="cortex", reused=True, build_s=0.0)  # has pytest and coverage
    run = asyncio.run(run_suite(env, app, scratch, timeout_s=60, coverage=False))
    assert run.status == "passed" and run.counts["tests"] == 1  # test_outside.py would fail if collected
