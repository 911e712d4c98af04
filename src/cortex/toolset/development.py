"""Development tools without a model: the minimal version bump that fixes a vulnerable pin, made on a branch in
a separate git worktree (the repository's working tree is never touched), tested, and committed with a message
that reads like a pull request description. Nothing is pushed unless a remote is configured and asked for."""

from __future__ import annotations

import contextlib
import re
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from cortex.errors import TaskFailed
from cortex.toolset.builtin import run_argv
from cortex.toolset.context import Output, TaskContext, task_kind
from cortex.toolset.testing import JunitCounts, no_report, parse_junit, pytest_config

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Cortex",
    "GIT_AUTHOR_EMAIL": "cortex@localhost",
    "GIT_COMMITTER_NAME": "Cortex",
    "GIT_COMMITTER_EMAIL": "cortex@localhost",
    "GIT_CONFIG_NOSYSTEM": "1",
}


async def git(cwd: Path, *args: str, timeout_s: float = 60) -> str:
    """Run git without a shell; its own error fails the task."""
    code, out, err = await run_argv(["git", *args], str(cwd), timeout_s, env={**GIT_ENV, "HOME": str(cwd)})
    if code != 0:
        raise TaskFailed(f"git {args[0]} failed: {(err or out).strip()[-300:]}", retryable=False)
    return out.strip()


def bump(text: str, package: str, old: str, new: str) -> str:
    """``text`` with the exact pin ``package==old`` replaced by ``package==new`` (name matched per PEP 503)."""
    name = re.sub(r"[-_.]+", "[-_.]+", re.escape(package))
    # a pin on its own line (requirements) or inside a quoted list (pyproject), not a longer name or version
    pattern = re.compile(rf"(?im)(?<![A-Za-z0-9_.-])({name}\s*==\s*){re.escape(old)}(?![A-Za-z0-9_.+-])")
    edited, count = pattern.subn(lambda m: m.group(1) + new, text)
    if count == 0:
        raise TaskFailed(f"no pin {package}=={old} found to bump", retryable=False)
    return edited


def pr_message(
    package: str, old: str, new: str, file: str, advisories: list[dict[str, str]], tests: str, needs_review: bool
) -> str:
    """The commit message: a title and a body a reviewer can act on."""
    ids = ", ".join(a["id"] for a in advisories)
    lines = [
        f"Bump {package} from {old} to {new} ({ids})",
        "",
        f"{package} {old} is affected by {len(advisories)} advisor{'y' if len(advisories) == 1 else 'ies'}; "
        f"{new} is the lowest version that fixes all of them. Only `{file}` changes.",
        "",
        "Advisories:",
    ]
    lines += [f"- {a['id']} ({a['severity']}): {a['summary']}" for a in advisories]
    lines += ["", f"Tests after the bump: {tests}."]
    if needs_review:
        lines += ["", "NEEDS HUMAN REVIEW: a critical advisory; do not merge without a maintainer's look."]
    lines += ["", "Made by Cortex (development master, implementation worker); not pushed."]
    return "\n".join(lines) + "\n"


@contextlib.asynccontextmanager
async def branch_worktree(ctx: TaskContext, root: Path, branch: str) -> AsyncIterator[tuple[Path, Path]]:
    """A worktree of ``root`` on ``branch`` (reset to HEAD) in a temporary directory, and a scratch directory;
    removed afterwards. The repository is held under a fenced lock meanwhile (failure scenario 8): worktree and
    branch creation share its .git."""
    if not (root / ".git").exists():
        raise TaskFailed(
            f"{root} is not a git repository: fix branches need one (the demo uses working copies)", retryable=False
        )
    lock = ctx.lock(f"repo:{root}", ttl_ms=int(ctx.task.timeout_s * 1000))
    await lock.acquire(timeout_s=ctx.task.timeout_s)
    try:
        with tempfile.TemporaryDirectory(prefix="cortex-fix-") as tmp:
            tree = Path(tmp) / "tree"
            # -B: a retry after a failed attempt resets the branch it left (cortex/ is Cortex's own namespace)
            await git(root, "worktree", "add", "-q", "-B", branch, str(tree), "HEAD")
            try:
                yield tree, Path(tmp)
            finally:
                await git(root, "worktree", "remove", "--force", str(tree))
    finally:
        await lock.release()


async def run_pytest(tree: Path, scratch: Path, timeout_s: float) -> tuple[int, JunitCounts]:
    """pytest in ``tree`` (no cache written into it): exit code and the JUnit counts."""
    junit = scratch / f"junit-{uuid.uuid4().hex[:8]}.xml"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--rootdir={tree}"]
    argv += ["-c", str(pytest_config(tree, scratch)), f"--junitxml={junit}"]
    code, _, _ = await run_argv(argv, str(tree), timeout_s, env={"PYTHONDONTWRITEBYTECODE": "1"})
    counts = parse_junit(junit) if junit.exists() else no_report()
    return code, counts


def describe(counts: JunitCounts, code: int) -> str:
    """One line of test results for a commit message."""
    return f"{counts['passed']} passed, {counts['failures']} failed of {counts['tests']} (pytest exit {code})"


@task_kind("development.bump-pin")
async def bump_pin_task(ctx: TaskContext) -> Output:
    """Branch ``cortex/fix-<package>-<version>`` with the bump, its test results and a PR-style commit."""
    root = ctx.require_target()
    p = ctx.task.params
    package, old, new, file = str(p["package"]), str(p["from"]), str(p["to"]), str(p["file"])
    branch = f"cortex/fix-{re.sub(r'[^a-z0-9.]+', '-', package.lower())}-{new}"
    async with branch_worktree(ctx, root, branch) as (tree, scratch):
        target = tree / file
        target.write_text(bump(target.read_text(encoding="utf-8"), package, old, new), encoding="utf-8")
        code, counts = await run_pytest(tree, scratch, ctx.task.timeout_s)
        tests = describe(counts, code)
        needs_review = any(a.get("severity") == "critical" for a in p.get("advisories", []))
        message = pr_message(package, old, new, file, list(p.get("advisories", [])), tests, needs_review)
        await git(tree, "add", file)
        await git(tree, "commit", "-q", "-m", message)
        sha = await git(tree, "rev-parse", "HEAD")
    return {
        "repository": root.name,
        "branch": branch,
        "commit": sha,
        "file": file,
        "package": package,
        "from": old,
        "to": new,
        "tests": tests,
        "needs_human_review": needs_review,
        "pushed": False,
        "title": message.splitlines()[0],
    }
