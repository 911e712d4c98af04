"""LLM tasks with the deterministic scripted model: a fix that turns a failing test green on a branch, its
review, every call inside the ledger, and a budget that runs out mid-task degrading as the policy says."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cortex.coord.server import EmbeddedRedis
from cortex.models import Roster
from cortex.planner import build_plan
from cortex.runtime.coordinator import Coordinator, RunResult
from cortex.runtime.options import RunOptions
from cortex.toolset.fleet import working_copy

from .conftest import FLEET
from .openai_server import COMPLETION_TOKENS, PROMPT_TOKENS, OpenAICompatibleServer
from .test_run import small_cluster

pytestmark = pytest.mark.timeout(180)
BUDGET = 6_000

FIXED_MONEY = (
    (FLEET / "payments-api/src/payments/money.py")
    .read_text()
    .replace(
        "    return int(total_cents * (1 + percent / 100))",
        "    return int(total_cents * (100 + percent) / 100 + 0.5)",
    )
)
SCRIPT = {
    "development.fix-tests": [
        {"tool": "read_file", "args": {"path": "tests/test_money.py"}},
        {"tool": "read_file", "args": {"path": "src/payments/money.py"}},
        {"tool": "write_file", "args": {"path": "src/payments/money.py", "content": FIXED_MONEY}},
        {"tool": "run_tests", "args": {}},
        {"output": {"title": "Round the fee half up to the cent", "summary": "apply_fee truncated; it now rounds."}},
    ],
    "review.branch": [
        {"tool": "read_file", "args": {"path": "src/payments/money.py"}},
        {
            "output": {
                "verdict": "approve",
                "findings": [
                    {
                        "file": "src/payments/money.py",
                        "line": 24,
                        "severity": "minor",
                        "message": "float arithmetic; Decimal would make the rounding exact",
                    }
                ],
            }
        },
    ],
    "coordinator.summary": [
        {
            "output": {
                "headline": "One failing test fixed on a branch awaiting review",
                "paragraphs": ["payments-api had 1 failing test; a fix branch makes it pass."],
                "decisions_needed": ["Merge cortex/fix-tests after review."],
            }
        }
    ],
}


def roster(development: dict[str, Any] | None = None, implementation_budget: int = 10_000) -> Roster:
    return Roster.model_validate(
        {
            "masters": [
                {"name": "coordinator", "role": "c", "base_budget": 20_000, "worker_pool": 10_000},
                {
                    "name": "testing",
                    "role": "t",
                    "keywords": ["tests"],
                    "base_budget": 0,
                    "worker_pool": 0,
                    "playbook": [{"name": "run", "kind": "testing.pytest", "worker_type": "test", "when": "python"}],
                },
                {
                    "name": "development",
                    "role": "d",
                    "keywords": ["fix"],
                    "base_budget": 20_000,
                    "worker_pool": 10_000,
                    **(development or {}),
                },
            ],
            "worker_types": [
                {"name": "test", "master": "testing", "count": 2, "budget": 0},
                {"name": "implementation", "master": "development", "count": 1, "budget": implementation_budget},
                {"name": "review", "master": "coordinator", "count": 1, "budget": 10_000},
            ],
        }
    )


async def run(
    tmp_path: Path, r: Roster, script: dict[str, Any], model: str | None = None
) -> tuple[RunResult, dict[str, Any], Path]:
    fleet = working_copy(FLEET, tmp_path / "fleet")
    for repo in ("auth-lib", "inventory-service", "web-frontend"):
        shutil.rmtree(fleet / repo)  # payments-api has the failing test
    path = tmp_path / "script.json"
    path.write_text(json.dumps(script))
    plan = build_plan("run the tests and fix what fails", fleet, r, small_cluster())
    with EmbeddedRedis() as server:
        result = await Coordinator(
            plan, server.url, tmp_path / "state", RunOptions(model=model or f"script:{path}")
        ).run()
    report = json.loads(result.report_json.read_text())  # noqa: ASYNC240
    return result, report, fleet / "payments-api"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.slow(35)
@pytest.mark.integration
async def test_a_scripted_fix_turns_the_failing_test_green_and_is_reviewed(tmp_path: Path) -> None:
    result, report, repo = await run(tmp_path, roster(), SCRIPT)
    tasks = {t["id"]: t for t in report["tasks"]}
    fix = tasks["development.fix-tests:payments-api"]
    assert fix["state"] == "succeeded", fix["error"]
    out = fix["output"]
    assert out["fixed"] == ["tests/test_money.py::test_apply_fee_rounds_to_nearest_cent"] and out["still_failing"] == []
    assert out["files_changed"] == ["src/payments/money.py"] and not out["partial"]
    assert git(repo, "diff", "--name-only", "main", out["branch"]) == "src/payments/money.py"
    assert git(repo, "log", "-1", "--format=%s", out["branch"]) == "Round the fee half up to the cent"
    assert git(repo, "status", "--porcelain") == ""  # made in a separate worktree
    assert "+    return int(total_cents * (100 + percent) / 100 + 0.5)" in Path(out["patch"]).read_text()  # noqa: ASYNC240
    review = tasks[f"review.branch:payments-api:{out['branch'].removeprefix('cortex/')}"]
    assert review["state"] == "succeeded" and review["output"]["verdict"] == "approve"
    assert [(f["file"], f["severity"]) for f in review["output"]["findings"]] == [("src/payments/money.py", "minor")]
    # every token the agents used is in the ledger, and nothing stays reserved
    spent = sum(c["input_tokens"] + c["output_tokens"] for c in out["model_calls"])
    assert len(out["model_calls"]) == 5 and report["tokens"]["development"]["used"] == spent
    assert report["tokens"]["run"]["reserved"] == 0 and report["success_criteria"]["ledger-settled"]
    assert report["tokens"]["run"]["used"] == spent + sum(
        c["input_tokens"] + c["output_tokens"]
        for c in review["output"]["model_calls"] + report["executive_summary"]["model_calls"]
    )
    assert report["models"]["development"]["script:script.json#development.fix-tests"]["calls"] == 5
    # the burn-down comes from every call, in time order, and adds up to what the ledger says was used
    spends = report["token_spend"]
    assert sum(s["tokens"] for s in spends) == report["tokens"]["run"]["used"] and len(spends) >= 7
    assert [s["at"] for s in spends] == sorted(s["at"] for s in spends)
    summary = report["executive_summary"]
    assert summary["headline"] == "One failing test fixed on a branch awaiting review"
    assert summary["by"] == "script:script.json#coordinator.summary"
    md = result.report_md.read_text()  # noqa: ASYNC240
    assert "## Executive summary" in md and "One failing test fixed on a branch awaiting review" in md
    assert "| development | `script:script.json#development.fix-tests` | 5 |" in md
    assert "## Token burn-down\n\n```mermaid\nxychart-beta" in md
    live = json.loads((tmp_path / "state" / "current-execution.json").read_text())["tokens"]  # noqa: ASYNC240
    assert live["development"]["used"] == spent
    assert live["development"]["efficiency"] == round(spent / live["development"]["allocated"], 4)


@pytest.mark.slow(30)
@pytest.mark.integration
async def test_a_budget_that_runs_out_mid_task_degrades_as_the_policy_says(tmp_path: Path) -> None:
    policy = {"below": 0.9, "max_output_tokens": 300, "skip_optional": False, "partial": True}
    development = {"base_budget": 0, "worker_pool": BUDGET, "max_output_tokens": 1_000, "degradation": policy}
    result, report, repo = await run(tmp_path, roster(development, BUDGET), SCRIPT)
    fix = next(t for t in report["tasks"] if t["id"] == "development.fix-tests:payments-api")
    out = fix["output"]
    assert fix["state"] == "succeeded" and out["partial"] and "budget exhausted" in out["partial_reason"]
    # the last call (the agent's summary) was refused after the fix was written: the changes so far are kept
    assert git(repo, "log", "-1", "--format=%s", out["branch"]) == "Partial fix for 1 failing test(s)"
    assert len(out["model_calls"]) == 4 and out["degraded"] == ["output limit 1000 -> 300 tokens"]
    steps = [d["step"] for d in report["degradations"]]
    assert steps == ["output limit 1000 -> 300 tokens"]
    assert "development has" in report["degradations"][0]["why"]
    dev = report["tokens"]["development"]
    assert dev["used"] <= dev["allocated"] and dev["reserved"] == 0 and dev["overrun"] == 0


@pytest.mark.integration
async def test_an_openai_compatible_endpoint_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = {"You fix failing tests": SCRIPT["development.fix-tests"], "You review a change": SCRIPT["review.branch"]}
    with OpenAICompatibleServer(scripts) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)  # the run's processes inherit it
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        result, report, repo = await run(tmp_path, roster(), {}, model="openai:local-test-model")
    tasks = {t["id"]: t for t in report["tasks"]}
    fix = tasks["development.fix-tests:payments-api"]
    assert fix["state"] == "succeeded", fix["error"]
    assert fix["output"]["fixed"] == ["tests/test_money.py::test_apply_fee_rounds_to_nearest_cent"]
    assert server.answered == 7  # five turns of the fix, two of the review
    assert {r["model"] for r in server.requests} == {"local-test-model"}
    per_call = PROMPT_TOKENS + COMPLETION_TOKENS
    assert report["tokens"]["development"]["used"] == 5 * per_call  # the ledger holds what the server reported
    assert report["tokens"]["coordinator"]["used"] == 2 * per_call
    usage = report["models"]["development"]["local-test-model"]
    assert (usage["input"], usage["output"], usage["calls"]) == (5 * PROMPT_TOKENS, 5 * COMPLETION_TOKENS, 5)
    archive = "".join(p.read_text() for p in result.archive.rglob("*") if p.is_file())  # noqa: ASYNC240
    assert "sk-test-not-a-real-key" not in archive + json.dumps(report)  # keys never reach reports or archives


def test_remote_model_endpoints_are_refused_inside_the_test_suite() -> None:
    from cortex.agents.providers import build_model
    from cortex.errors import ModelUnavailable

    env = {"CORTEX_MODEL_REQUESTS": "local-only", "OPENAI_API_KEY": "x", "ANTHROPIC_API_KEY": "y"}
    with pytest.raises(ModelUnavailable, match="blocked"):
        build_model("openai:gpt-4o-mini", env)
    with pytest.raises(ModelUnavailable, match="blocked"):
        build_model("anthropic:claude-haiku-4-5", env)
    with pytest.raises(ModelUnavailable, match="OPENAI_API_KEY is not set"):
        build_model("openai:gpt-4o-mini", {})
    with pytest.raises(ModelUnavailable, match="unknown model provider 'gemini'"):
        build_model("gemini:x", env)
    with pytest.raises(ModelUnavailable, match="not provider:model"):
        build_model("gpt-4o", env)
    with pytest.raises(ModelUnavailable, match="cannot import"):
        build_model("function:tests.nowhere:answer", env)
    model = build_model("function:tests.test_agents:answer_in_prose", env)
    assert model.model_name == "function:tests.test_agents:answer_in_prose"


def answer_in_prose(messages: list[Any], info: Any) -> Any:
    """A FunctionModel function, for the ``function:`` provider."""
    from pydantic_ai.messages import ModelResponse, TextPart

    return ModelResponse(parts=[TextPart("fine")])


def test_the_price_table_gives_the_cost_and_a_bad_table_is_refused(tmp_path: Path) -> None:
    from cortex.agents.prices import load_prices
    from cortex.errors import InputError
    from cortex.runtime.report import model_usage

    table = tmp_path / "prices.yaml"
    table.write_text("local-test-model: {input_per_mtok: 2.0, output_per_mtok: 8.0}\n")
    raw = {"development|local-test-model|input": "1000000", "development|local-test-model|output": "500000"}
    usage = model_usage(
        {**raw, "development|local-test-model|calls": "3", "coordinator|other:m|input": "5"}, load_prices(table)
    )
    dev = usage["development"]["local-test-model"]
    assert (dev.input, dev.output, dev.calls, dev.cost) == (1_000_000, 500_000, 3, 6.0)
    assert usage["coordinator"]["other:m"].cost == "unknown: no price for other:m in the price table"
    table.write_text("local-test-model: {input_per_mtok: -1, output_per_mtok: 8.0}\n")
    with pytest.raises(InputError, match=r"prices.yaml.*local-test-model.*input_per_mtok"):
        load_prices(table)
    table.write_text("- not a mapping\n")
    with pytest.raises(InputError, match="must map model names to prices"):
        load_prices(table)


async def _handler_setup(
    redis: Any, tmp_path: Path, run_id: str, accounts: dict[str, int], script: dict[str, Any]
) -> tuple[Path, Any, Any, Path]:
    """What a worker has when it runs an agent task alone: a working copy of the fleet, the demo plan stored for run
    ``run_id``, the ledger's ``accounts`` and the scripted model's file; (fleet, plan, keys, script path)."""
    from cortex.coord.keys import RunKeys
    from cortex.coord.ledger import Ledger
    from cortex.roster import load_cluster, load_roster

    fleet = working_copy(FLEET, tmp_path / "fleet")
    plan = build_plan("Run the full catalog toolset across the fleet", fleet, load_roster(), load_cluster())
    keys = RunKeys(run_id)
    await redis.set(keys.plan, plan.model_dump_json())
    await Ledger(redis, keys).allocate(accounts)
    path = tmp_path / "script.json"
    path.write_text(json.dumps(script))
    return fleet, plan, keys, path


def _context(task: Any, repo: Path, keys: Any, redis: Any, script: Path, tmp_path: Path) -> Any:
    """The context worker ``w1`` gives ``task`` on its first attempt, with the scripted model."""
    from cortex.toolset.context import Services, TaskContext

    return TaskContext(
        task=task,
        attempt=1,
        target_path=repo,
        run_id=keys.run_id,
        worker_id="w1",
        redis=redis,
        keys=keys,
        services=Services(model=f"script:{script}", state_dir=tmp_path / "state"),
    )


async def test_a_documentation_worker_writes_a_runbook_branch_and_nothing_but_markdown(
    redis: Any, tmp_path: Path
) -> None:
    from cortex.coord.ledger import Ledger
    from cortex.models.task import Estimate, Task
    from cortex.toolset.registry import handler_for

    runbook = "# inventory-service runbook\n\nDeployment `inventory-service` in namespace `warehouse`.\n"
    turns = [
        {"tool": "read_file", "args": {"path": "deploy/service.yaml"}},
        {"tool": "write_file", "args": {"path": "RUNBOOK.md", "content": runbook}},
        {"tool": "write_file", "args": {"path": "inventory/stock.py", "content": "oops = True\n"}},
        {"output": {"title": "Add a runbook for inventory-service", "summary": "Deploy, roll back, alerts."}},
    ]
    accounts = {"run": 50_000, "master:monitoring": 30_000, "worker:w1": 8_000}
    fleet, plan, keys, script = await _handler_setup(
        redis, tmp_path, "docs-run", accounts, {"documentation.runbook": turns}
    )
    repo = fleet / "inventory-service"
    task = next(t for t in plan.tasks if t.id == "monitoring.runbook:inventory-service")
    assert task.optional and task.requires_model
    task = Task(**{**task.model_dump(), "estimate": Estimate(seconds=60, tokens=8000)})
    ctx = _context(task, repo, keys, redis, script, tmp_path)
    handler = handler_for("documentation.runbook")
    assert handler is not None
    out = await handler(ctx)
    assert out["files_changed"] == ["RUNBOOK.md"] and out["title"] == "Add a runbook for inventory-service"
    assert git(repo, "diff", "--name-only", "main", out["branch"]) == "RUNBOOK.md"  # the .py write was refused
    assert git(repo, "show", f"{out['branch']}:RUNBOOK.md") == runbook.strip()
    assert (await Ledger(redis, keys).account("master:monitoring")).used == sum(
        c["input_tokens"] + c["output_tokens"] for c in out["model_calls"]
    )


@pytest.mark.integration
async def test_a_fix_delivered_again_reports_what_its_first_delivery_recorded(redis: Any, tmp_path: Path) -> None:
    """A fix task delivered twice in one run (its first worker stalled past its lease): the second delivery finds
    the branch made and reports the first one's test results and lists, from the branch's commit message."""
    from cortex.models.task import Estimate, Task
    from cortex.toolset.registry import handler_for

    accounts = {"run": 50_000, "master:development": 40_000, "worker:w1": 30_000}
    fleet, _, keys, script = await _handler_setup(
        redis, tmp_path, "fix-again", accounts, {"development.fix-tests": SCRIPT["development.fix-tests"]}
    )
    failing = "tests/test_money.py::test_apply_fee_rounds_to_nearest_cent"
    task = Task(
        id="development.fix-tests:payments-api",
        master="development",
        kind="development.fix-tests",
        worker_type="implementation",
        target="payments-api",
        params={"failing": [failing]},
        requires_model=True,
        estimate=Estimate(seconds=120, tokens=8000),
    )

    def context() -> Any:
        return _context(task, fleet / "payments-api", keys, redis, script, tmp_path)

    handler = handler_for("development.fix-tests")
    assert handler is not None
    first = await handler(context())
    assert first["fixed"] == [failing] and first["still_failing"] == [] and not first["partial"], first
    again = await handler(context())
    assert again["redelivered"] and (again["commit"], again["title"]) == (first["commit"], first["title"])
    recorded = ("tests_before", "tests_after", "fixed", "still_failing")
    assert {k: again[k] for k in recorded} == {k: first[k] for k in recorded}
    assert again["handoffs"] == first["handoffs"]  # the review is asked for again (admitted once: a duplicate)


LOAD_AGENT_LAYER = """
import asyncio, json, sys, time
from cortex.toolset.registry import find_handler  # what a worker has loaded before its first agent task

