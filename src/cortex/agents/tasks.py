"""Task kinds that need a model.

- ``development.fix-tests`` (implementation worker): an agent changes the repository in its own git worktree to
  make the failing tests pass, with tools to read and write files, run the tests and see the diff. The result is
  a branch with a PR-style commit and a patch file; nothing is pushed. The branch is handed to review.
- ``review.branch`` (review worker): an agent reads a branch's diff against the base and returns structured
  findings.

Without a model both are skipped with the reason; with one, every call goes through the budget
(``agents/budget.py``). A reservation refused mid-task finishes the task with what it has, marked partial, when
the master's policy allows; otherwise the task fails with the ledger's reason.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, Field
from pydantic_ai import Agent

from cortex.agents.runner import budgeted_model, instructions, worker_prompt
from cortex.agents.workspace import Workspace
from cortex.errors import BudgetExceeded, TaskFailed
from cortex.files import write_atomic
from cortex.models.roster import Master
from cortex.toolset.context import Output, TaskContext, task_kind
from cortex.toolset.development import describe, run_pytest
from cortex.toolset.gitops import branch_worktree, git, trailers

T = TypeVar("T")

FIX_INSTRUCTIONS = """You fix failing tests in a Python repository. Read the failing tests and the code they
exercise, change the code (not the tests) with write_file, run the tests, and stop when they pass. Then answer
with a short title and summary of the change, as for a pull request."""

DOCS_INSTRUCTIONS = """You write operational documentation. Read the repository (its README, manifests and code)
and write RUNBOOK.md: what the service does, how to deploy and roll back, its health checks and alerts, and the
first steps when it fails. Only Markdown files may be written. Then answer with a title and summary."""

REVIEW_INSTRUCTIONS = """You review a change to a repository. Read the diff, look at the files it touches, and
report findings: each with the file, the line if you can, a severity and what to do. Say whether to approve."""


class FixReport(BaseModel):
    """What the implementation agent says it did."""

    title: str = Field(max_length=120)
    summary: str


class ReviewFinding(BaseModel):
    """One point of a review."""

    file: str
    line: int | None = None
    severity: Literal["info", "minor", "major", "blocker"]
    message: str


class ReviewReport(BaseModel):
    """A review's verdict and findings."""

    verdict: Literal["approve", "request-changes"]
    findings: list[ReviewFinding]


async def _run_agent(agent: Agent[None, T], prompt: str, master: Master) -> tuple[T | None, str]:
    """The agent's output, or None and the reason when the budget ran out mid-task and the policy allows a
    partial result (otherwise the task fails)."""
    try:
        return (await agent.run(prompt)).output, ""
    except BudgetExceeded as exc:
        if not master.degradation.partial:
            raise TaskFailed(f"budget exhausted: {exc}", retryable=False) from exc
        return None, f"budget exhausted mid-task ({exc}); finished with the changes made so far"


async def _commit(ctx: TaskContext, root: Path, tree: Path, message: str) -> tuple[str | None, str | None]:
    """Commit every change of the worktree with ``message``; the commit and the patch file (None, None if the
    agent changed nothing)."""
    await git(tree, "add", "-A")  # new files too: a plain diff would not show them
    diff = await git(tree, "diff", "--cached")
    if not diff:
        return None, None
    await git(tree, "commit", "-q", "-m", message + "\nMade by Cortex; not pushed.\n\n" + trailers(ctx))
    state = ctx.services.state_dir
    patch = state / "runs" / ctx.run_id / "patches" / f"{root.name}-{ctx.task.kind.split('.')[-1]}.patch"
    write_atomic(patch, diff)
    return await git(tree, "rev-parse", "HEAD"), str(patch)


_SECTIONS = {"Fixed:": "fixed", "Still failing:": "still_failing"}
"""The test lists a fix's commit message states, by heading (what a delivery made again reads back)."""


@task_kind("development.fix-tests")
async def fix_tests(ctx: TaskContext) -> Output:
    """Branch ``cortex/fix-tests-<digest>`` that makes ``params.failing`` pass, if the agent manages it."""
    root = ctx.require_target()
    failing = [str(t) for t in ctx.task.params.get("failing", [])]
    model, master = await budgeted_model(ctx)
    wanted = "cortex/fix-tests-" + hashlib.sha256("\n".join(sorted(failing)).encode()).hexdigest()[:8]
    async with branch_worktree(ctx, root, wanted) as place:
        branch = place.branch.name
        if place.branch.done:  # this task of this run made it already (a redelivered task)
            return await _done(root, branch, place.branch.done, review=True)
        assert place.tree is not None
        tree, scratch = place.tree, place.scratch
        ws = Workspace(ctx, root, tree, scratch)
        code_before, before = await run_pytest(ctx, tree, scratch, ctx.task.timeout_s)
        agent = Agent(
            model,
            output_type=FixReport,
            instructions=instructions(master, FIX_INSTRUCTIONS, await worker_prompt(ctx)),
            tools=ws.tools(),
        )
        prompt = f"Failing tests: {', '.join(failing)}.\nTest run: {describe(before, code_before)}."
        try:
            report, partial = await _run_agent(agent, prompt, master)
        finally:
            await ws.release()
        code_after, after = await run_pytest(ctx, tree, scratch, ctx.task.timeout_s)
        title = report.title if report else f"Partial fix for {len(failing)} failing test(s)"
        body = report.summary if report else partial
        fixed = sorted(set(failing) - set(after.get("failing", [])))
        still = sorted(after.get("failing", []))
        tests = f"Tests before: {describe(before, code_before)}.\nTests after: {describe(after, code_after)}.\n"
        lists = {"fixed": fixed, "still_failing": still}
        tests += "".join(f"\n{head}\n" + "".join(f"- {t}\n" for t in lists[key]) for head, key in _SECTIONS.items())
        sha, patch = await _commit(ctx, root, tree, f"{title}\n\n{body}\n\n{tests}")
    out: Output = {
        "repository": root.name,
        "branch": branch if sha else None,
        "commit": sha,
        "patch": patch,
        "files_changed": sorted(set(ws.written)),
        "tests_before": describe(before, code_before),
        "tests_after": describe(after, code_after),
        "fixed": fixed,
        "still_failing": still,
        "title": report.title if report else None,
        "partial": bool(partial),
        "partial_reason": partial or None,
        "model_calls": model.scope.calls,
        "degraded": model.scope.degraded,
        "pushed": False,
    }
    if sha:
        out["handoffs"] = [review_handoff(branch)]
    return out


