"""Targets: the repositories a plan works on, and the traits playbooks match (``python``, ``workflows``...)."""

from __future__ import annotations

from pathlib import Path

from cortex.errors import InputError
from cortex.models.plan import Target

_SKIP = {".git", "node_modules", ".venv", "venv", "__pycache__"}


def traits(repo: Path) -> list[str]:
    """What a repository is made of, from its top-level files: python, node, docker, go, rust, workflows,
    kubernetes, tests."""
    names = {p.name for p in repo.iterdir()}
    found: set[str] = set()
    if names & {"pyproject.toml", "setup.py", "setup.cfg", "requirements.txt"}:
        found.add("python")
    if "package.json" in names:
        found.add("node")
    if "Dockerfile" in names:
        found.add("docker")
    if "go.mod" in names:
        found.add("go")
    if "Cargo.toml" in names:
        found.add("rust")
    workflows = repo / ".github" / "workflows"
    if workflows.is_dir() and any(p.suffix in (".yml", ".yaml") for p in workflows.iterdir()):
        found.add("workflows")
    if (repo / "k8s").is_dir() or (repo / "deploy").is_dir():
        found.add("kubernetes")
    if (repo / "tests").is_dir() or (repo / "test").is_dir():
        found.add("tests")
    return sorted(found)


def discover_targets(path: Path) -> list[Target]:
    """Each subdirectory of ``path`` is a target; a directory that is itself a repository is the only target.

    Sorted by name so the plan does not depend on directory listing order.
    """
    if not path.is_dir():
        raise InputError(str(path), "targets must be a directory", hint="pass --targets DIR, e.g. examples/fleet")
    root = path.resolve()
    if (root / ".git").exists() or traits(root):
        repos = [root]
    else:
        repos = sorted(p for p in root.iterdir() if p.is_dir() and p.name not in _SKIP and not p.name.startswith("."))
    if not repos:
        raise InputError(str(path), "no target directories found", hint="put one repository per subdirectory")
    return [Target(name=r.name, path=str(r), traits=traits(r)) for r in repos]
