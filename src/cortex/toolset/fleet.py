"""Working copies of a fleet: the demo runs on copies under the state directory, each made a git repository,
so tools that write (test runs, fix branches) never touch the project's own checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from cortex.errors import StartFailed

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Cortex demo",
    "GIT_AUTHOR_EMAIL": "cortex@localhost",
    "GIT_COMMITTER_NAME": "Cortex demo",
    "GIT_COMMITTER_EMAIL": "cortex@localhost",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, **_GIT_ENV, "HOME": str(repo)}  # no user or system git configuration leaks in
    result = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise StartFailed(f"git {' '.join(args)} in {repo} failed: {result.stderr.strip()[-300:]}")


def working_copy(source: Path, dest: Path) -> Path:
    """Copy every repository of ``source`` into ``dest`` (replacing an earlier copy) and commit each one."""
    if shutil.which("git") is None:
        raise StartFailed("git is not on PATH: the demo needs it to make its working copies")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "node_modules"))
    for repo in sorted(p for p in dest.iterdir() if p.is_dir()):
        _git(repo, "init", "-q", "-b", "main")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"Import {repo.name} for the Cortex demo")
    return dest
