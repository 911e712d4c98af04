"""``cortex deploy render``: the Kubernetes objects that place a plan on a cluster, for ``deploy/kustomize``.

One node agent Deployment per plan node that hosts a process, pinned to that Kubernetes node (``nodeSelector`` on
``kubernetes.io/hostname``: the plan's node names are the cluster's), with the node's slots, labels and resources
from the plan's cluster (``cluster.yaml``); the annotation ``cortex.dev/processes`` lists the masters and workers the
plan places there. The coordinator of the plan as a Job, and the plan itself as a ConfigMap it reads.
"""

from __future__ import annotations

from typing import Any

import yaml

from cortex.models import Plan
from cortex.models.cluster import Node

AGENT_PORT = 9101
SELECTOR = {"app.kubernetes.io/name": "cortex", "app.kubernetes.io/component": "node-agent"}
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
ENV_FROM = [{"configMapRef": {"name": "cortex-config"}}, {"secretRef": {"name": "cortex-secrets"}}]
SCRATCH = [{"name": "state", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
MOUNTS = [{"name": "state", "mountPath": "/var/lib/cortex"}, {"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108


def placement(plan: Plan) -> dict[str, list[str]]:
    """Plan node -> the processes the plan places on it (``master-<name>`` and worker ids), sorted."""
    out: dict[str, list[str]] = {}
    for m in plan.masters:
        out.setdefault(m.node, []).append(f"master-{m.master}")
    for w in plan.workers:
        out.setdefault(w.node, []).append(w.worker_id)
    return {n: sorted(p) for n, p in sorted(out.items())}


def _agent(node: Node, processes: list[str], drain_s: int) -> dict[str, Any]:
    labels = {**SELECTOR, "cortex.dev/node": node.name}
    args = ["node", node.name, "--slots", str(node.worker_slots), "--drain-s", str(drain_s)]
    for k, v in sorted({**node.labels, "role": node.role.value}.items()):
        args += ["--labels", f"{k}={v}"]
    args += ["--metrics-host", "0.0.0.0", "--metrics-port", str(AGENT_PORT)]  # noqa: S104  (Prometheus scrapes it)
    resources = {"cpu": str(node.cpu), "memory": f"{node.memory_mib}Mi"}
    container = {
        "name": "agent",
        "image": "cortex",
        "args": args,
        "envFrom": ENV_FROM,
        "ports": [{"name": "metrics", "containerPort": AGENT_PORT}],
        "livenessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 15},
        "resources": {"requests": resources, "limits": resources},
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": MOUNTS,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"cortex-node-{node.name}",
            "labels": labels,
            "annotations": {"cortex.dev/processes": ",".join(processes)},
        },
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # one agent per node name: the old one drains before the new starts
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": "cortex",
                    "automountServiceAccountToken": False,
                    "nodeSelector": {"kubernetes.io/hostname": node.name},
                    "terminationGracePeriodSeconds": drain_s + 30,  # a drain, then its processes' own stop
                    "securityContext": POD_SECURITY,
                    "containers": [container],
                    "volumes": SCRATCH,
                },
            },
        },
    }


def _coordinator(plan: Plan) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "cortex", "app.kubernetes.io/component": "coordinator"}
    args = ["run", "/etc/cortex/plan/plan.json", "--nodes", "cluster", "--node-wait", "300"]
    container = {
        "name": "coordinator",
        "image": "cortex",
        "args": args,
        "envFrom": ENV_FROM,
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [*MOUNTS, {"name": "plan", "mountPath": "/etc/cortex/plan", "readOnly": True}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"cortex-run-{plan.id[:12].lower()}", "labels": labels},
        "spec": {
            "backoffLimit": 0,  # a coordinator that died is taken over (`cortex takeover`), not started again
            "ttlSecondsAfterFinished": 7 * 24 * 3600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": "cortex",
                    "automountServiceAccountToken": False,
                    "securityContext": POD_SECURITY,
                    "containers": [container],
                    "volumes": [*SCRATCH, {"name": "plan", "configMap": {"name": "cortex-plan"}}],
                },
            },
        },
    }


def render(plan: Plan, *, drain_s: int = 60) -> dict[str, str]:
    """File name -> text of the placement kustomization for ``plan``."""
    nodes = {n.name: n for n in plan.cluster.nodes}
    agents = [_agent(nodes[n], procs, drain_s) for n, procs in placement(plan).items()]

    def dump(data: Any) -> str:
        return yaml.safe_dump(data, default_flow_style=False, sort_keys=False)

    header = f"# Written by `cortex deploy render` for plan {plan.id} ({plan.goal}). Render again; do not edit.\n"
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["nodes.yaml", "coordinator.yaml"],
        "configMapGenerator": [{"name": "cortex-plan", "files": ["plan.json"]}],
    }
    return {
        "kustomization.yaml": header + dump(kustomization),
        "nodes.yaml": header + yaml.safe_dump_all(agents, default_flow_style=False, sort_keys=False),
        "coordinator.yaml": header + dump(_coordinator(plan)),
        "plan.json": plan.model_dump_json(indent=2) + "\n",
    }