async def main():
    fresh = "pydantic_ai" not in sys.modules
    gaps, last = [], time.monotonic()
    async def tick():
        nonlocal last
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    gaps.clear()
    start = time.monotonic()
    handler = await find_handler("development.fix-tests")
    took = time.monotonic() - start
    from cortex.agents.providers import load_provider  # imported with the agent tasks just now

    await load_provider("openai:any-model")
    ticker.cancel()
    print(json.dumps({"fresh": fresh, "found": handler is not None, "took": took, "max_gap": max(gaps),
                      "openai": "pydantic_ai.models.openai" in sys.modules}))

asyncio.run(main())
"""


@pytest.mark.timeout(120)
def test_loading_the_agent_layer_leaves_the_workers_event_loop_running() -> None:
    # The agent layer's imports take seconds; on a worker's loop they stalled its heartbeat past the lease, and the
    # coordinator handed the running fix to a second worker (CI at a822f50, a half-speed host).
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_AGENT_LAYER], capture_output=True, text=True, timeout=110, check=True
    )
    got = json.loads(proc.stdout)
    assert got["fresh"] and got["found"] and got["openai"], got
    # imported on the loop, one gap would span the whole import; in a thread, the loop keeps ticking
    assert got["max_gap"] < got["took"] / 2, got
