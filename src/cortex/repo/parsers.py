"""Parsers of the files a repository declares itself in. Each returns plain, JSON-able values (typed dicts), so
their results can go into task outputs and catalog assets as they are."""

from __future__ import annotations

import json
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import yaml
from packaging.requirements import InvalidRequirement, Requirement

from cortex.files import walk_files

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
"""File suffix -> language, for counting files and lines."""


class Package(TypedDict):
    """A declared dependency: ecosystem (``PyPI``, ``npm``), name, version specifier, the file declaring it, and
    the locked version when a lock file has one."""

    ecosystem: str
    name: str
    spec: str
    source: str
    locked: NotRequired[str]


class K8sObject(TypedDict):
    """A Kubernetes object found in a YAML file."""

    kind: str
    name: str | None
    namespace: str
    images: list[str]
    file: str


def _pep508(spec: str, source: str) -> Package | None:
    try:
        req = Requirement(spec)
    except InvalidRequirement:
        return None
    return {"ecosystem": "PyPI", "name": req.name.lower(), "spec": str(req.specifier), "source": source}


def python_packages(root: Path) -> list[Package]:
    """Packages declared in pyproject.toml (PEP 621) and requirements*.txt."""
    found: list[Package] = []
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


def node_packages(root: Path) -> list[Package]:
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
    out: list[Package] = []
    for section in ("dependencies", "devDependencies"):
        for name, spec in sorted(data.get(section, {}).items()):
            item: Package = {"ecosystem": "npm", "name": name, "spec": str(spec), "source": "package.json"}
            if name in locked:
                item["locked"] = locked[name]
            out.append(item)
    return out


def is_dockerfile(path: Path) -> bool:
    """``Dockerfile`` or ``Dockerfile.<variant>``."""
    return path.name == "Dockerfile" or path.name.startswith("Dockerfile.")


def docker_images(path: Path) -> list[str]:
    """Base images named by FROM lines."""
    images = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].upper() == "FROM":
            images.append(parts[1])
    return images


def k8s_objects(path: Path) -> list[K8sObject]:
    """Kubernetes objects (kind, name, namespace, images) in a YAML file; other YAML yields nothing."""
    out: list[K8sObject] = []
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except yaml.YAMLError:
        return []
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            continue
        meta = doc.get("metadata") or {}
        spec = (doc.get("spec") or {}).get("template", {}).get("spec", {}) or doc.get("spec") or {}
        images = [str(c["image"]) for c in spec.get("containers", []) if isinstance(c, dict) and c.get("image")]
        out.append(
            {
                "kind": str(doc["kind"]),
                "name": meta.get("name"),
                "namespace": str(meta.get("namespace", "default")),
                "images": images,
                "file": str(path),
            }
        )
    return out


def kubernetes_services(root: Path) -> list[K8sObject]:
    """Kubernetes Services declared in the repository's YAML (workflow files excluded), by namespace and name."""
    found: list[K8sObject] = []
    for path in walk_files(root):
        if path.suffix in (".yml", ".yaml") and ".github" not in path.parts:
            found += [o for o in k8s_objects(path) if o["kind"] == "Service"]
    return sorted(found, key=lambda o: (o["namespace"], o["name"] or ""))


def workflow_files(root: Path) -> list[Path]:
    """GitHub Actions workflow files (``.github/workflows/*.yml|yaml``), symbolic links left out."""
    folder = root / ".github" / "workflows"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file() and not p.is_symlink())


def load_workflow(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A workflow document and None, or None and what is wrong with it (not YAML, no ``jobs`` mapping)."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        return None, f"not valid YAML: {exc}"
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), dict):
        return None, "workflow has no jobs mapping"
    return doc, None


def languages(root: Path) -> dict[str, int]:
    """Files per language (by suffix), sorted by language."""
    counts: Counter[str] = Counter()
    for path in walk_files(root):
        if lang := LANGUAGES.get(path.suffix):
            counts[lang] += 1
    return dict(sorted(counts.items()))
