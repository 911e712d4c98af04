"""A full run against a real Redis with node supervisors and worker processes: retries, failure isolation,
parallelism, handoffs, state files, report and archive."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import urllib.request
from pathlib import Path

import jsonschema
import pytest
import redis.asyncio as aredis

from cortex.coord.server import EmbeddedRedis
from cortex.models import Cluster, Roster
from cortex.models.messages import StreamEvent
from cortex.planner import build_plan
from cortex.runtime.coordinator import Coordinator
from cortex.runtime.options import RunOptions
from cortex.toolset.fleet import working_copy

from .conftest import FLEET, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# A real transient failure: the one run that creates the marker (atomically, O_EXCL) fails; every other passes.
FLAKY = (
    "import os,sys\ntry: os.close(os.open(sys.argv[1], os.O_CREAT | os.O_EXCL))\n"
    "except FileExistsError: sys.exit(0)\nsys.exit(3)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def small_cluster() -> Cluster:
    return Cluster.model_validate(
        {
            "name": "test",
            "nodes": [
                {"name": "cp1", "role": "control-plane", "cpu": 1, "memory_mib": 512, "worker_slots": 0},
                {"name": "n1", "role": "worker", "cpu": 1, "memory_mib": 512, "worker_slots": 2},
                {"name": "n2", "role": "worker", "cpu": 1, "memory_mib": 512, "worker_slots": 2},
            ],
        }
    )


def make_roster(marker: Path) -> Roster:
    return Roster.model_validate(
        {
            "retry": {"max_attempts": 2, "backoff_base_s": 0.05, "backoff_max_s": 0.2, "jitter": 0.1},
            "masters": [
                {
                    "name": "coordinator",
                    "role": "c",
                    "keywords": ["fleet"],
                    "base_budget": 100,
                    "worker_pool": 100,
                    "playbook": [
                        {
                            "name": "aggregate",
                            "kind": "coordinator.aggregate",
                            "worker_type": "gen",
                            "per": "run",
                            "after": ["*"],
                            "needs": "completion",
                        }
                    ],
                },
                {
                    "name": "inventory",
                    "role": "i",
                    "keywords": ["fleet"],
                    "base_budget": 100,
                    "worker_pool": 100,
                    "playbook": [
                        {"name": "discover", "kind": "inventory.discover", "worker_type": "gen", "when": "python"},
                        {
                            "name": "flaky",
                            "kind": "command",
                            "worker_type": "gen",
                            "when": "docker",
                            "after": ["inventory.discover"],
                            "params": {"argv": [sys.executable, "-c", FLAKY, "{marker}"]},
                        },
                        {
                            "name": "broken",
                            "kind": "command",
                            "worker_type": "gen",
                            "when": "node",
                            "params": {"argv": [sys.executable, "-c", "import sys; sys.exit('no such thing')"]},
                        },
                        {
                            "name": "after-broken",
                            "kind": "builtin.noop",
                            "worker_type": "gen",
                            "when": "node",
                            "after": ["inventory.broken"],
                        },
                        {"name": "tests", "kind": "testing.pytest", "worker_type": "gen", "when": "docker"},
                        {
                            "name": "nap-a",
                            "kind": "builtin.sleep",
                            "worker_type": "gen",
                            "per": "run",
                            "params": {"seconds": 0.6},
                            "priority": 10,  # released first, to workers that have claimed nothing yet
                        },
                        {
                            "name": "nap-b",
                            "kind": "builtin.sleep",
                            "worker_type": "gen",
                            "per": "run",
                            "params": {"seconds": 0.6},
                            "priority": 10,  # released first, to workers that have claimed nothing yet
                        },
                    ],
                },
            ],
            "worker_types": [{"name": "gen", "master": "inventory", "count": 4, "budget": 10}],
        }
    )


async def test_full_run_with_retry_failure_isolation_and_parallel_workers(tmp_path: Path) -> None:
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    roster = make_roster(marker_dir)
    # one marker per target so each flaky task fails exactly once
    data = roster.model_dump()
    flaky = data["masters"][1]["playbook"][1]
    flaky["params"]["argv"][-1] = str(marker_dir / "payments-api")
    fleet = working_copy(FLEET, tmp_path / "fleet")  # the test tasks run the fleet's suites, which write
    plan = build_plan("survey the fleet", fleet, Roster.model_validate(data), small_cluster())
    flaky_ids = [t.id for t in plan.tasks if t.id.startswith("inventory.flaky")]
    assert flaky_ids  # docker targets exist in the fleet
    state = tmp_path / "state"
    port = free_port()
    with EmbeddedRedis() as server:
        result = await Coordinator(plan, server.url, state, RunOptions(metrics_port=port)).run()
        url = f"http://127.0.0.1:{port}/metrics"
        metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
        leftover = aredis.Redis.from_url(server.url, decode_responses=True)
        run_keys = [k async for k in leftover.scan_iter(match=f"cortex:run:{result.run_id}:*")]
        await leftover.aclose()

    report = json.loads(result.report_json.read_text())
    tasks = {t["id"]: t for t in report["tasks"]}
    assert result.status == "failed"  # `broken` failed
    assert tasks["inventory.broken:web-frontend"]["state"] == "failed"
    assert tasks["inventory.broken:web-frontend"]["attempts"] == 2
    assert "no such thing" in tasks["inventory.broken:web-frontend"]["error"]
    assert tasks["inventory.after-broken:web-frontend"]["state"] == "skipped"
    # the first flaky task failed once and then succeeded on retry; the others share its marker and pass at once
    attempts = sorted(tasks[i]["attempts"] for i in flaky_ids)
    assert attempts[-1] == 2 and all(tasks[i]["state"] == "succeeded" for i in flaky_ids)
    assert report["retries"] == 1 + 1  # broken's retry + the flaky retry
    assert tasks["coordinator.aggregate"]["state"] == "succeeded"  # aggregation runs despite the failure
    assert report["results"]["inventory"]["assets"]["repository"] == 4
    # the two naps ran at the same time on different worker processes
    a, b = tasks["inventory.nap-a"], tasks["inventory.nap-b"]
    assert a["worker"] != b["worker"]
    assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]
    workers = {p["id"]: p for p in report["processes"].values() if p["kind"] == "worker"}
    assert {p["node"] for p in workers.values()} == {"n1", "n2"}
    assert len({p["pid"] for p in workers.values()}) == 4
    assert set(report["nodes"]) == {"cp1", "n1", "n2"} and all(n["cpu_s"] > 0 for n in report["nodes"].values())
    assert report["success_criteria"]["no-lost-tasks"] and not report["success_criteria"]["all-required-succeeded"]
    # archive and state files
    archive = result.archive
    assert {p.name for p in archive.iterdir()} >= {
        "plan.json",
        "events.jsonl",
        "report.md",
        "report.json",
        "current-execution.json",
        "worker-distribution.json",
    }
    # report.json is what its committed schema says, and every archived event is an envelope with its channel
    schema = json.loads((ROOT / "schemas" / "report.schema.json").read_text())
    jsonschema.validate(report, schema)
    events = [json.loads(line) for line in (archive / "events.jsonl").read_text().splitlines()]
    assert all(StreamEvent.model_validate(e).channel.startswith("cortex:") for e in events)
    dispatched = {
        t["task_id"] for e in events if e["context"].get("event") == "dispatched" for t in e["context"]["tasks"]
    }
    assert set(flaky_ids) <= dispatched
    # payments-api has a failing test: testing handed a fix to development, admitted and skipped (no model)
    handoff = next(h for h in report["handoffs"] if h["source_task"] == "inventory.tests:payments-api")
    assert handoff["to"] == "development" and handoff["decision"].startswith("rejected")  # no development master
    assert tasks["inventory.tests:payments-api"]["output"]["failures"] == 1
    assert tasks["inventory.tests:payments-api"]["output"]["failing"] == [
        "tests/test_money.py::test_apply_fee_rounds_to_nearest_cent"
    ]
    assert tasks["inventory.tests:inventory-service"]["output"]["flaky"] == [
        "tests/test_cache.py::test_warehouse_cache_is_warm"
    ]
    # metrics served during the run
    assert 'cortex_tasks_total{master="inventory",outcome="failed"} 1.0' in metrics
    assert "cortex_task_duration_seconds_bucket" in metrics and "cortex_phase 5.0" in metrics
    assert f'cortex_run_info{{plan_id="{plan.id}",run_id="{result.run_id}"}} 1.0' in metrics
    assert 'cortex_tasks_current{master="inventory",state="failed"} 1.0' in metrics  # the gauge of states now
    assert "cortex_masters_alive " in metrics and "cortex_redis_up 1.0" in metrics
    assert f"cortex_run_planned_makespan_seconds {plan.schedule.makespan_s}" in metrics
    # structured logs, one JSON-lines file per process, linked from the report
    coordinator_log = [json.loads(line) for line in Path(report["logs"]["coordinator"]).read_text().splitlines()]  # noqa: ASYNC240
    assert [e["phase_name"] for e in coordinator_log if e["event"] == "phase"][:4] == [
        "preflight",
        "activation",
        "distribution",
        "execution",
    ]
    assert coordinator_log[-1]["event"] == "run-ended" and coordinator_log[-1]["status"] == "failed"
    node_dirs = {Path(v.partition(":")[2]) for k, v in report["logs"].items() if k != "coordinator"}
    worker_lines = [
        json.loads(line) for d in node_dirs for f in d.glob("gen-worker-*.jsonl") for line in f.read_text().splitlines()
    ]
    ended = [t for e in worker_lines if e["event"] == "tasks-ended" for t in e["tasks"]]
    assert {e["task"] for e in ended} >= {t["id"] for t in report["tasks"] if t["worker"]}
    assert any(e["outcome"] == "failed" and "no such thing" in e["error"] for e in ended)
    assert "## Logs (JSON lines, one file per process)" in result.report_md.read_text()
    # pictures: one measured bar per task that ran, beside its planned one; no model call, no burn-down
    md = result.report_md.read_text()
    ran = [t for t in report["tasks"] if t["worker"] and t["started_at"] and t["finished_at"]]
    gantt = md.split("```mermaid\ngantt", 1)[1].split("```", 1)[0]
    assert gantt.count(":active,") + gantt.count(":crit,") == len(ran) and gantt.count(":done,") == len(ran)
    assert "No model call was made" in md and "CPU seconds by node (measured)" in md
    archive = Path(report["paths"]["archive"])
    assert {p.stem for p in (archive / "lineage").glob("*.mmd")} == {
        t.name for t in plan.targets if any(x["target"] == t.name for x in report["tasks"])
    }
    current = json.loads((state / "current-execution.json").read_text())
    assert current["status"] == "failed" and current["phase"] == 5
    assert run_keys == []  # cleanup removed the run's keys
