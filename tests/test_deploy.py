"""The Kubernetes deployment under deploy/: every overlay renders with ``kubectl kustomize`` and every object
validates against Kubernetes 1.37's schemas (``kubernetes-validate --strict``); the Prometheus Operator objects,
which have no schema there, are checked here (their PromQL parses); the security settings hold on every workload;
and the placement ``cortex deploy render`` writes for a plan is the plan's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from cortex.planner import build_plan
from cortex.planner.manifests import placement
from cortex.roster import load_cluster, load_roster

from .conftest import FLEET, ROOT

pytestmark = pytest.mark.timeout(120)
K8S_VERSION = "1.37.0"
BIN = Path(sys.executable).parent
KUBECTL, VALIDATE = BIN / "kubectl", BIN / "kubernetes-validate"
WORKLOADS = {"Deployment", "StatefulSet", "Job", "CronJob"}


def tree(tmp_path: Path, placement_dir: Path | None = None) -> Path:
    """A copy of deploy/kustomize with prod's secrets file written from its example (and another placement)."""
    copy = tmp_path / "kustomize"
    shutil.copytree(ROOT / "deploy" / "kustomize", copy)
    shutil.copy(copy / "overlays/prod/secrets.env.example", copy / "overlays/prod/secrets.env")
    if placement_dir is not None:
        shutil.rmtree(copy / "placement")
        shutil.copytree(placement_dir, copy / "placement")
    return copy


def render(overlay: Path) -> list[dict[str, Any]]:
    out = subprocess.run([KUBECTL, "kustomize", str(overlay)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    (overlay / "rendered.yaml").write_text(out.stdout)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["spec"])


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_overlay_renders_and_validates(overlay: str, tmp_path: Path) -> None:
    objects = render(tree(tmp_path) / "overlays" / overlay)
    out = subprocess.run(
        [VALIDATE, "--strict", "-k", K8S_VERSION, str(tmp_path / "kustomize/overlays" / overlay / "rendered.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    validated = out.stdout.count(" passed for resource ")
    crds = [o for o in objects if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert validated == len(objects) - len(crds)  # every other object was checked against a schema
    kinds = {o["kind"] for o in objects}
    assert {"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "PodDisruptionBudget", "CronJob", "Job"} <= kinds
    for o in objects:
        if o["kind"] in WORKLOADS:
            spec = pod_spec(o)
            assert spec["securityContext"]["runAsNonRoot"] is True, o["metadata"]["name"]
            for c in spec["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"], c["name"]
                assert not sc["allowPrivilegeEscalation"] and c["resources"]["limits"], c["name"]
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    catalog = by[("Deployment", "cortex-catalog")]
    probes = catalog["spec"]["template"]["spec"]["containers"][0]
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz" and probes["livenessProbe"]["httpGet"]
    assert catalog["spec"]["replicas"] == (2 if overlay == "dev" else 3)
    cron = by[("CronJob", "cortex-discovery")]["spec"]
    assert cron["schedule"] == "*/15 * * * *" and cron["concurrencyPolicy"] == "Forbid"
    redis = by.get(("StatefulSet", "cortex-redis"))
    if overlay == "dev":  # in the cluster, its append-only file on a claimed volume, reached by Cortex's pods only
        assert redis is not None and "--appendonly" in redis["spec"]["template"]["spec"]["containers"][0]["args"]
        assert redis["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
        policy = by[("NetworkPolicy", "cortex-redis")]["spec"]
        assert policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "cortex"}
    else:
        assert redis is None  # an external one, through CORTEX_REDIS_URL in the secret
    secret = by[("Secret", next(n for k, n in by if k == "Secret"))]
    assert {"CORTEX_REDIS_URL", "CORTEX_CATALOG_TOKEN"} <= set(secret["data"])


def test_the_prometheus_objects_hold_valid_promql(tmp_path: Path) -> None:
    objects = render(tree(tmp_path) / "overlays" / "dev")
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert len(alerts) >= 4
    for r in alerts:
        promql_parser.parse(r["expr"])  # raises on a malformed expression
        assert r["alert"] and r["labels"]["severity"] in ("warning", "critical") and r["annotations"]["summary"]
    with pytest.raises(ValueError):
        promql_parser.parse("rate(cortex_catalog_requests_total[5m]")  # the check is not vacuous
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    services = [o for o in objects if o["kind"] == "Service"]
    assert ports <= {p["name"] for s in services for p in s["spec"]["ports"]}


def test_the_rendered_placement_is_the_plan_s(tmp_path: Path) -> None:
    plan = build_plan("Run the full catalog toolset across the fleet", FLEET, load_roster(), load_cluster())
    (tmp_path / "plan.json").write_text(plan.model_dump_json())
    out = tmp_path / "placement"
    done = subprocess.run(
        [BIN / "cortex", "deploy", "render", str(tmp_path / "plan.json"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    objects = render(tree(tmp_path, out) / "overlays" / "dev")
    agents = [o for o in objects if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "node-agent"]
    agents = [o for o in agents if o["kind"] == "Deployment"]
    rendered: dict[str, list[str]] = {}
    nodes = {n.name: n for n in plan.cluster.nodes}
    for a in agents:
        spec = pod_spec(a)
        node = spec["nodeSelector"]["kubernetes.io/hostname"]
        args = spec["containers"][0]["args"]
        assert args[:2] == ["node", node] and args[args.index("--slots") + 1] == str(nodes[node].worker_slots)
        assert spec["containers"][0]["resources"]["requests"]["memory"] == f"{nodes[node].memory_mib}Mi"
        rendered[node] = a["metadata"]["annotations"]["cortex.dev/processes"].split(",")
    assert rendered == placement(plan)
    expected = {f"master-{m.master}": m.node for m in plan.masters} | {w.worker_id: w.node for w in plan.workers}
    assert {p: n for n, ps in rendered.items() for p in ps} == expected
    job = next(o for o in objects if o["kind"] == "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:4] == [
        "run",
        "/etc/cortex/plan/plan.json",
        "--nodes",
        "cluster",
    ]


def test_a_plan_that_is_not_one_is_refused_and_nothing_written(tmp_path: Path) -> None:
    (tmp_path / "plan.json").write_text('{"schema_version": 1}')
    done = subprocess.run(
        [BIN / "cortex", "deploy", "render", str(tmp_path / "plan.json"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "plan.json" in done.stderr
    assert not (tmp_path / "out").exists()


def test_the_image_is_multi_stage_non_root_and_checked() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    final = text[text.rindex(stages[-1]) :]
    assert len(stages) >= 2 and "COPY --from=build" in final
    assert "USER 10001" in final and "HEALTHCHECK" in final and 'ENTRYPOINT ["cortex"]' in final
    assert not any(tool in final for tool in ("gcc", "build-essential", "pip install"))
