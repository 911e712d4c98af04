"""Development tools without a model: the minimal version bump that fixes a vulnerable pin, made on a branch in
a separate git worktree, verified, and committed with a message that reads like a pull request description.

Verified means: the target's tests run before the bump in the target's environment and after it in an
environment rebuilt with the bumped version (which the output records as installed), and the difference is
reported per test; a test that fails after the bump and passes when run again is flaky, not a regression. A bump
the target's other constraints do not allow (the resolver refuses it) is reported as not fixable, with the
resolver's reason, and leaves no branch. Nothing is pushed.
"""

from __future__ import annotations

import re
from pathlib import Path

from cortex.errors import TaskFailed
from cortex.toolset.context import Output, TaskContext, task_kind
from cortex.toolset.gitops import branch_worktree, git, trailers
from cortex.toolset.junit import JunitCounts
from cortex.toolset.npmfix import bump_npm
from cortex.toolset.pyenv import Env
from cortex.toolset.suites import SuiteRun, rerun_failures, run_suite, target_env


def bump(text: str, package: str, old: str, new: str) -> str:
    """``text`` with the exact pin ``package==old`` replaced by ``package==new`` (name matched per PEP 503)."""
    name = "[-_.]+".join(re.escape(part) for part in re.split(r"[-_.]+", package))
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
    lines += ["", f"Tests: {tests}"]
    if needs_review:
        lines += ["", "NEEDS HUMAN REVIEW: a critical advisory; do not merge without a maintainer's look."]
    lines += ["", "Made by Cortex (development master, implementation worker); not pushed."]
    return "\n".join(lines) + "\n"


def describe(counts: JunitCounts, code: int) -> str:
    """One line of test results."""
    return f"{counts['passed']} passed, {counts['failures']} failed of {counts['tests']} (pytest exit {code})"


async def run_pytest(ctx: TaskContext, tree: Path, scratch: Path, timeout_s: float) -> tuple[int, JunitCounts]:
    """The suite of ``tree`` (a worktree) in its own environment, without coverage: exit code and counts."""
    env, _ = await target_env(ctx, tree, timeout_s=timeout_s, name=ctx.task.target)
    run = await run_suite(env, tree, scratch, timeout_s=timeout_s, coverage=False)
    return run.code, run.counts


async def installed_version(env: Env, package: str) -> str | None:
    """The version of ``package`` installed in ``env`` (what the tests after a bump really ran with)."""
    from cortex.toolset.builtin import run_argv

    probe = "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))"
    code, out, _ = await run_argv([str(env.python), "-c", probe, package], ".", 30)
    return out.strip() if code == 0 else None


def compare(before: SuiteRun, after: SuiteRun) -> dict[str, object]:
    """Per test, with failures re-run on both sides (a test that passes on a re-run is flaky, neither fixed nor
    broken): fixed by the bump, broken by it (regressions), flaky, still failing."""
    was, now = set(before.failing), set(after.failing)
    return {
        "before": describe(before.counts, before.code),
        "after": describe(after.counts, after.code),
        "fixed": sorted(was - set(after.counts["failing"])),
        "regressions": sorted(now - was),
        "flaky": sorted(set(before.flaky) | set(after.flaky)),
        "still_failing": sorted(now & was),
    }


Verified = tuple[dict[str, object] | None, str | None, str | None]
"""The per-test comparison, the version installed after the bump, and why the bump was refused (or None)."""


async def _verified_bump(
    ctx: TaskContext, tree: Path, scratch: Path, file: str, package: str, old: str, new: str
) -> Verified:
    """Run the tests, bump, rebuild the environment, run them again; the comparison and the installed version, or
    the resolver's refusal."""
    budget, name = ctx.task.timeout_s, ctx.task.target
    env_before, _ = await target_env(ctx, tree, timeout_s=budget, name=name)
    before = await run_suite(env_before, tree, scratch, timeout_s=budget, coverage=False)
    await rerun_failures(env_before, tree, scratch, before, 2, budget)
    target = tree / file
    target.write_text(bump(target.read_text(encoding="utf-8"), package, old, new), encoding="utf-8")
    try:
        env_after, _ = await target_env(ctx, tree, timeout_s=budget, name=name)
    except TaskFailed as exc:
        if exc.retryable:
            raise
        conflict = any(w in str(exc) for w in ("No solution found", "unsatisfiable", "conflict"))
        why = "conflicts with the target's other constraints" if conflict else "could not be installed"
        return None, None, f"{package} {new} {why}: {exc}"
    after = await run_suite(env_after, tree, scratch, timeout_s=budget, coverage=False)
    await rerun_failures(env_after, tree, scratch, after, 2, budget)
    return compare(before, after), await installed_version(env_after, package), None


@task_kind("development.bump-pin")
async def bump_pin_task(ctx: TaskContext) -> Output:
    """Branch ``cortex/fix-<package>-<version>`` with the bump (PyPI or npm), its verification and a PR-style
    commit; or the reason it cannot be made."""
    root = ctx.require_target()
    p = ctx.task.params
    package, old, new, file = str(p["package"]), str(p["from"]), str(p["to"]), str(p["file"])
    ecosystem = str(p.get("ecosystem", "PyPI"))
    advisories = list(p.get("advisories", []))
    needs_review = any(a.get("severity") == "critical" for a in advisories)
    wanted = f"cortex/fix-{re.sub(r'[^a-z0-9.]+', '-', package.lower())}-{new}"
    out: Output = {"repository": root.name, "package": package, "ecosystem": ecosystem, "from": old, "to": new}
    out.update(file=file, needs_human_review=needs_review, pushed=False)
    async with branch_worktree(ctx, root, wanted) as place:
        out["branch"] = place.branch.name
        if place.branch.done:  # this task of this run made it already (a redelivered task)
            message = await git(root, "log", "-1", "--format=%B", place.branch.done)
            # a branch is made only for a bump that was made; its test figures went with the first delivery's
            # result, and the commit message states them
            out.update(commit=place.branch.done, title=message.splitlines()[0], redelivered=True, fixed=True)
            out.update(tests=None, verified_version=None)
            return out
        assert place.tree is not None
        if ecosystem == "npm":
            tests, verified, refused = await bump_npm(ctx, place.tree, place.scratch, package, new)
        else:
            tests, verified, refused = await _verified_bump(ctx, place.tree, place.scratch, file, package, old, new)
        if refused is not None:
            out.update(branch=None, commit=None, fixed=False, reason=refused)
            return out
        line = f"{tests['before']} before, {tests['after']} after" if tests else "not run"
        message = pr_message(package, old, new, file, advisories, line, needs_review) + "\n" + trailers(ctx)
        await git(place.tree, "add", "-u")  # the manifest (and the lock file): nothing else changed
        await git(place.tree, "commit", "-q", "-m", message)
        sha = await git(place.tree, "rev-parse", "HEAD")
    out.update(commit=sha, title=message.splitlines()[0], fixed=True, tests=tests, verified_version=verified)
    return out
