"""Monitoring tools: for each Kubernetes Service a repository deploys, a Grafana dashboard, Prometheus alert
rules with SLOs (availability and latency objectives, multi-window burn-rate alerts) and a ServiceMonitor that
makes Prometheus scrape it. The queries use the metric and label names the service really exposes
(``instrumentation``). Everything is validated before it is written: ``promtool check rules`` when promtool is on
PATH, else every PromQL expression through a real parser (promql-parser) and a structural check."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from cortex.errors import TaskFailed
from cortex.repo import K8sObject, kubernetes_services
from cortex.toolset.builtin import run_argv
from cortex.toolset.context import Output, TaskContext, task_kind
from cortex.toolset.instrumentation import Instrumentation, detect

# Burn-rate alerting from the Google SRE workbook: (long window, short window, burn rate, severity).
BURN_RATES = (("1h", "5m", 14.4, "page"), ("6h", "30m", 6.0, "page"), ("3d", "6h", 1.0, "ticket"))
_DURATION = re.compile(r"^\d+[smhdwy]$")
DATASOURCE = "${datasource}"
"""Every panel queries the dashboard's datasource variable: pick the Prometheus to read at view time."""


def _selector(service: str, namespace: str) -> str:
    """The labels a ServiceMonitor's scrape attaches: the Service's name and namespace."""
    return f'service="{service}",namespace="{namespace}"'


def _error_ratio(ins: Instrumentation, sel: str, window: str) -> str:
    errors = f'{ins.requests}{{{sel},{ins.status_label}=~"{ins.error_values}"}}'
    return f"sum(rate({errors}[{window}])) / sum(rate({ins.requests}{{{sel}}}[{window}]))"


def alert_rules(
    service: str, namespace: str, availability: float, latency_ms: int, ins: Instrumentation
) -> dict[str, Any]:
    """Recording and alerting rules for an availability SLO and a latency SLO on the service's own metrics."""
    sel = _selector(service, namespace)
    budget = round(1 - availability / 100, 6)
    rules: list[dict[str, Any]] = []
    for window in sorted({w for lw, sw, _, _ in BURN_RATES for w in (lw, sw)}):
        rules.append(
            {"record": f"{service}:error_ratio:rate{window}".replace("-", "_"), "expr": _error_ratio(ins, sel, window)}
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
    rules.append(
        {
            "alert": f"{service.title().replace('-', '')}LatencySLO",
            "expr": f"histogram_quantile(0.99, sum by (le) (rate({ins.duration_bucket}{{{sel}}}[5m])))"
            f" > {latency_ms / 1000}",
            "for": "10m",
            "labels": {"severity": "ticket", "service": service, "slo": "latency"},
            "annotations": {"summary": f"{service} p99 latency above {latency_ms} ms for 10 minutes"},
        }
    )
    return {"groups": [{"name": f"{service}-slo", "rules": rules}]}


def dashboard(
    service: str, namespace: str, availability: float, latency_ms: int, ins: Instrumentation
) -> dict[str, Any]:
    """A Grafana dashboard: traffic, error ratio against the objective, latency quantiles against the target;
    the Prometheus to read is a template variable."""
    sel = _selector(service, namespace)

    def panel(pid: int, title: str, exprs: list[tuple[str, str]], unit: str) -> dict[str, Any]:
        return {
            "id": pid,
            "type": "timeseries",
            "title": title,
            "datasource": {"type": "prometheus", "uid": DATASOURCE},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "gridPos": {"h": 8, "w": 12, "x": (pid - 1) % 2 * 12, "y": (pid - 1) // 2 * 8},
            "targets": [
                {"refId": chr(64 + i), "expr": e, "legendFormat": legend, "datasource": {"uid": DATASOURCE}}
                for i, (e, legend) in enumerate(exprs, 1)
            ],
        }

    quantiles = [
        (f"histogram_quantile({q}, sum by (le) (rate({ins.duration_bucket}{{{sel}}}[5m])))", f"p{int(q * 100)}")
        for q in (0.5, 0.99)
    ]
    return {
        "title": f"{service} ({namespace}) service level",
        "uid": f"cortex-{namespace}-{service}"[:40],
        "schemaVersion": 39,
        "tags": ["cortex", "slo", service],
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [{"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"}]
        },
        "description": f"Metrics: {ins.library} ({ins.evidence})",
        "panels": [
            panel(1, "Requests per second", [(f"sum(rate({ins.requests}{{{sel}}}[5m]))", "rps")], "reqps"),
            panel(
                2,
                f"Error ratio (objective {availability}%)",
                [(_error_ratio(ins, sel, "5m"), "errors"), (str(round(1 - availability / 100, 6)), "budget")],
                "percentunit",
            ),
            panel(3, f"Latency (target p99 {latency_ms} ms)", quantiles, "s"),
        ],
    }


def service_monitor(svc: K8sObject, metrics_path: str = "/metrics") -> tuple[dict[str, Any], list[str]]:
    """A ServiceMonitor (Prometheus Operator) that scrapes the Service, and notes when it had to assume."""
    name, ns = str(svc["name"]), svc["namespace"]
    labels = dict(svc.get("labels") or {})
    notes = []
    if not labels:
        labels = {"app": name}
        notes.append(f"Service {ns}/{name} has no labels to select it by; the ServiceMonitor selects app={name}")
    port = svc.get("port_name")
    endpoint: dict[str, Any] = {"path": metrics_path, "interval": "30s"}
    if port:
        endpoint["port"] = port
    else:
        endpoint["targetPort"] = svc.get("target_port") or 80
        notes.append(
            f"Service {ns}/{name} names no port; the ServiceMonitor scrapes targetPort {endpoint['targetPort']}"
        )
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/managed-by": "cortex"}},
        "spec": {"selector": {"matchLabels": labels}, "endpoints": [endpoint]},
    }
    return monitor, notes


