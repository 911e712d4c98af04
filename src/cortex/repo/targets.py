"""Targets: the repositories a plan works on, and the traits playbooks match (``python``, ``workflows``...)."""

from __future__ import annotations

import os
from pathlib import Path

from cortex.errors import InputError
from cortex.files import regular_dir
from cortex.models.plan import Target
from cortex.repo.measures import Survey, survey_all

_SKIP = {".git", "node_modules", ".venv", "venv", "__pycache__"}


def _traits(names: set[str], dirs: set[str], workflow_yaml: bool) -> list[str]:
    found: set[str] = set()
    if names & {"pyproject.toml", "setup.py", "setup.cfg", "requirements.txt"}:
        found.add("python")
    for name, trait in (("package.json", "node"), ("Dockerfile", "docker"), ("go.mod", "go"), ("Cargo.toml", "rust")):
        if name in names:
            found.add(trait)
    if workflow_yaml:
        found.add("workflows")
    if dirs & {"k8s", "deploy"}:
        found.add("kubernetes")
    if dirs & {"tests", "test"}:
        found.add("tests")
    return sorted(found)


def traits(repo: Path) -> list[str]:
    """What a repository is made of, from its top-level files: python, node, docker, go, rust, workflows,
    kubernetes, tests. A link is not followed, even to decide."""
    with os.scandir(repo) as found:  # the entries' own types: a fleet's root has thousands of them
        top = [e for e in found if not e.is_symlink()]
    dirs = {e.name for e in top if e.is_dir(follow_symlinks=False)}
    workflows = repo / ".github" / "workflows"
    yamls = (
        ".github" in dirs
        and regular_dir(workflows)
        and any(p.suffix in (".yml", ".yaml") and not p.is_symlink() for p in workflows.iterdir())
    )
    return _traits({e.name for e in top}, dirs, yamls)


def traits_of(found: Survey) -> list[str]:
    """``traits`` from a survey's walk, without reading the disk again."""
    return _traits(found.top_files | found.top_dirs, found.top_dirs, found.workflow_yaml)


def discover_targets(path: Path) -> list[Target]:
    """Each subdirectory of ``path`` is a target; a directory that is itself a repository is the only target.
    A subdirectory that is a symbolic link is not one (``skipped_links`` says which were left out), and links
    inside a target that lead out of it are recorded on the target (``Target.links_outside``), never followed.

    Sorted by name so the plan does not depend on directory listing order.
    """
    if not path.is_dir():
        raise InputError(
            str(path), "targets must be a directory or a fleet file", hint="pass --targets DIR or --targets fleet.yaml"
        )
    root = path.resolve()
    if (root / ".git").exists() or traits(root):
        repos = [root]
    else:
        dirs = sorted(e.name for e in _candidates(root) if not e.is_symlink() and e.is_dir())
        repos = [root / name for name in dirs]  # sorted as names: comparing 10,000 paths took 0.25 s
    if not repos:
        raise InputError(str(path), "no target directories found", hint="put one repository per subdirectory")
    found = survey_all(repos)
    return [
        Target(
            name=r.name,
            path=str(r),
            traits=traits_of(f),
            links_outside=[f"{rel} -> {dest}" for rel, dest in f.links],
            measures=f.measures,
        )
        for r, f in zip(repos, found, strict=True)
    ]


def _candidates(root: Path) -> list[os.DirEntry[str]]:
    """The entries of a targets directory that may be targets, with the types the listing gave (no stat each)."""
    with os.scandir(root) as found:
        return [e for e in found if e.name not in _SKIP and not e.name.startswith(".")]


def skipped_links(path: Path) -> list[str]:
    """The subdirectories of the targets directory ``path`` that are symbolic links (``discover_targets`` does not
    follow them), as ``name -> destination``."""
    root = path.resolve()
    if root.is_file() or (root / ".git").exists() or traits(root):
        return []
    links = sorted((e for e in _candidates(root) if e.is_symlink()), key=lambda e: e.name)
    return [f"{e.name} -> {os.readlink(e.path)}" for e in links]
