"""Monitoring output: SLO alert rules and dashboards that pass validation, and a validator that refuses bad ones."""

from __future__ import annotations

import copy

from cortex.repo import kubernetes_services as services
from cortex.toolset.monitoring import alert_rules, check_dashboard, check_rules, dashboard

from .conftest import FLEET


def test_services_are_read_from_the_repositorys_kubernetes_yaml() -> None:
    assert [(s["namespace"], s["name"]) for s in services(FLEET / "payments-api")] == [("payments", "payments-api")]
    assert [(s["namespace"], s["name"]) for s in services(FLEET / "inventory-service")] == [
        ("warehouse", "inventory-service")
    ]
    assert services(FLEET / "auth-lib") == []


def test_generated_rules_and_dashboard_validate_and_encode_the_slo() -> None:
    rules = alert_rules("payments-api", "payments", 99.9, 300)
    assert check_rules(rules) == []
    alerts = [r for r in rules["groups"][0]["rules"] if "alert" in r]
    assert [a["labels"]["severity"] for a in alerts] == ["page", "page", "ticket", "ticket"]
    fast = alerts[0]["expr"]
    assert "rate1h > (14.4 * 0.001)" in fast and "rate5m > (14.4 * 0.001)" in fast  # 99.9%: budget 0.001
    recorded = {r["record"] for r in rules["groups"][0]["rules"] if "record" in r}
    used = {w for a in alerts[:3] for w in ("1h", "5m", "6h", "30m", "3d") if f"rate{w}" in a["expr"]}
    assert {f"payments_api:error_ratio:rate{w}" for w in used} <= recorded  # every alert's input is recorded
    assert "> 0.3" in alerts[-1]["expr"] and alerts[-1]["for"] == "10m"
    assert check_dashboard(dashboard("payments-api", "payments", 99.9, 300)) == []


def test_validation_refuses_broken_documents() -> None:
    rules = alert_rules("svc", "ns", 99.0, 200)
    broken = copy.deepcopy(rules)
    broken["groups"][0]["rules"][0]["expr"] = "sum(rate(x[5m])"
    broken["groups"][0]["rules"][-1]["for"] = "ten minutes"
    broken["groups"][0]["rules"][1]["alert"] = "AlsoAnAlert"  # a recording rule that is also an alert
    problems = check_rules(broken)
    assert any("unbalanced" in p for p in problems)
    assert any("bad duration" in p for p in problems)
    assert any("exactly one of alert or record" in p for p in problems)
    board = dashboard("svc", "ns", 99.0, 200)
    board["panels"][1]["id"] = 1
    board["panels"][0]["targets"][0]["expr"] = ""
    assert len(check_dashboard(board)) == 2
