"""Cortex monitoring itself: the alert rules pass promtool's checks and unit tests (each alert fires and stays
silent when it should), every PromQL expression of the rules and the Grafana dashboard parses and names metrics
Cortex exports, the Kubernetes PrometheusRule holds the same rules, and phase transitions reach Grafana's
annotations API (a Grafana that refuses fails nothing and is said in the report)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from cortex.chaos.plan import chaos_plan
from cortex.coord.server import EmbeddedRedis
from cortex.runtime.coordinator import Coordinator
from cortex.runtime.options import RunOptions

from .conftest import ROOT
from .jsonhttp import JSONHandler

pytestmark = pytest.mark.timeout(120)
MONITORING = ROOT / "deploy" / "monitoring"
RULES = yaml.safe_load((MONITORING / "cortex-rules.yaml").read_text())
DASHBOARD = json.loads((MONITORING / "grafana-dashboard.json").read_text())


def exprs() -> list[str]:
    rules = [r["expr"] for g in RULES["groups"] for r in g["rules"]]
    return rules + [t["expr"] for p in DASHBOARD["panels"] for t in p["targets"]]


def exported() -> set[str]:
    """Every metric name Cortex's code defines (as exposed: counters get ``_total``, histograms ``_bucket``...)."""
    names = set()
    for path in (ROOT / "src" / "cortex").rglob("*.py"):
        text = path.read_text()
        for kind, name in re.findall(r'(Counter|Gauge|Histogram)\(\s*"(cortex_[a-z_]+)"', text):
            base = name.removesuffix("_total")
            names |= {base + "_total"} if kind == "Counter" else {name}
            if kind == "Histogram":
                names |= {name + "_bucket", name + "_sum", name + "_count"}
    return names


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian's prometheus package)")
def test_promtool_checks_and_unit_tests_pass() -> None:
    checked = subprocess.run(
        ["promtool", "check", "rules", "cortex-rules.yaml"],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0 and f"{len(RULES['groups'][0]['rules'])} rules found" in checked.stdout
    tested = subprocess.run(
        ["promtool", "test", "rules", "cortex-rules.test.yaml"],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    alerts = {r["alert"] for g in RULES["groups"] for r in g["rules"]}
    cases = yaml.safe_load((MONITORING / "cortex-rules.test.yaml").read_text())["tests"]
    fired = {t["alertname"] for c in cases for t in c["alert_rule_test"] if t["exp_alerts"]}
    assert fired == alerts  # every alert is shown to fire somewhere, and silent beside it


def test_every_expression_parses_and_names_exported_metrics() -> None:
    names = exported()
    assert {"cortex_run_info", "cortex_tasks_current", "cortex_masters_alive", "cortex_node_cpu_seconds_total"} <= names
    used: set[str] = set()
    for expr in exprs():
        promql_parser.parse(expr)
        used |= set(re.findall(r"\bcortex_[a-z_]+", expr))
    assert used - names == set()
    panels = DASHBOARD["panels"]
    assert DASHBOARD["templating"]["list"][0] == {
        **DASHBOARD["templating"]["list"][0],
        "type": "datasource",
        "query": "prometheus",
        "name": "datasource",
    }
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels) and len(panels) >= 15
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("runs", "phase", "throughput", "queue", "duration", "retries", "token", "nodes"):
        assert topic in titles


def test_the_kubernetes_rule_is_the_tested_rule_file() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy/kustomize/base/monitoring.yaml").read_text()))
    (rule,) = [d for d in docs if d and d["kind"] == "PrometheusRule"]
    assert rule["spec"] == RULES


class Grafana(JSONHandler):
    posts: list[dict[str, Any]] = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802  (the http.server API)
        type(self).posts.append({"path": self.path, "auth": self.headers.get("Authorization"), **self.body()})
        self.reply(type(self).status, {"id": len(type(self).posts)})


@pytest.mark.integration
@pytest.mark.parametrize("status", [200, 403])
async def test_phase_transitions_are_grafana_annotations(status: int, tmp_path: Path) -> None:
    Grafana.posts, Grafana.status = [], status
    server = ThreadingHTTPServer(("127.0.0.1", 0), Grafana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        plan = chaos_plan(4, seconds=0.01, workers=2, nodes=1, slots=2)
        with EmbeddedRedis(tmp_path / "redis") as redis:
            options = RunOptions(grafana_url=url, grafana_token="t0ken")
            result = await Coordinator(plan, redis.url, tmp_path / "state", options, run_id="annotated").run()
    finally:
        server.shutdown()
        server.server_close()
    assert result.status == "succeeded"  # a refusing Grafana fails nothing
    assert [p["tags"][2] for p in Grafana.posts] == [
        "phase:preflight",
        "phase:activation",
        "phase:distribution",
        "phase:execution",
        "phase:aggregation",
        "phase:reporting",
    ]
    assert all(p["path"] == "/api/annotations" and p["auth"] == "Bearer t0ken" for p in Grafana.posts)
    assert all(p["tags"][:2] == ["cortex", "run:annotated"] and p["time"] > 0 for p in Grafana.posts)
    (note,) = result.report.notes
    assert ("6 sent" in note) if status == 200 else ("0 sent" in note and "6 failed: preflight: HTTP 403" in note)
    assert "t0ken" not in result.report_md.read_text()  # noqa: ASYNC240


@pytest.mark.integration
async def test_conflicts_are_counted_as_they_are_published(redis: Any) -> None:
    from cortex.coord import events
    from cortex.coord.keys import CH_CONFLICTS, CH_LINEAGE, RunKeys
    from cortex.models.messages import Envelope, MessageType

    keys = RunKeys("conflicted")

    def env(event: str) -> Envelope:
        return Envelope(run_id="conflicted", sender="w1", to="all", type=MessageType.conflict, context={"event": event})

    for event in ("lock-waited", "lock-waited", "fenced-write-refused"):
        await events.publish(redis, keys, CH_CONFLICTS, env(event))
    await events.publish(redis, keys, CH_LINEAGE, env("not-a-conflict"))
    assert await redis.hgetall(keys.conflicts) == {"lock-waited": "2", "fenced-write-refused": "1"}
