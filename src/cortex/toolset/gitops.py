"""Git for the tasks that change code: branches made in separate worktrees (the repository's working tree is
never touched), under a fenced lock on the repository, and never at the cost of someone else's commits.

A branch name Cortex wants may already exist. When it holds nothing beyond the repository's HEAD it is reused;
when its tip was made by this very task of this run (a redelivered task), that work is returned as it is; any
other commits on it are left alone and the new work goes on the next free name (``<name>-2``, ``-3``...), so
commit ids recorded by earlier runs stay valid.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from cortex.errors import TaskFailed
from cortex.toolset.builtin import run_argv
from cortex.toolset.context import TaskContext

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Cortex",
    "GIT_AUTHOR_EMAIL": "cortex@localhost",
    "GIT_COMMITTER_NAME": "Cortex",
    "GIT_COMMITTER_EMAIL": "cortex@localhost",
    "GIT_CONFIG_NOSYSTEM": "1",
}


async def git(cwd: Path, *args: str, timeout_s: float = 60, check: bool = True) -> str:
    """Run git without a shell; its own error fails the task (unless ``check`` is off)."""
    code, out, err = await run_argv(["git", *args], str(cwd), timeout_s, env={**GIT_ENV, "HOME": str(cwd)})
    if code != 0 and check:
        raise TaskFailed(f"git {args[0]} failed: {(err or out).strip()[-300:]}", retryable=False)
    return out.strip() if code == 0 else ""


def trailers(ctx: TaskContext) -> str:
    """The commit trailers that say which run and task made a commit."""
    return f"Cortex-Run: {ctx.run_id}\nCortex-Task: {ctx.task.id}\n"


@dataclass
class Branch:
    """Where a task's work goes: the branch name, and the commit already made there by this task of this run (a
    redelivered task returns it instead of doing the work again)."""

    name: str
    done: str | None = None


async def claim_branch(ctx: TaskContext, root: Path, wanted: str) -> Branch:
    """The branch this task may use for ``wanted`` (see the module's docstring)."""
    head = await git(root, "rev-parse", "HEAD")
    for n in range(1, 100):
        name = wanted if n == 1 else f"{wanted}-{n}"
        tip = await git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}", check=False)
        if not tip:
            return Branch(name)
        ahead = await git(root, "rev-list", "--count", f"{head}..{tip}")
        if ahead == "0":
            return Branch(name)  # nothing on it beyond HEAD: nothing to lose
        message = await git(root, "log", "-1", "--format=%B", tip)
        if f"Cortex-Run: {ctx.run_id}" in message and f"Cortex-Task: {ctx.task.id}" in message:
            return Branch(name, done=tip)
    raise TaskFailed(f"no free branch name for {wanted} (99 taken)", retryable=False)


@dataclass
class Workplace:
    """A task's place to change a repository: the worktree (None when the work was already done: see
    ``Branch.done``), a scratch directory, and the branch."""

    tree: Path | None
    scratch: Path
    branch: Branch


@contextlib.asynccontextmanager
async def branch_worktree(ctx: TaskContext, root: Path, wanted: str) -> AsyncIterator[Workplace]:
    """A worktree of ``root`` on the branch ``claim_branch`` gives for ``wanted`` (made from HEAD), in a temporary
    directory, with a scratch directory; removed afterwards. The repository is held under a fenced lock meanwhile
    (failure scenario 8): branch names, worktrees and commits share its .git."""
    if not (root / ".git").exists():
        raise TaskFailed(
            f"{root} is not a git repository: fix branches need one (the demo uses working copies)", retryable=False
        )
    lock = ctx.lock(f"repo:{root}", ttl_ms=int(ctx.task.timeout_s * 1000))
    await lock.acquire(timeout_s=ctx.task.timeout_s)
    try:
        with tempfile.TemporaryDirectory(prefix="cortex-fix-") as tmp:
            await git(root, "worktree", "prune")  # worktrees of killed attempts whose directory is gone
            branch = await claim_branch(ctx, root, wanted)
            if branch.done:
                yield Workplace(None, Path(tmp), branch)
                return
            tree = Path(tmp) / "tree"
            await git(root, "worktree", "add", "-q", "-B", branch.name, str(tree), "HEAD")
            try:
                yield Workplace(tree, Path(tmp), branch)
            finally:
                await git(root, "worktree", "remove", "--force", str(tree))
    finally:
        await lock.release()
