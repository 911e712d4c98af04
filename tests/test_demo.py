"""The README's main job as a user gets it: Cortex built as a wheel from this checkout and installed without extras
into a fresh environment, then ``cortex demo``: the default roster and cluster over examples/fleet, end to end,
with the exact results each master's tools must report for the fleet. (Before per-target environments, a plain
install reported a suite that never ran as passed: pytest was only a dev extra.) One demo serves both questions:
a second one, from the checkout, cost the suite a whole run."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cortex.models import Plan
from cortex.models.report import Report
from cortex.planner import build_plan, load_plan
from cortex.roster import load_cluster, load_roster
from cortex.runtime import history
from cortex.runtime.report import render_markdown
from cortex.toolset.pyenv import uv_binary

from .conftest import ROOT

# a whole demo takes 70 s alone and about 150 s beside the rest of the suite on a slow host
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def git_out(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``argv`` as a user's shell would run it: none of the suite's Cortex settings, no path to this checkout."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CORTEX_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env["CORTEX_MODEL_REQUESTS"] = "local-only"
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def install_wheel(tmp: Path) -> Path:
    """Build a wheel of this checkout and install it, without extras, into a fresh environment; its ``bin``."""
    uv = uv_binary()
    built = run([uv, "build", "--wheel", "--out-dir", str(tmp / "dist"), str(ROOT)], ROOT)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp / "dist").glob("cortex_orchestrator-*.whl")
    env = tmp / "plain"
    assert run([uv, "venv", "--quiet", "--python", sys.executable, str(env)], tmp).returncode == 0
    installed = run([uv, "pip", "install", "--quiet", "--python", str(env / "bin" / "python"), str(wheel)], tmp)
    assert installed.returncode == 0, installed.stderr
    probe = run([str(env / "bin" / "python"), "-c", "import cortex, sys; print(cortex.__file__)"], tmp)
    assert str(env) in probe.stdout  # the wheel's copy, not this checkout's sources
    return env / "bin"


def check_tool_results(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Assert the findings, test results, coverage and workflow findings of a demo report over examples/fleet;
    return every task's output by task id."""
    outputs = {t["id"]: t["output"] for t in report["tasks"]}

    def found(prefix: str) -> set[tuple[str, str, str]]:
        return {
            (task.split(":")[1], f["tool"], f["id"])
            for task, out in outputs.items()
            if task.startswith(prefix)
            for f in out.get("findings", [])
        }

    assert found("security.dependency-audit") == {
        ("payments-api", "osv", "PYSEC-2018-28"),
        ("payments-api", "osv", "PYSEC-2023-74"),
        ("payments-api", "osv", "PYSEC-2021-142"),
        ("inventory-service", "osv", "PYSEC-2019-217"),
        ("inventory-service", "osv", "PYSEC-2021-66"),
        ("auth-lib", "osv", "PYSEC-2022-202"),
        ("web-frontend", "osv", "GHSA-p6mc-m468-83gw"),
        ("web-frontend", "osv", "GHSA-35jh-r3h4-6jhm"),
        ("web-frontend", "osv", "GHSA-xvch-5gv4-984h"),
        ("web-frontend", "osv", "GHSA-rv95-896h-c2vc"),
        ("billing-worker", "osv", "PYSEC-2018-28"),
        ("billing-worker", "osv", "PYSEC-2023-74"),
        ("edge-proxy", "osv", "GO-2020-0015"),
    }
    assert found("security.static-analysis") == {
        ("payments-api", "bandit", "B602"),
        ("payments-api", "bandit", "B404"),
        ("billing-worker", "bandit", "B105"),
    }
    assert found("security.secrets") == {
        ("payments-api", "detect-secrets", "AWS Access Key"),
        ("billing-worker", "detect-secrets", "GitHub Token"),
        ("billing-worker", "detect-secrets", "Base64 High Entropy String"),
    }
    # the unparsable manifest is a finding with its location, and hid nothing else of its repository
    assert found("inventory.discover") == {("billing-worker", "inventory", "unparsable-manifest")}
    failing = {t for out in outputs.values() for t in out.get("failing", [])}
    assert failing == {"tests/test_money.py::test_apply_fee_rounds_to_nearest_cent"}
    flaky = {t for out in outputs.values() for t in out.get("flaky", [])}
    assert flaky == {"tests/test_cache.py::test_warehouse_cache_is_warm"}
    coverage = {
        task.split(":")[1]: out["coverage_percent"]
        for task, out in outputs.items()
        if task.startswith("testing.run-tests")
    }
    assert set(coverage) == {"payments-api", "inventory-service", "auth-lib", "billing-worker"}
    # measured over every file of the target's packages, imported by a test or not (payments' metrics.py and
    # inventory's app.py are not), not over what the tests happened to import
    assert coverage == {"auth-lib": 100.0, "billing-worker": 71.43, "inventory-service": 56.52, "payments-api": 47.83}
    workflow_rules = {
        (task.split(":")[1], f["rule"], f["where"].split(".github/workflows/")[1])
        for task, out in outputs.items()
        if task.startswith("cicd.workflow-audit")
        for f in out["findings"]
    }
    ci, build, test = "ci.yml", "build.yaml", "test.yml"
    assert workflow_rules == {
        ("payments-api", "permissions", ci),
        ("payments-api", "concurrency", f"{ci}:jobs.test"),
        ("payments-api", "concurrency", f"{ci}:jobs.lint"),
        ("payments-api", "job-timeout", f"{ci}:jobs.test"),
        ("payments-api", "job-timeout", f"{ci}:jobs.lint"),
        ("payments-api", "needless-sequence", f"{ci}:jobs.lint"),
        ("payments-api", "no-dependency-cache", f"{ci}:jobs.test"),
        ("payments-api", "no-dependency-cache", f"{ci}:jobs.lint"),
        ("payments-api", "unpinned-action", f"{ci}:jobs.test"),
        ("payments-api", "unpinned-action", f"{ci}:jobs.lint"),
        ("inventory-service", "permissions", build),
        ("inventory-service", "unpinned-action", f"{build}:jobs.build"),
        ("web-frontend", "permissions", test),
        ("web-frontend", "concurrency", f"{test}:jobs.unit"),
        ("web-frontend", "job-timeout", f"{test}:jobs.unit"),
        ("web-frontend", "no-dependency-cache", f"{test}:jobs.unit"),
        ("web-frontend", "unpinned-action", f"{test}:jobs.unit"),
        ("payments-api", "no-test-matrix", f"{ci}:jobs.test"),
        ("inventory-service", "no-test-matrix", f"{build}:jobs.build"),
        ("web-frontend", "no-test-matrix", f"{test}:jobs.unit"),
    }
    zizmor = {
        task.split(":")[1]: set(out["by_rule"])
        for task, out in outputs.items()
        if task.startswith("cicd.workflow-security")
    }
    assert zizmor == {
        "payments-api": {"artipacked", "excessive-permissions", "unpinned-uses"},
        "inventory-service": {"artipacked", "unpinned-uses"},
        "web-frontend": {"artipacked", "excessive-permissions", "unpinned-uses"},
    }
    results = report["results"]
    assert results["inventory"]["assets"]["repository"] == 6
    node = outputs["testing.run-node-tests:web-frontend"] if shutil.which("npm") else None
    if node is not None:  # Node is optional for Cortex: without it the task is skipped (tested in test_graphrun)
        assert (node["tests"], node["passed"], node["failures"]) == (2, 2, 0)
    extra = 2 if node is not None else 0  # the Node suite's two passing tests
    assert results["testing"]["tests"] == {
        "tests": 10 + extra,
        "passed": 8 + extra,
        "failures": 2,
        "errors": 0,
        "skipped": 0,
        "failing_after_reruns": 1,
        "flaky": 1,
    }
    assert results["testing"]["coverage"] == coverage
    return outputs