def promql_problems(expr: str) -> str | None:
    """What a real PromQL parser says is wrong with ``expr`` (None when it parses)."""
    import promql_parser

    try:
        promql_parser.parse(expr)
    except ValueError as exc:
        return str(exc)
    return None


def check_rules(doc: dict[str, Any]) -> list[str]:
    """Problems of a Prometheus rules document: structure, and every expression through the PromQL parser."""
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
            elif (why := promql_problems(r["expr"])) is not None:
                problems.append(f"rule {name!r}: {why}")
            if "for" in r and not _DURATION.match(str(r["for"])):
                problems.append(f"rule {name!r}: bad duration {r['for']!r}")
    return problems


def check_dashboard(doc: dict[str, Any]) -> list[str]:
    """Problems of a Grafana dashboard document, every panel's expressions through the PromQL parser."""
    problems = [] if doc.get("title") else ["dashboard without a title"]
    ids = [p.get("id") for p in doc.get("panels", [])]
    if len(ids) != len(set(ids)):
        problems.append("panel ids repeat")
    for p in doc.get("panels", []):
        if not p.get("targets") or any(not t.get("expr") for t in p["targets"]):
            problems.append(f"panel {p.get('title')!r} has a target without an expression")
        for t in p.get("targets", []):
            if t.get("expr") and (why := promql_problems(t["expr"])) is not None:
                problems.append(f"panel {p.get('title')!r}: {why}")
    return problems


async def validate_rules(path: Path, doc: dict[str, Any], timeout_s: float) -> str:
    """``promtool check rules`` when available, else the parser and structural check; raises on any problem."""
    promtool = shutil.which("promtool")
    if promtool:
        code, out, err = await run_argv([promtool, "check", "rules", str(path)], str(path.parent), timeout_s)
        if code != 0:
            raise TaskFailed(f"promtool refused {path.name}: {(err or out).strip()[-500:]}", retryable=False)
        return "promtool"
    problems = check_rules(doc)
    if problems:
        raise TaskFailed(f"{path.name}: {'; '.join(problems)}", retryable=False)
    return "promql-parser and a structural check (promtool not on PATH)"


@task_kind("monitoring.dashboards")
async def dashboards_task(ctx: TaskContext) -> Output:
    """Dashboard, SLO alert rules and ServiceMonitor for every Service the target deploys, on the metrics the
    service exposes, written under the run directory."""
    root = ctx.require_target()
    availability = float(ctx.task.params.get("availability", 99.9))
    latency_ms = int(ctx.task.params.get("latency_ms", 300))
    out_dir = ctx.services.state_dir / "runs" / ctx.run_id / "monitoring" / root.name
    ins = await asyncio.to_thread(detect, root)
    written, validators, alerts, notes = [], set(), 0, []
    for svc in await asyncio.to_thread(kubernetes_services, root):
        name, ns = str(svc["name"]), str(svc["namespace"])
        rules = alert_rules(name, ns, availability, latency_ms, ins)
        board = dashboard(name, ns, availability, latency_ms, ins)
        problems = check_dashboard(board)
        if problems:
            raise TaskFailed(f"dashboard for {name}: {'; '.join(problems)}", retryable=False)
        monitor, monitor_notes = service_monitor(svc)
        notes += monitor_notes
        target = out_dir / ns / name
        target.mkdir(parents=True, exist_ok=True)
        rules_path = target / "alerts.rules.yaml"
        rules_path.write_text(yaml.safe_dump(rules, sort_keys=False))
        validators.add(await validate_rules(rules_path, rules, ctx.task.timeout_s))
        (target / "dashboard.json").write_text(json.dumps(board, indent=2) + "\n")
        (target / "servicemonitor.yaml").write_text(yaml.safe_dump(monitor, sort_keys=False))
        alerts += sum(1 for r in rules["groups"][0]["rules"] if "alert" in r)
        written += [str(rules_path), str(target / "dashboard.json"), str(target / "servicemonitor.yaml")]
    services = len(written) // 3
    return {
        "repository": root.name,
        "services": services,
        "dashboards": services,
        "service_monitors": services,
        "alerts": alerts,
        "files": written,
        "validated_by": sorted(validators),
        "instrumentation": {
            "library": ins.library,
            "requests": ins.requests,
            "duration": ins.duration_bucket,
            "status_label": ins.status_label,
            "evidence": ins.evidence,
            "detected": ins.detected,
        },
        "notes": notes,
        "slo": {"availability_percent": availability, "latency_p99_ms": latency_ms},
    }
