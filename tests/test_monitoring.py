"""Monitoring output: dashboards, SLO alert rules and ServiceMonitors on the metrics each service really exposes,
validated by a real PromQL parser, and a validator that refuses bad ones."""

from __future__ import annotations

import copy
from pathlib import Path

from cortex.repo import kubernetes_services as services
from cortex.toolset.instrumentation import ASSUMED, detect
from cortex.toolset.monitoring import alert_rules, check_dashboard, check_rules, dashboard, service_monitor

from .conftest import FLEET


def test_services_are_read_from_the_repositorys_kubernetes_yaml() -> None:
    assert [(s["namespace"], s["name"]) for s in services(FLEET / "payments-api")] == [("payments", "payments-api")]
    assert [(s["namespace"], s["name"]) for s in services(FLEET / "inventory-service")] == [
        ("warehouse", "inventory-service")
    ]
    assert services(FLEET / "auth-lib") == []


def test_the_metrics_a_service_exposes_are_found_in_its_code() -> None:
    own = detect(FLEET / "payments-api")  # prometheus_client: Counter("payments_requests", ..., [.., "status_code"])
    assert (own.library, own.requests, own.status_label) == ("own metrics", "payments_requests_total", "status_code")
    assert own.duration_bucket == "payments_request_seconds_bucket" and own.evidence == "src/payments/metrics.py:5"
    fastapi = detect(FLEET / "inventory-service")
    assert (fastapi.library, fastapi.requests, fastapi.status_label) == (
        "prometheus_fastapi_instrumentator",
        "http_requests_total",
        "status",
    )
    go = detect(FLEET / "edge-proxy")  # client_golang: NewCounterVec(CounterOpts{Name: ...}, []string{"code", ...})
    assert (go.requests, go.status_label, go.duration_bucket) == (
        "edge_proxy_requests_total",
        "code",
        "edge_proxy_request_duration_seconds_bucket",
    )
    assert detect(FLEET / "auth-lib") == ASSUMED and not ASSUMED.detected


def test_generated_rules_and_dashboard_validate_and_encode_the_slo() -> None:
    ins = detect(FLEET / "payments-api")
    rules = alert_rules("payments-api", "payments", 99.9, 300, ins)
    assert check_rules(rules) == []
    alerts = [r for r in rules["groups"][0]["rules"] if "alert" in r]
    assert [a["labels"]["severity"] for a in alerts] == ["page", "page", "ticket", "ticket"]
    fast = alerts[0]["expr"]
    assert "rate1h > (14.4 * 0.001)" in fast and "rate5m > (14.4 * 0.001)" in fast  # 99.9%: budget 0.001
    recorded = {r["record"]: r["expr"] for r in rules["groups"][0]["rules"] if "record" in r}
    used = {w for a in alerts[:3] for w in ("1h", "5m", "6h", "30m", "3d") if f"rate{w}" in a["expr"]}
    assert {f"payments_api:error_ratio:rate{w}" for w in used} <= set(recorded)  # every alert's input is recorded
    assert (
        'payments_requests_total{service="payments-api",namespace="payments",status_code=~"5.."}'
        in (recorded["payments_api:error_ratio:rate5m"])
    )
    assert "payments_request_seconds_bucket" in alerts[-1]["expr"] and alerts[-1]["for"] == "10m"
    board = dashboard("payments-api", "payments", 99.9, 300, ins)
    assert check_dashboard(board) == []
    assert board["templating"]["list"][0]["type"] == "datasource"
    assert all(p["datasource"]["uid"] == "${datasource}" for p in board["panels"])


def test_a_service_monitor_selects_the_service_by_its_labels_and_port() -> None:
    (svc,) = services(FLEET / "payments-api")
    monitor, notes = service_monitor(svc)
    assert monitor["kind"] == "ServiceMonitor" and monitor["metadata"]["namespace"] == "payments"
    assert monitor["spec"]["selector"]["matchLabels"] == {"app": "payments-api"}
    assert monitor["spec"]["endpoints"] == [{"path": "/metrics", "interval": "30s", "port": "http"}]
    assert notes == []
    (bare,) = services(FLEET / "inventory-service")  # a Service with no labels and an unnamed port
    monitor, notes = service_monitor(bare)
    assert monitor["spec"]["endpoints"][0]["targetPort"] == 8000 and len(notes) == 2


def test_validation_refuses_broken_documents(tmp_path: Path) -> None:
    rules = alert_rules("svc", "ns", 99.0, 200, ASSUMED)
    broken = copy.deepcopy(rules)
    broken["groups"][0]["rules"][0]["expr"] = "sum(rate(x[5m])"
    broken["groups"][0]["rules"][2]["expr"] = "rate(x[5 minutes]) > 1"  # balanced brackets, still not PromQL
    broken["groups"][0]["rules"][-1]["for"] = "ten minutes"
    broken["groups"][0]["rules"][1]["alert"] = "AlsoAnAlert"  # a recording rule that is also an alert
    problems = check_rules(broken)
    assert sum("unclosed left parenthesis" in p for p in problems) == 1
    assert any(p.startswith("rule 'svc:error_ratio:rate3d': ") for p in problems)  # the parser, not bracket counts
    assert any("bad duration" in p for p in problems)
    assert any("exactly one of alert or record" in p for p in problems)
    board = dashboard("svc", "ns", 99.0, 200, ASSUMED)
    board["panels"][1]["id"] = 1
    board["panels"][0]["targets"][0]["expr"] = ""
    assert len(check_dashboard(board)) == 2