def check_a_redelivered_bump_renders(report: dict[str, Any], plan: Plan) -> None:
    """The report of a run whose bump task was delivered again after it made its branch (a worker's heartbeat
    lapsed mid-task) still renders, and says where the first delivery's figures are."""
    again = copy.deepcopy(report)
    task = next(t for t in again["tasks"] if t["id"] == "development.bump-pin:payments-api:requests")
    out = task["output"]
    task["output"] = {k: out[k] for k in ("repository", "package", "ecosystem", "from", "to", "file", "branch")}
    task["output"].update(commit=out["commit"], title=out["title"], redelivered=True, fixed=True, tests=None)
    md = render_markdown(Report.model_validate(again), plan)
    assert "Rendering failed" not in md
    assert "bumps requests 2.19.0 to 2.31.0 in `pyproject.toml`; made by an earlier delivery of this task" in md


def check_next_plan_learns(plan: Plan, report: dict[str, Any], fleet: Path, state: Path) -> None:
    """The run was recorded; the next plan for the same goal learns every estimate it can from it, expects the
    handoffs it admitted, and states the first plan's error as the report measured it."""
    assert report["estimates"]["by_basis"] == {"default": report["estimates"]["tasks_compared"]}
    runs, problems = history.load_local(state)
    assert problems == [] and [r.run_id for r in runs] == [report["run_id"]]
    learned = build_plan(plan.goal, fleet, load_roster(), load_cluster(), history=runs)
    measured = {t["id"]: t["duration_s"] for t in report["tasks"] if t["state"] == "succeeded"}
    for t in learned.tasks:
        if t.id in measured:  # one sample: the estimate is that measurement
            assert (t.estimate.basis, t.estimate.seconds, t.estimate.samples) == ("target", round(measured[t.id], 3), 1)
        else:
            assert t.estimate.basis == "default"
    admitted = {h["task"] for h in report["handoffs"] if h["decision"] == "admitted"}
    ran = {t for t in admitted if t in measured}
    assert ran and {e.id for e in learned.expected} == ran
    assert {e.task_id for e in learned.schedule.entries if e.expected} == ran
    assert learned.schedule.makespan_s >= learned.schedule.lower_bound_s
    assert learned.previous is not None and learned.previous.run_id == report["run_id"]
    assert learned.previous.makespan_error == report["makespan"]["error"]
    assert learned.history_runs == 1 and learned.id != plan.id


