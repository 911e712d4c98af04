"""The run's lineage: master owns task, task ran on worker, examined target, found finding, discovered assets, and
the dependencies between tasks. The coordinator announces a task's edges on the lineage channel as its result is
applied, and the archive keeps the whole graph (``lineage.json`` and ``lineage.mmd``) built by the same code."""

from __future__ import annotations

import hashlib

from cortex.models.report import LineageGraph, LineageLink, LineageNode
from cortex.runtime.records import TaskRecord

Node = dict[str, str | int | None]
"""A lineage node: ``id``, ``kind`` and the attributes of its kind (state, task_kind, node, severity, count)."""
Edge = tuple[str, str, str]
"""``(from, relation, to)``."""


def task_lineage(rec: TaskRecord, node_of: dict[str, str]) -> tuple[list[Node], list[Edge]]:
    """The nodes and edges one task contributes (only a task that succeeded contributes outputs). Plain values:
    the coordinator announces them for every task, so they are cheap to make; ``lineage_graph`` types them."""
    t = f"task:{rec.task.id}"
    nodes: list[Node] = [{"id": t, "kind": "task", "state": rec.state.value, "task_kind": rec.task.kind}]
    master = f"master:{rec.task.master}"
    nodes.append({"id": master, "kind": "master"})
    edges: list[Edge] = [(master, "owns", t)]
    if rec.task.target:
        nodes.append({"id": f"target:{rec.task.target}", "kind": "target"})
        edges.append((t, "examined", f"target:{rec.task.target}"))
    if rec.worker:
        nodes.append({"id": f"worker:{rec.worker}", "kind": "worker", "node": node_of.get(rec.worker, "")})
        edges.append((t, "ran_on", f"worker:{rec.worker}"))
    edges += [(f"task:{d}", "before", t) for d in rec.task.depends_on]
    out = rec.output if rec.state.value == "succeeded" else {}
    findings = out.get("findings", [])
    for f in findings if isinstance(findings, list) else []:
        if not isinstance(f, dict):
            continue
        where = f.get("file", f.get("package", f.get("where", "")))
        fid = f"finding:{rec.task.target}:{f.get('tool', 'cicd')}:{f.get('id', f.get('rule'))}:{where}"
        severity = f.get("severity")
        nodes.append({"id": fid, "kind": "finding", "severity": str(severity) if severity is not None else None})
        edges.append((t, "found", fid))
    assets = out.get("assets", {})
    for kind, count in sorted(assets.items()) if isinstance(assets, dict) else []:
        aid = f"assets:{rec.task.target}:{kind}"
        nodes.append({"id": aid, "kind": "assets", "count": int(count) if isinstance(count, int | float) else 0})
        edges.append((t, "discovered", aid))
    return nodes, edges


def lineage_graph(records: dict[str, TaskRecord], node_of: dict[str, str]) -> LineageGraph:
    """The whole run's graph, tasks in id order, each node once."""
    nodes: dict[str, LineageNode] = {}
    edges: list[LineageLink] = []
    for rec in sorted(records.values(), key=lambda r: r.task.id):
        task_nodes, task_edges = task_lineage(rec, node_of)
        for n in task_nodes:
            if n["id"] not in nodes:
                nodes[str(n["id"])] = LineageNode.model_validate(n)
        edges += [LineageLink(source=a, relation=r, to=b) for a, r, b in task_edges]
    return LineageGraph(nodes=list(nodes.values()), edges=edges)


def lineage_mermaid(graph: LineageGraph) -> str:
    """The lineage graph as a Mermaid flowchart; findings are drawn as one count per task."""

    def mid(text: str) -> str:
        return "n" + hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:10]

    lines = ["flowchart LR"]
    found: dict[str, int] = {}
    for e in graph.edges:
        if e.relation == "found":
            found[e.source] = found.get(e.source, 0) + 1
        elif e.relation != "discovered":
            lines.append(f'  {mid(e.source)}["{e.source}"] -->|{e.relation}| {mid(e.to)}["{e.to}"]')
    for task, n in sorted(found.items()):
        lines.append(f'  {mid(task)} -->|found| {mid(task + "#findings")}(["{n} finding(s)"])')
    return "\n".join(lines) + "\n"
