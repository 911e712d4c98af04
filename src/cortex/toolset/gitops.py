"""Git for the tasks that change code: branches made in separate worktrees (the repository's working tree is
never touched), under a fenced lock on the repository, and never at the cost of someone else's commits.

A branch name Cortex wants may already exist. When its tip was made by this very task of this run (a redelivered
task), that work is returned as it is; when it holds nothing beyond the repository's HEAD and no other worktree
has it checked out, it is reused; otherwise it is left alone and the new work goes on the next free name
(``<name>-2``, ``-3``...), so commit ids recorded by earlier runs stay valid. Worktrees live under the run's
directory (``workdirs``) and those of killed attempts are reclaimed before a branch is claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from cortex.errors import TaskFailed
from cortex.toolset.builtin import run_argv
from cortex.toolset.context import TaskContext
from cortex.toolset.workdirs import checked_out, reclaim_worktrees, scratch, task_dir

REPO_LOCK_TTL_MS = 15_000
"""The repository lock's lease, renewed while a task holds it: a killed holder blocks others for at most this."""

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
    """The branch this task may use for ``wanted`` (see the module's docstring). A branch checked out in another
    worktree (a live task of another run) is taken."""
    head = await git(root, "rev-parse", "HEAD")
    busy = await asyncio.to_thread(checked_out, root)
    for n in range(1, 100):
        name = wanted if n == 1 else f"{wanted}-{n}"
        tip = await git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}", check=False)
        if not tip:
            return Branch(name)
        message = await git(root, "log", "-1", "--format=%B", tip)
        if f"Cortex-Run: {ctx.run_id}" in message and f"Cortex-Task: {ctx.task.id}" in message:
            return Branch(name, done=tip)  # this task of this run made it already (a redelivered task)
        if name in busy:
            continue
        ahead = await git(root, "rev-list", "--count", f"{head}..{tip}")
        if ahead == "0":
            return Branch(name)  # nothing on it beyond HEAD: nothing to lose
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
    """A worktree of ``root`` on the branch ``claim_branch`` gives for ``wanted`` (made from HEAD), in the task's
    directory under the run (``workdirs``), with a scratch directory; removed afterwards, and reclaimed by the
    next attempt or the run's end if this one is killed. The repository is held under a fenced lock meanwhile
    (failure scenario 8): branch names, worktrees and commits share its .git."""
    if not (root / ".git").exists():
        raise TaskFailed(
            f"{root} is not a git repository: fix branches need one (the demo uses working copies)", retryable=False
        )
    async with ctx.lock(f"repo:{root}", ttl_ms=REPO_LOCK_TTL_MS).held(timeout_s=ctx.task.timeout_s):
        # worktrees of killed attempts (ours or of runs nobody leads): they would hold their branches
        await reclaim_worktrees(root, ctx.redis, ctx.run_id)
        home = task_dir(ctx.services.state_dir, ctx.run_id, ctx.task.id)
        with scratch(ctx.services.state_dir, ctx.run_id, ctx.task.id) as work:
            branch = await claim_branch(ctx, root, wanted)
            if branch.done:
                yield Workplace(None, work, branch)
                return
            tree = home / "tree"
            shutil.rmtree(tree, ignore_errors=True)  # a killed attempt's, never registered as a worktree
            await git(root, "worktree", "add", "-q", "-B", branch.name, str(tree), "HEAD")
            try:
                yield Workplace(tree, work, branch)
            finally:
                await git(root, "worktree", "remove", "--force", str(tree))
                await _drop_if_empty(root, branch.name)


async def _drop_if_empty(root: Path, name: str) -> None:
    """Delete branch ``name`` when it holds nothing beyond HEAD: the work was refused or failed, and an empty
    branch would only look like a fix that is not there."""
    head = await git(root, "rev-parse", "HEAD")
    if await git(root, "rev-list", "--count", f"{head}..refs/heads/{name}", check=False) == "0":
        await git(root, "branch", "-D", name, check=False)