@pytest.mark.slow(150)
def test_the_demo_from_a_plain_wheel_install(tmp_path: Path) -> None:
    bin_dir = install_wheel(tmp_path)
    where = tmp_path / "checkout"  # `cortex demo` runs from a repository root: examples/fleet, and plans/ written
    where.mkdir()
    shutil.copytree(ROOT / "examples" / "fleet", where / "examples" / "fleet")
    state = tmp_path / "state"
    done = run([str(bin_dir / "cortex"), "demo", "--state-dir", str(state)], where)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    plan = load_plan(where / "plans" / "full" / "plan.json")
    (run_dir,) = (state / "runs").glob("*/report.json")
    report = json.loads(run_dir.read_text())
    (archive,) = (state / "archives").glob("CORTEX-EXEC-*")
    fleet = state / "fleet"  # the demo's working copy of examples/fleet
    assert report["status"] == "succeeded"
    # a run never changes its targets (inventory-service's suite writes a file into its tree: it runs in a copy),
    # or the next run's cache keys would change with them
    assert {repo.name: git_out(repo, "status", "--porcelain") for repo in fleet.iterdir()} == {
        repo.name: "" for repo in fleet.iterdir()
    }
    check_next_plan_learns(plan, report, fleet, state)
    md = (run_dir.parent / "report.md").read_text()
    assert "## Tasks by master" in md and "Rendering failed" not in md
    check_a_redelivered_bump_renders(report, plan)
    written = md.split("## Files and branches written", 1)[1].split("\n## ", 1)[0]
    # every file says which node wrote it (no filesystem is shared between nodes); branches say where they are
    assert all(
        line.endswith(")") and "(on k3s-worker0" in line for line in written.splitlines() if line.startswith("- `/")
    )
    assert ": branch cortex/fix-" in written
    assert {p["node"] for p in report["processes"].values() if p["kind"] == "worker"} == {
        f"k3s-worker0{i}" for i in range(1, 5)
    }
    outputs = check_tool_results(report)
    assert outputs["testing.run-tests:payments-api"]["status"] == "failed"
    assert outputs["testing.run-tests:auth-lib"]["status"] == "passed"
    results = report["results"]
    assert "development.fix-tests:payments-api" in {h["task"] for h in report["handoffs"]}
    # the three repositories deploying a Kubernetes Service, each on the metrics it exposes
    metrics = {"payments-api": "payments_requests_total", "inventory-service": "http_requests_total",
               "edge-proxy": "edge_proxy_requests_total"}  # fmt: skip
    for service, series in metrics.items():
        monitoring = outputs[f"monitoring.dashboards:{service}"]
        assert (monitoring["dashboards"], monitoring["alerts"], monitoring["service_monitors"]) == (1, 4, 1)
        assert monitoring["instrumentation"]["requests"] == series and monitoring["instrumentation"]["detected"]
        assert all(Path(f).is_file() and str(state) in f for f in monitoring["files"])
        board = json.loads(Path(monitoring["files"][1]).read_text())
        assert series in board["panels"][0]["targets"][0]["expr"]
    assert not any(t.startswith("monitoring.dashboards:auth-lib") for t in outputs)
    assert results["monitoring"]["written"] == {"dashboards": 3, "alerts": 12}
    patches = [p for task, out in outputs.items() if task.startswith("cicd.workflow-audit") for p in out["patches"]]
    assert sorted(Path(p["patch"]).name for p in patches) == ["build.patch", "ci.patch", "test.patch"]
    assert results["cicd"]["written"]["workflow_patches"] == 3
    # security handed each fixable pin to development, which made a verified branch in the working copy, or said
    # why it could not
    bumps = {t.split(":", 1)[1]: out for t, out in outputs.items() if t.startswith("development.bump-pin")}
    assert {k: (o["from"], o["to"], o["fixed"]) for k, o in bumps.items()} == {
        "payments-api:requests": ("2.19.0", "2.31.0", True),
        "payments-api:pyyaml": ("5.3", "5.4", False),  # 5.4's sdist no longer builds (Cython 3): said so
        "inventory-service:jinja2": ("2.10", "2.11.3", True),
        "auth-lib:pyjwt": ("1.7.1", "2.4.0", True),
        "web-frontend:lodash": ("4.17.15", "4.17.21", True),
        "web-frontend:minimist": ("1.2.0", "1.2.6", True),
        "web-frontend:express": ("4.17.1", "4.19.2", True),
        "billing-worker:requests": ("2.19.0", "2.31.0", True),
    }
    assert bumps["payments-api:pyyaml"]["branch"] is None
    assert "pyyaml 5.4 could not be installed" in bumps["payments-api:pyyaml"]["reason"]
    for key, out in bumps.items():
        if out["fixed"]:  # the tests after the bump ran with the bumped version installed
            assert out["verified_version"] == out["to"], key
            assert out["tests"]["regressions"] == [], key
    assert bumps["inventory-service:jinja2"]["tests"]["flaky"] == ["tests/test_cache.py::test_warehouse_cache_is_warm"]
    assert bumps["inventory-service:jinja2"]["tests"]["fixed"] == []  # a flaky test is not fixed by a bump
    repo = fleet / "payments-api"
    assert git_out(repo, "diff", "--name-only", "main", "cortex/fix-requests-2.31.0").split() == ["pyproject.toml"]
    title = git_out(repo, "log", "-1", "--format=%s", "cortex/fix-requests-2.31.0")
    assert title == "Bump requests from 2.19.0 to 2.31.0 (PYSEC-2018-28, PYSEC-2023-74)"
    assert git_out(repo, "status", "--porcelain") == ""  # the branch was made in a separate worktree
    web = fleet / "web-frontend"
    assert sorted(git_out(web, "diff", "--name-only", "main", "cortex/fix-lodash-4.17.21").split()) == [
        "package-lock.json",
        "package.json",
    ]
    assert json.loads(git_out(web, "show", "cortex/fix-lodash-4.17.21:package.json"))["dependencies"]["lodash"] == (
        "4.17.21"  # an exact pin stays exact
    )
    assert results["development"]["written"]["fix_branches"] == 7
    audit = outputs["security.dependency-audit:edge-proxy"]  # Go: found, and said why no branch was made
    assert [(u["package"], u["reason"]) for u in audit["unfixable"]] == [
        ("golang.org/x/text", "Cortex makes fix branches for PyPI and npm pins; bump to 0.3.3 by hand")
    ]
    # the report lists every finding with its location, one per problem
    findings = report["findings"]
    secret = next(f for f in findings["payments-api"] if f["kind"] == "secret")
    assert (secret["file"], secret["line"], secret["rule"]) == ("src/payments/settings.py", 7, "AWS Access Key")
    bandit = {(f["rule"], f["file"], f["line"]) for f in findings["payments-api"] if f["kind"] == "code"}
    assert bandit == {("B602", "src/payments/receipts.py", 12), ("B404", "src/payments/receipts.py", 7)}
    unpinned = [f for f in findings["payments-api"] if f["rule"] == "unpinned-action"]
    assert [(f["line"], f["sources"]) for f in unpinned] == [(7, ["cortex", "zizmor"]), (8, ["cortex", "zizmor"]),
                                                             (16, ["cortex", "zizmor"])]  # fmt: skip
    vuln = next(f for f in findings["payments-api"] if f["rule"] == "PYSEC-2023-74")
    assert (vuln["installed"], vuln["fixed_in"], vuln["fix_branch"]) == (
        "2.19.0",
        "2.31.0",
        "cortex/fix-requests-2.31.0",
    )
    assert "CVE-2023-32681" in vuln["aliases"]
    tests = {(f["rule"], f["test"]) for r in findings.values() for f in r if f["kind"] == "test"}
    assert tests == {("failing", "tests/test_money.py::test_apply_fee_rounds_to_nearest_cent"),
                     ("flaky", "tests/test_cache.py::test_warehouse_cache_is_warm")}  # fmt: skip
    assert "| `src/payments/settings.py:7` | AWS Access Key | high | detect-secrets |" in md
    assert "| `.github/workflows/ci.yml:7` | unpinned-action | high | cortex, zizmor |" in md
    assert report["databases"][0]["bundled_subset"] and "**Warning:** this is the small subset" in md
    assert "pyyaml 5.3 not bumped to 5.4" in md
    # tests ran in each target's own environment, built from its own files
    envs = {t.split(":")[1]: out["environment"] for t, out in outputs.items() if t.startswith("testing.run-tests")}
    assert {k: e["from"] for k, e in envs.items()} == {
        "payments-api": ["pyproject.toml"],
        "inventory-service": ["requirements.txt"],
        "auth-lib": ["pyproject.toml"],
        "billing-worker": ["requirements.txt"],  # its pyproject.toml does not parse: left out, and said so
    }
    assert envs["billing-worker"]["notes"][0].startswith("pyproject.toml left out: it does not parse")
    assert all(str(state / "envs") in e["python"] for e in envs.values())
    # billing-worker's tests import tabulate, which only it declares: they passed in its own environment
    assert outputs["testing.run-tests:billing-worker"]["status"] == "passed"
    # the archive's lineage graph links each finding to the task, master, worker and target that produced it
    lineage = json.loads((archive / "lineage.json").read_text())
    edges = {(e["from"], e["relation"], e["to"]) for e in lineage["edges"]}
    secret = next(n["id"] for n in lineage["nodes"] if n["kind"] == "finding" and "AWS Access Key" in n["id"])
    assert ("task:security.secrets:payments-api", "found", secret) in edges
    assert ("master:security", "owns", "task:security.secrets:payments-api") in edges
    assert ("task:security.secrets:payments-api", "examined", "target:payments-api") in edges
    assert any(e[0] == "task:security.secrets:payments-api" and e[1] == "ran_on" for e in edges)
    assert (archive / "lineage.mmd").read_text().startswith("flowchart LR")


def test_fix_branch_bumps_only_the_pin_and_describes_itself(tmp_path: Path) -> None:
    from cortex.toolset.development import bump, pr_message

    assert bump('deps = ["a==1.0", "pyjwt==1.7.1"]', "PyJWT", "1.7.1", "2.4.0") == 'deps = ["a==1.0", "pyjwt==2.4.0"]'
    assert bump("jinja2==2.10\nx==2.10\n", "jinja2", "2.10", "2.11.3") == "jinja2==2.11.3\nx==2.10\n"
    with pytest.raises(Exception, match="no pin jinja2==2.10 found"):
        bump("jinja2==2.10.1\n", "jinja2", "2.10", "2.11.3")  # 2.10.1 is not 2.10
    message = pr_message(
        "pkg",
        "1.0",
        "1.2",
        "requirements.txt",
        [{"id": "GHSA-1", "severity": "critical", "summary": "bad"}],
        "3 passed",
        True,
    )
    assert message.startswith("Bump pkg from 1.0 to 1.2 (GHSA-1)\n\n")
    assert "NEEDS HUMAN REVIEW" in message and "not pushed" in message
