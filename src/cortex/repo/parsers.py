"""Parsers of the files a repository declares itself in. Each returns plain, JSON-able values (typed dicts), so
their results can go into task outputs and catalog assets as they are."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import yaml

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


class K8sObject(TypedDict):
    """A Kubernetes object found in a YAML file: its kind, name, namespace, labels, container images, and for a
    Service its first port's name and target port."""

    kind: str
    name: str | None
    namespace: str
    images: list[str]
    file: str
    labels: NotRequired[dict[str, str]]
    port_name: NotRequired[str | None]
    target_port: NotRequired[int | str | None]


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
        if str(doc["apiVersion"]).startswith("backstage.io/"):
            continue  # a Backstage catalog entity has the same shape, and is not a Kubernetes object
        meta = doc.get("metadata") or {}
        spec = (doc.get("spec") or {}).get("template", {}).get("spec", {}) or doc.get("spec") or {}
        images = [str(c["image"]) for c in spec.get("containers", []) if isinstance(c, dict) and c.get("image")]
        obj: K8sObject = {
            "kind": str(doc["kind"]),
            "name": meta.get("name"),
            "namespace": str(meta.get("namespace", "default")),
            "images": images,
            "file": str(path),
            "labels": {str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        }
        ports = spec.get("ports") if doc["kind"] == "Service" else None
        if isinstance(ports, list) and ports and isinstance(ports[0], dict):
            obj["port_name"] = ports[0].get("name")
            obj["target_port"] = ports[0].get("targetPort", ports[0].get("port"))
        out.append(obj)
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


class WorkflowLines(TypedDict):
    """Where things are in a workflow file (1-based lines): the ``permissions`` key (or line 1 when it is not
    set), each job, each step of each job."""

    permissions: int
    jobs: dict[str, int]
    steps: dict[str, list[int]]


def workflow_lines(path: Path) -> WorkflowLines:
    """Line numbers of a workflow's parts, for findings a person can find; line 1 for anything not located."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    out = WorkflowLines(permissions=1, jobs={}, steps={})
    try:
        doc = YAML(typ="rt").load(path.read_text(encoding="utf-8"))
    except (YAMLError, OSError, UnicodeDecodeError):
        return out
    if not isinstance(doc, dict) or not hasattr(doc, "lc"):
        return out
    if "permissions" in doc:
        out["permissions"] = doc.lc.key("permissions")[0] + 1
    jobs = doc.get("jobs")
    if isinstance(jobs, dict) and hasattr(jobs, "lc"):
        for name, job in jobs.items():
            out["jobs"][str(name)] = jobs.lc.key(name)[0] + 1
            steps = job.get("steps") if isinstance(job, dict) else None
            if isinstance(steps, list) and hasattr(steps, "lc"):
                out["steps"][str(name)] = [steps.lc.item(i)[0] + 1 for i in range(len(steps))]
    return out


def languages(root: Path) -> dict[str, int]:
    """Files per language (by suffix), sorted by language."""
    counts: Counter[str] = Counter()
    for path in walk_files(root):
        if lang := LANGUAGES.get(path.suffix):
            counts[lang] += 1
    return dict(sorted(counts.items()))