async def _done(root: Path, branch: str, commit: str, *, review: bool) -> Output:
    """The output of a task whose commit this run already made (the task was delivered again): what the first
    delivery's commit message recorded (a fix's test results and lists), since that delivery's output is lost."""
    message = await git(root, "log", "-1", "--format=%B", commit)
    out: Output = {"repository": root.name, "branch": branch, "commit": commit, "redelivered": True}
    out["title"] = message.splitlines()[0].strip() if message.strip() else ""
    out.update(recorded_tests(message))
    if review:
        out["handoffs"] = [review_handoff(branch)]
    return out


def recorded_tests(message: str) -> Output:
    """From a fix's commit message (its last ``Tests before:`` section on): ``tests_before``, ``tests_after``,
    ``fixed`` and ``still_failing``, those it states."""
    at = message.rfind("Tests before: ")
    if at < 0:
        return {}
    out: Output = {}
    current: list[str] | None = None
    for line in message[at:].splitlines():
        if line.startswith(("Tests before: ", "Tests after: ")):
            name, _, text = line.partition(": ")
            out["tests_" + name.split()[1]] = text.removesuffix(".")
        elif line in _SECTIONS:
            current = out[_SECTIONS[line]] = []
        elif current is not None and line.startswith("- "):
            current.append(line[2:])
        elif line.strip():
            current = None
    return out


def review_handoff(branch: str) -> dict[str, object]:
    """Hand ``branch`` to the coordinator's review worker."""
    return {
        "to": "coordinator",
        "kind": "review.branch",
        "worker_type": "review",
        "requires_model": True,
        "key": branch.removeprefix("cortex/"),
        "estimate_tokens": 4000,
        "params": {"branch": branch},
        "reason": f"review {branch} before anyone merges it",
    }


@task_kind("documentation.runbook")
async def runbook(ctx: TaskContext) -> Output:
    """Branch ``cortex/docs-runbook`` with a runbook (Markdown only) for the services the repository deploys."""
    root = ctx.require_target()
    model, master = await budgeted_model(ctx)
    async with branch_worktree(ctx, root, "cortex/docs-runbook") as place:
        branch = place.branch.name
        if place.branch.done:  # this task of this run made it already (a redelivered task)
            return await _done(root, branch, place.branch.done, review=False)
        assert place.tree is not None
        tree, scratch = place.tree, place.scratch
        ws = Workspace(ctx, root, tree, scratch, writable=lambda path: path.endswith(".md"))
        agent = Agent(
            model,
            output_type=FixReport,
            instructions=instructions(master, DOCS_INSTRUCTIONS, await worker_prompt(ctx)),
            tools=ws.tools(),
        )
        try:
            report, partial = await _run_agent(agent, f"Write the runbook of {root.name}.", master)
        finally:
            await ws.release()
        title = report.title if report else "Partial runbook"
        sha, patch = await _commit(ctx, root, tree, f"{title}\n\n{report.summary if report else partial}\n")
    return {
        "repository": root.name,
        "branch": branch if sha else None,
        "commit": sha,
        "patch": patch,
        "files_changed": sorted(set(ws.written)),
        "title": report.title if report else None,
        "partial": bool(partial),
        "model_calls": model.scope.calls,
        "degraded": model.scope.degraded,
        "pushed": False,
    }


@task_kind("review.branch")
async def review_branch(ctx: TaskContext) -> Output:
    """Findings on ``params.branch`` against the commit it was made from."""
    root = ctx.require_target()
    branch = str(ctx.task.params["branch"])
    model, master = await budgeted_model(ctx)
    base = await git(root, "merge-base", "HEAD", branch)
    diff = await git(root, "diff", base, branch)

    async def read_file(path: str) -> str:
        """Return a file as it is on the branch under review."""
        if path.startswith("/") or ".." in Path(path).parts:
            return f"{path!r} is outside the repository"
        return await git(root, "show", f"{branch}:{path}")

    agent = Agent(
        model,
        output_type=ReviewReport,
        instructions=instructions(master, REVIEW_INSTRUCTIONS, await worker_prompt(ctx)),
        tools=[read_file],
    )
    try:
        review = (await agent.run(f"Review branch {branch}. Its diff:\n\n{diff}")).output
    except BudgetExceeded as exc:
        raise TaskFailed(f"budget exhausted: {exc}", retryable=False) from exc
    findings = [f.model_dump() for f in review.findings]
    return {
        "repository": root.name,
        "branch": branch,
        "verdict": review.verdict,
        "findings": [{**f, "tool": "review", "id": f"{f['file']}:{f['line'] or 0}"} for f in findings],
        "model_calls": model.scope.calls,
    }
