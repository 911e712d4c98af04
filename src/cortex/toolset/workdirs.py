"""Where a task works on disk, and how nothing is left behind whatever kills it.

Every task's scratch space and git worktree live under the run's directory, named by the task:
``<state>/runs/<run id>/work/<task>/`` (``scratch/``, ``tree/``), with a marker file naming the run. A task attempt
starts by reclaiming what an earlier attempt of the same task left (a worker killed mid-task runs no cleanup); a
fix branch's repository is first rid of the worktrees of killed attempts, of this run or of runs no coordinator
leads any more; and the run's end (``reclaim_run``) removes the run's worktrees from every target repository and
the whole ``work`` directory, on success, failure, Ctrl-C or error alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import redis.asyncio as aredis

from cortex.coord.keys import leader_resource, lock_key
from cortex.files import links_outside
from cortex.models.plan import Plan

MARKER = ".cortex-run"
"""In each task directory: the id of the run it belongs to."""


def work_root(state_dir: Path, run_id: str) -> Path:
    """The run's ``work`` directory."""
    return state_dir.resolve() / "runs" / run_id / "work"


def task_dir(state_dir: Path, run_id: str, task_id: str) -> Path:
    """The directory of task ``task_id``: its id made safe for a file name (and kept unique by a digest)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", task_id)[:80]
    digest = hashlib.sha256(task_id.encode()).hexdigest()[:8]
    return work_root(state_dir, run_id) / f"{safe}-{digest}"


def fresh(directory: Path, run_id: str) -> Path:
    """``directory`` emptied of an earlier attempt's leftovers and marked as the run's."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    (directory.parent / MARKER).write_text(run_id + "\n", encoding="utf-8")
    return directory


@contextlib.contextmanager
def scratch(state_dir: Path, run_id: str, task_id: str) -> Iterator[Path]:
    """The task's scratch directory, empty at the start, removed at the end (and by the next attempt or the run's
    end if this one is killed)."""
    place = fresh(task_dir(state_dir, run_id, task_id) / "scratch", run_id)
    try:
        yield place
    finally:
        shutil.rmtree(place, ignore_errors=True)


def copy_target(root: Path, dest: Path) -> Path:
    """A copy of the target ``root`` at ``dest`` to run its tests in, so a run never changes its targets (a suite
    that writes into its repository would change the repository's revision, and every later run's cache keys):
    without ``.git``, ``node_modules``, or any link that leads out of it (the copy stays inside the target)."""
    outside = {root / rel for rel, _ in links_outside(root)}

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n in (".git", "node_modules") or Path(folder, n) in outside}

    shutil.copytree(root, dest, ignore=ignore, symlinks=True)
    return dest


def _worktrees(root: Path) -> list[tuple[Path, str | None]]:
    """The worktrees of repository ``root`` other than its own: path and checked-out branch."""
    out = subprocess.run(  # noqa: S603  (fixed argv, no shell)
        ["git", "worktree", "list", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=60, check=False
    ).stdout
    found: list[tuple[Path, str | None]] = []
    for block in out.strip().split("\n\n"):
        fields = dict(line.split(" ", 1) for line in block.splitlines() if " " in line)
        path = Path(fields.get("worktree", ""))
        if fields.get("worktree") and path.resolve() != root.resolve():
            found.append((path, fields.get("branch", "").removeprefix("refs/heads/") or None))
    return found


def checked_out(root: Path) -> set[str]:
    """Branches of ``root`` checked out in another worktree (git refuses to check them out twice)."""
    return {branch for _, branch in _worktrees(root) if branch}


def _owner(worktree: Path) -> str | None:
    """The run a Cortex worktree belongs to (from its task directory's marker), or None if it is not Cortex's."""
    marker = worktree.parent / MARKER
    try:
        return marker.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _remove(root: Path, worktree: Path) -> None:
    argv = ["git", "worktree", "remove", "--force", str(worktree)]
    subprocess.run(argv, cwd=root, capture_output=True, timeout=60, check=False)  # noqa: S603
    shutil.rmtree(worktree.parent, ignore_errors=True)


async def reclaim_worktrees(root: Path, redis: aredis.Redis, run_id: str) -> list[str]:
    """Remove the worktrees of ``root`` left by killed attempts: those of this run (the caller holds the
    repository's lock, so none of them is in use) and those of runs no coordinator leads. Returns their paths."""
    stale = []
    for path, _ in await asyncio.to_thread(_worktrees, root):
        owner = _owner(path)
        if owner is None:
            continue  # not Cortex's
        if owner == run_id or not await redis.exists(lock_key(leader_resource(owner))):
            stale.append(path)
    for path in stale:
        await asyncio.to_thread(_remove, root, path)
    await asyncio.to_thread(_prune, root)
    return [str(p) for p in stale]


def _prune(root: Path) -> None:
    """Forget the worktrees whose directory is gone."""
    subprocess.run(["git", "worktree", "prune"], cwd=root, capture_output=True, timeout=60, check=False)  # noqa: S607


def lost_fix(root: Path, branch: str, commit: str) -> str | None:
    """Why the fix ``commit`` is not on ``branch`` of ``root`` (None when the branch's tip is that commit)."""
    argv = ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"]
    tip = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=60, check=False).stdout.strip()  # noqa: S603
    if not tip:
        return f"branch {branch} does not exist in {root}"
    return None if tip == commit else f"branch {branch} is at {tip[:12]}, not at the reported {commit[:12]}"


def reclaim_run(state_dir: Path, run_id: str, plan: Plan) -> int:
    """At the run's end: remove the run's worktrees from every target repository and the run's ``work``
    directory. Returns how many worktrees were removed."""
    top = work_root(state_dir, run_id)
    removed = 0
    for target in plan.targets:
        root = Path(target.path)
        if not (root / ".git").exists():
            continue
        for path, _ in _worktrees(root):
            if path.resolve().is_relative_to(top):
                _remove(root, path)
                removed += 1
        _prune(root)
    shutil.rmtree(top, ignore_errors=True)
    return removed
