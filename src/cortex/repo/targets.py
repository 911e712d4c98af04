"""Targets: the repositories a plan works on, and the traits playbooks match (``python``, ``workflows``...)."""

from __future__ import annotations

from pathlib import Path

from cortex.errors import InputError
from cortex.files import regular_dir
from cortex.models.plan import Target
from cortex.repo.measures import survey

_SKIP = {".git", "node_modules", ".venv", "venv", "__pycache__"}


def traits(repo: Path, top: set[str] | None = None) -> list[str]:
    """What a repository is made of, from its top-level files: python, node, docker, go, rust, workflows,
    kubernetes, tests. ``top``: the names at its top level that are not links, when the caller has them."""
    # a link is not followed, even to decide
    names = top if top is not None else {p.name for p in repo.iterdir() if not p.is_symlink()}
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
    yamls = (
        regular_dir(repo / ".github")
        and regular_dir(workflows)
        and any(p.suffix in (".yml", ".yaml") and not p.is_symlink() for p in workflows.iterdir())
    )
    if yamls:
        found.add("workflows")
    if regular_dir(repo / "k8s") or regular_dir(repo / "deploy"):
        found.add("kubernetes")
    if regular_dir(repo / "tests") or regular_dir(repo / "test"):
        found.add("tests")
    return sorted(found)


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
        repos = sorted(p for p in _candidates(root) if regular_dir(p))
    if not repos:
        raise InputError(str(path), "no target directories found", hint="put one repository per subdirectory")
    out = []
    for r in repos:
        measures, links, top = survey(r)
        out.append(
            Target(
                name=r.name,
                path=str(r),
                traits=traits(r, top),
                links_outside=[f"{rel} -> {dest}" for rel, dest in links],
                measures=measures,
            )
        )
    return out


def _candidates(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.name not in _SKIP and not p.name.startswith(".")]


def skipped_links(path: Path) -> list[str]:
    """The subdirectories of the targets directory ``path`` that are symbolic links (``discover_targets`` does not
    follow them), as ``name -> destination``."""
    root = path.resolve()
    if root.is_file() or (root / ".git").exists() or traits(root):
        return []
    return [f"{p.name} -> {p.readlink()}" for p in sorted(_candidates(root)) if p.is_symlink()]
