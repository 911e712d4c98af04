"""Inventory tools: asset discovery (languages, manifests, declared packages, Dockerfiles, Kubernetes objects,
CI workflows) and code metrics (size, Python cyclomatic complexity)."""

from __future__ import annotations

import ast
import asyncio
import json
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement

from cortex.toolset.registry import Output, TaskContext, task_kind, walk_files

LANGUAGES = {
    ".py": "Python",
    ".js": "JavaScript",
    ".mjs": "JavaScript",
    ".ts": "TypeScript",
    ".go": "Go",
    ".rs": "Rust",
    ".java": "Java",
    ".rb": "Ruby",
    ".sh": "Shell",
    ".yml": "YAML",
    ".yaml": "YAML",
    ".json": "JSON",
    ".toml": "TOML",
    ".md": "Markdown",
}


def _pep508(spec: str, source: str) -> dict[str, str] | None:
    try:
        req = Requirement(spec)
    except InvalidRequirement:
        return None
    return {"ecosystem": "PyPI", "name": req.name.lower(), "spec": str(req.specifier), "source": source}


def python_packages(root: Path) -> list[dict[str, str]]:
    """Packages declared in pyproject.toml (PEP 621) and requirements*.txt."""
    found: list[dict[str, str]] = []
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        specs = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            specs += extra
        found += [p for s in specs if (p := _pep508(s, "pyproject.toml"))]
    for req_file in sorted(root.glob("requirements*.txt")):
        for line in req_file.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-") and (p := _pep508(line, req_file.name)):
                found.append(p)
    return found


def node_packages(root: Path) -> list[dict[str, str]]:
    """Packages from package.json, with the locked version from package-lock.json when present."""
    manifest = root / "package.json"
    if not manifest.is_file():
        return []
    data = json.loads(manifest.read_text(encoding="utf-8"))
    locked: dict[str, str] = {}
    lock = root / "package-lock.json"
    if lock.is_file():
        for key, meta in json.loads(lock.read_text(encoding="utf-8")).get("packages", {}).items():
            if key.startswith("node_modules/") and isinstance(meta, dict) and "version" in meta:
                locked[key.removeprefix("node_modules/")] = str(meta["version"])
    out = []
    for section in ("dependencies", "devDependencies"):
        for name, spec in sorted(data.get(section, {}).items()):
            item = {"ecosystem": "npm", "name": name, "spec": str(spec), "source": "package.json"}
            if name in locked:
                item["locked"] = locked[name]
            out.append(item)
    return out


def docker_images(path: Path) -> list[str]:
    """Base images named by FROM lines."""
    images = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].upper() == "FROM":
            images.append(parts[1])
    return images


def k8s_objects(path: Path) -> list[dict[str, Any]]:
    """Kubernetes objects (kind, name, namespace, images) in a YAML file; other YAML yields nothing."""
    out = []
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except yaml.YAMLError:
        return []
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            continue
        meta = doc.get("metadata") or {}
        spec = (doc.get("spec") or {}).get("template", {}).get("spec", {}) or doc.get("spec") or {}
        images = [c.get("image") for c in spec.get("containers", []) if isinstance(c, dict) and c.get("image")]
        out.append(
            {
                "kind": doc["kind"],
                "name": meta.get("name"),
                "namespace": meta.get("namespace", "default"),
                "images": images,
                "file": str(path),
            }
        )
    return out


def discover(root: Path) -> Output:
    """Every asset of one repository, with counts by type."""
    languages: Counter[str] = Counter()
    dockerfiles, workloads, workflows = [], [], []
    for path in walk_files(root):
        rel = path.relative_to(root)
        if lang := LANGUAGES.get(path.suffix):
            languages[lang] += 1
        if path.name == "Dockerfile" or path.name.startswith("Dockerfile."):
            dockerfiles.append({"file": str(rel), "base_images": docker_images(path)})
        elif rel.parts[:2] == (".github", "workflows") and path.suffix in (".yml", ".yaml"):
            workflows.append(str(rel))
        elif path.suffix in (".yml", ".yaml"):
            workloads += [{**o, "file": str(rel)} for o in k8s_objects(path)]
    packages = python_packages(root) + node_packages(root)
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
        "has_tests": (root / "tests").is_dir() or (root / "test").is_dir(),
        "assets": assets,
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
    client = ctx.extra.get("catalog")
    if client is None:
        return "not configured"
    from cortex.catalog.discovery import repository_records
    from cortex.models.assets import LineageEdge

    produced = await asyncio.to_thread(repository_records, root)
    outcomes: Counter[str] = Counter()
    recorded_by = {"run_id": ctx.run_id, "task_id": ctx.task.id, "worker": ctx.worker_id, "master": ctx.task.master}
    for asset in {a.id: a for a in produced.assets}.values():
        stamped = asset.model_copy(update={"metadata": {**asset.metadata, "recorded_by": recorded_by}})
        outcomes[await client.upsert(stamped)] += 1
    for up, down, relation in sorted(set(produced.edges)):
        edge = LineageEdge(
            upstream=up, downstream=down, relation=relation, run_id=ctx.run_id, task_id=ctx.task.id, agent=ctx.worker_id
        )
        outcomes[await client.link(edge)] += 1
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
