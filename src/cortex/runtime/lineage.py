"""The run's lineage: master owns task, task ran on worker, examined target, found finding, discovered assets, and
the dependencies between tasks. The coordinator announces a task's edges on the lineage channel as its result is
applied, and the archive keeps the whole graph (``lineage.json`` and ``lineage.mmd``) built by the same code."""

from __future__ import annotations

import hashlib

from cortex.models.report import LineageGraph, LineageLink, LineageNode
from cortex.runtime.records import TaskRecord


def task_lineage(rec: TaskRecord, node_of: dict[str, str]) -> tuple[list[LineageNode], list[LineageLink]]:
    """The nodes and edges one task contributes (only a task that succeeded contributes outputs)."""
    nodes: list[LineageNode] = []
    edges: list[LineageLink] = []

    def node(nid: str, kind: str, **attrs: str | int | None) -> str:
        nodes.append(LineageNode(id=nid, kind=kind, **attrs))
        return nid

    def edge(src: str, dst: str, relation: str) -> None:
        edges.append(LineageLink(source=src, to=dst, relation=relation))

    t = node(f"task:{rec.task.id}", "task", state=rec.state.value, task_kind=rec.task.kind)
    edge(node(f"master:{rec.task.master}", "master"), t, "owns")
    if rec.task.target:
        edge(t, node(f"target:{rec.task.target}", "target"), "examined")
    if rec.worker:
        edge(t, node(f"worker:{rec.worker}", "worker", node=node_of.get(rec.worker, "")), "ran_on")
    for d in rec.task.depends_on:
        edge(f"task:{d}", t, "before")
    out = rec.output if rec.state.value == "succeeded" else {}
    findings = out.get("findings", [])
    for f in findings if isinstance(findings, list) else []:
        if not isinstance(f, dict):
            continue
        where = f.get("file", f.get("package", f.get("where", "")))
        fid = f"finding:{rec.task.target}:{f.get('tool', 'cicd')}:{f.get('id', f.get('rule'))}:{where}"
        severity = f.get("severity")
        edge(t, node(fid, "finding", severity=str(severity) if severity is not None else None), "found")
    assets = out.get("assets", {})
    for kind, count in sorted(assets.items()) if isinstance(assets, dict) else []:
        n = int(count) if isinstance(count, int | float | str) else 0
        edge(t, node(f"assets:{rec.task.target}:{kind}", "assets", count=n), "discovered")
    return nodes, edges


def lineage_graph(records: dict[str, TaskRecord], node_of: dict[str, str]) -> LineageGraph:
    """The whole run's graph, tasks in id order, each node once."""
    nodes: dict[str, LineageNode] = {}
    edges: list[LineageLink] = []
    for rec in sorted(records.values(), key=lambda r: r.task.id):
        task_nodes, task_edges = task_lineage(rec, node_of)
        for n in task_nodes:
            nodes.setdefault(n.id, n)
        edges += task_edges
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
