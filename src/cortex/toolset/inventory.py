"""Inventory tools: asset discovery (languages, manifests, declared packages, Dockerfiles, Kubernetes objects,
CI workflows) and code metrics (size, Python cyclomatic complexity)."""

from __future__ import annotations

import ast
import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from cortex.files import links_outside, regular_dir, walk_files
from cortex.repo import (
    LANGUAGES,
    ManifestProblem,
    declared_packages,
    docker_images,
    is_dockerfile,
    k8s_objects,
    ownership,
)
from cortex.toolset.context import Output, TaskContext, task_kind


def discover(root: Path) -> Output:
    """Every asset of one repository, with counts by type."""
    languages: Counter[str] = Counter()
    dockerfiles, workloads, workflows = [], [], []
    for path in walk_files(root):
        rel = path.relative_to(root)
        if lang := LANGUAGES.get(path.suffix):
            languages[lang] += 1
        if is_dockerfile(path):
            dockerfiles.append({"file": str(rel), "base_images": docker_images(path)})
        elif rel.parts[:2] == (".github", "workflows") and path.suffix in (".yml", ".yaml"):
            workflows.append(str(rel))
        elif path.suffix in (".yml", ".yaml"):
            workloads += [{**o, "file": str(rel)} for o in k8s_objects(path)]
    declared = declared_packages(root)
    packages = declared.packages
    assets = {
        "repository": 1,
        "package": len(packages),
        "image": sum(len(d["base_images"]) for d in dockerfiles),
        "workload": sum(1 for w in workloads if w["kind"] != "Service"),
        "service": sum(1 for w in workloads if w["kind"] == "Service"),
        "workflow": len(workflows),
    }
    return {
        "repository": root.name,
        "languages": dict(sorted(languages.items())),
        "packages": packages,
        "dockerfiles": dockerfiles,
        "kubernetes": workloads,
        "workflows": workflows,
        "has_tests": regular_dir(root / "tests") or regular_dir(root / "test"),
        "ownership": ownership(root),
        "assets": assets,
        "findings": [manifest_finding(p) for p in declared.problems] + [link_finding(*x) for x in links_outside(root)],
    }


def link_finding(path: str, destination: str) -> dict[str, Any]:
    """A symbolic link that leads out of the repository: Cortex does not follow it (no tool it runs reads
    through it), and says so."""
    return {
        "tool": "inventory",
        "id": "link-outside-repository",
        "severity": "medium",
        "file": path,
        "line": None,
        "summary": f"symbolic link to {destination}, outside the repository: not followed",
    }


def manifest_finding(problem: ManifestProblem) -> dict[str, Any]:
    """A manifest that does not parse, as a finding a person can act on: the file, the line, the parser's
    message. The repository's other manifests and checks still run."""
    return {
        "tool": "inventory",
        "id": "unparsable-manifest",
        "severity": "medium",
        "file": problem["file"],
        "line": problem["line"],
        "summary": problem["message"],
    }


@task_kind("inventory.discover")
async def discover_task(ctx: TaskContext) -> Output:
    """Asset discovery over the task's repository; recorded in the catalog when the run has one."""
    root = ctx.require_target()
    result = await asyncio.to_thread(discover, root)
    result["catalog"] = await record_in_catalog(ctx, root)
    return result


async def record_in_catalog(ctx: TaskContext, root: Path) -> dict[str, Any] | str:
    """Send the repository's assets and lineage to the catalog (queued if the API is down), with provenance."""
    client = ctx.services.catalog
    if client is None:
        return "not configured"
    from cortex.catalog.discovery import repository_records
    from cortex.models.assets import LineageEdge

    produced = await asyncio.to_thread(repository_records, root, ctx.target_remote)
    outcomes: Counter[str] = Counter()
    recorded_by = {"run_id": ctx.run_id, "task_id": ctx.task.id, "worker": ctx.worker_id, "master": ctx.task.master}
    for asset in {a.id: a for a in produced.assets}.values():
        stamped = asset.model_copy(update={"metadata": {**asset.metadata, "recorded_by": recorded_by}})
        outcomes[await client.upsert(stamped)] += 1
    edges = sorted(set(produced.edges))
    for up, down, relation in edges:
        edge = LineageEdge(
            upstream=up, downstream=down, relation=relation, run_id=ctx.run_id, task_id=ctx.task.id, agent=ctx.worker_id
        )
        outcomes[await client.link(edge)] += 1
    ctx.lineage([(up, relation, down) for up, down, relation in edges])
    return {"sent": outcomes["sent"], "queued": outcomes["queued"]}


_BRANCHES = (
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.Try,
    ast.With,
    ast.AsyncWith,
    ast.IfExp,
    ast.ExceptHandler,
    ast.comprehension,
    ast.Assert,
    ast.match_case,
)


def function_complexity(tree: ast.AST) -> list[tuple[str, int]]:
    """McCabe-style complexity per function: 1 + branches + boolean operators."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            score = 1
            for inner in ast.walk(node):
                if isinstance(inner, _BRANCHES):
                    score += 1
                elif isinstance(inner, ast.BoolOp):
                    score += len(inner.values) - 1
            out.append((node.name, score))
    return out


def metrics(root: Path) -> Output:
    """Files, lines (code, blank, comment) per language, and Python function complexity."""
    per_lang: dict[str, Counter[str]] = {}
    functions: list[dict[str, Any]] = []
    for path in walk_files(root):
        lang = LANGUAGES.get(path.suffix)
        if lang is None:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        counts = per_lang.setdefault(lang, Counter())
        counts["files"] += 1
        for line in text.splitlines():
            stripped = line.strip()
            counts["blank" if not stripped else "comment" if stripped.startswith(("#", "//")) else "code"] += 1
        if path.suffix == ".py":
            try:
                tree = ast.parse(text)
            except SyntaxError:
                continue
            rel = str(path.relative_to(root))
            functions += [{"file": rel, "function": n, "complexity": c} for n, c in function_complexity(tree)]
    scores = [f["complexity"] for f in functions]
    return {
        "repository": root.name,
        "languages": {k: dict(v) for k, v in sorted(per_lang.items())},
        "code_lines": sum(v["code"] for v in per_lang.values()),
        "functions": len(functions),
        "max_complexity": max(scores, default=0),
        "mean_complexity": round(sum(scores) / len(scores), 2) if scores else 0.0,
        "most_complex": sorted(functions, key=lambda f: (-f["complexity"], f["file"], f["function"]))[:5],
    }


@task_kind("inventory.metrics")
async def metrics_task(ctx: TaskContext) -> Output:
    """Code metrics over the task's repository."""
    return await asyncio.to_thread(metrics, ctx.require_target())
