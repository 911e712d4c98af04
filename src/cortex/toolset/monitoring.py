"""Monitoring tools: for each Kubernetes Service a repository deploys, a Grafana dashboard and Prometheus alert
rules with SLOs (availability and latency objectives, multi-window burn-rate alerts). Everything is validated
before it is written: ``promtool check rules`` when promtool is on PATH, a structural check otherwise."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from cortex.errors import TaskFailed
from cortex.repo import kubernetes_services
from cortex.toolset.builtin import run_argv
from cortex.toolset.context import Output, TaskContext, task_kind

# Burn-rate alerting from the Google SRE workbook: (long window, short window, burn rate, severity).
BURN_RATES = (("1h", "5m", 14.4, "page"), ("6h", "30m", 6.0, "page"), ("3d", "6h", 1.0, "ticket"))
_DURATION = re.compile(r"^\d+[smhdwy]$")


def alert_rules(service: str, namespace: str, availability: float, latency_ms: int) -> dict[str, Any]:
    """Recording and alerting rules for an availability SLO and a latency SLO on standard HTTP metrics."""
    sel = f'service="{service}",namespace="{namespace}"'
    budget = round(1 - availability / 100, 6)
    rules: list[dict[str, Any]] = []
    for window in sorted({w for lw, sw, _, _ in BURN_RATES for w in (lw, sw)}):
        rules.append(
            {
                "record": f"{service}:error_ratio:rate{window}".replace("-", "_"),
                "expr": f'sum(rate(http_requests_total{{{sel},code=~"5.."}}[{window}]))'
                f" / sum(rate(http_requests_total{{{sel}}}[{window}]))",
            }
        )
    for long_w, short_w, rate, severity in BURN_RATES:
        rec = f"{service}:error_ratio:rate".replace("-", "_")
        rules.append(
            {
                "alert": f"{service.title().replace('-', '')}ErrorBudgetBurn{long_w}",
                "expr": f"{rec}{long_w} > ({rate} * {budget}) and {rec}{short_w} > ({rate} * {budget})",
                "labels": {"severity": severity, "service": service, "slo": "availability"},
                "annotations": {
                    "summary": f"{service} burns its {availability}% availability error budget "
                    f"{rate}x too fast ({long_w}/{short_w} windows)"
                },
            }
        )
    seconds = latency_ms / 1000
    rules.append(
        {
            "alert": f"{service.title().replace('-', '')}LatencySLO",
            "expr": f"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{{sel}}}[5m])))"
            f" > {seconds}",
            "for": "10m",
            "labels": {"severity": "ticket", "service": service, "slo": "latency"},
            "annotations": {"summary": f"{service} p99 latency above {latency_ms} ms for 10 minutes"},
        }
    )
    return {"groups": [{"name": f"{service}-slo", "rules": rules}]}


def dashboard(service: str, namespace: str, availability: float, latency_ms: int) -> dict[str, Any]:
    """A Grafana dashboard: traffic, error ratio against the objective, latency quantiles against the target."""
    sel = f'service="{service}",namespace="{namespace}"'

    def panel(pid: int, title: str, exprs: list[tuple[str, str]], unit: str) -> dict[str, Any]:
        return {
            "id": pid,
            "type": "timeseries",
            "title": title,
            "datasource": {"type": "prometheus"},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "gridPos": {"h": 8, "w": 12, "x": (pid - 1) % 2 * 12, "y": (pid - 1) // 2 * 8},
            "targets": [
                {"refId": chr(64 + i), "expr": e, "legendFormat": legend} for i, (e, legend) in enumerate(exprs, 1)
            ],
        }

    return {
        "title": f"{service} ({namespace}) service level",
        "uid": f"cortex-{namespace}-{service}"[:40],
        "schemaVersion": 39,
        "tags": ["cortex", "slo", service],
        "time": {"from": "now-6h", "to": "now"},
        "panels": [
            panel(1, "Requests per second", [(f"sum(rate(http_requests_total{{{sel}}}[5m]))", "rps")], "reqps"),
            panel(
                2,
                f"Error ratio (objective {availability}%)",
                [
                    (
                        f'sum(rate(http_requests_total{{{sel},code=~"5.."}}[5m]))'
                        f" / sum(rate(http_requests_total{{{sel}}}[5m]))",
                        "errors",
                    ),
                    (str(round(1 - availability / 100, 6)), "budget"),
                ],
                "percentunit",
            ),
            panel(
                3,
                f"Latency (target p99 {latency_ms} ms)",
                [
                    (
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(http_request_duration_seconds_bucket{{{sel}}}[5m])))",
                        f"p{int(q * 100)}",
                    )
                    for q in (0.5, 0.99)
                ],
                "s",
            ),
        ],
    }


def check_rules(doc: dict[str, Any]) -> list[str]:
    """Structural problems of a Prometheus rules document (what promtool would refuse first)."""
    problems = []
    for g in doc.get("groups", []):
        if not g.get("name"):
            problems.append("group without a name")
        for r in g.get("rules", []):
            name = r.get("alert") or r.get("record")
            if not name or ("alert" in r) == ("record" in r):
                problems.append(f"rule {name!r}: exactly one of alert or record is required")
            if not isinstance(r.get("expr"), str) or not r["expr"].strip():
                problems.append(f"rule {name!r}: empty expr")
            elif r["expr"].count("(") != r["expr"].count(")") or r["expr"].count("{") != r["expr"].count("}"):
                problems.append(f"rule {name!r}: unbalanced brackets in expr")
            if "for" in r and not _DURATION.match(str(r["for"])):
                problems.append(f"rule {name!r}: bad duration {r['for']!r}")
    return problems


def check_dashboard(doc: dict[str, Any]) -> list[str]:
    """Structural problems of a Grafana dashboard document."""
    problems = [] if doc.get("title") else ["dashboard without a title"]
    ids = [p.get("id") for p in doc.get("panels", [])]
    if len(ids) != len(set(ids)):
        problems.append("panel ids repeat")
    for p in doc.get("panels", []):
        if not p.get("targets") or any(not t.get("expr") for t in p["targets"]):
            problems.append(f"panel {p.get('title')!r} has a target without an expression")
    return problems


async def validate_rules(path: Path, doc: dict[str, Any], timeout_s: float) -> str:
    """``promtool check rules`` when available, else the structural check; raises on any problem."""
    promtool = shutil.which("promtool")
    if promtool:
        code, out, err = await run_argv([promtool, "check", "rules", str(path)], str(path.parent), timeout_s)
        if code != 0:
            raise TaskFailed(f"promtool refused {path.name}: {(err or out).strip()[-500:]}", retryable=False)
        return "promtool"
    problems = check_rules(doc)
    if problems:
        raise TaskFailed(f"{path.name}: {'; '.join(problems)}", retryable=False)
    return "structural check (promtool not on PATH)"


@task_kind("monitoring.dashboards")
async def dashboards_task(ctx: TaskContext) -> Output:
    """Dashboard and SLO alert rules for every Service the target deploys, written under the run directory."""
    root = ctx.require_target()
    availability = float(ctx.task.params.get("availability", 99.9))
    latency_ms = int(ctx.task.params.get("latency_ms", 300))
    out_dir = ctx.services.state_dir / "runs" / ctx.run_id / "monitoring" / root.name
    written, validators, alerts = [], set(), 0
    for svc in await asyncio.to_thread(kubernetes_services, root):
        name, ns = str(svc["name"]), str(svc["namespace"])
        rules, board = alert_rules(name, ns, availability, latency_ms), dashboard(name, ns, availability, latency_ms)
        problems = check_dashboard(board)
        if problems:
            raise TaskFailed(f"dashboard for {name}: {'; '.join(problems)}", retryable=False)
        target = out_dir / ns / name
        target.mkdir(parents=True, exist_ok=True)
        rules_path = target / "alerts.rules.yaml"
        rules_path.write_text(yaml.safe_dump(rules, sort_keys=False))
        validators.add(await validate_rules(rules_path, rules, ctx.task.timeout_s))
        (target / "dashboard.json").write_text(json.dumps(board, indent=2) + "\n")
        alerts += sum(1 for r in rules["groups"][0]["rules"] if "alert" in r)
        written += [str(rules_path), str(target / "dashboard.json")]
    return {
        "repository": root.name,
        "services": len(written) // 2,
        "dashboards": len(written) // 2,
        "alerts": alerts,
        "files": written,
        "validated_by": sorted(validators),
        "slo": {"availability_percent": availability, "latency_p99_ms": latency_ms},
    }
