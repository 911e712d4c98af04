"""npm fixes: ``package.json`` and ``package-lock.json`` updated together by npm itself (``--package-lock-only
--ignore-scripts``: nothing is installed in the repository and no install script runs), verified by the package's
tests before and after in copies of it."""

from __future__ import annotations

import json
from pathlib import Path

from cortex.errors import TaskFailed, TaskSkipped
from cortex.toolset.builtin import run_argv
from cortex.toolset.context import TaskContext
from cortex.toolset.junit import JunitCounts
from cortex.toolset.nodesuite import NPM_QUIET, npm_binary, run_node_suite


def _line(counts: JunitCounts, code: int) -> str:
    return f"{counts['passed']} passed, {counts['failures']} failed of {counts['tests']} (npm test exit {code})"


def locked_version(tree: Path, package: str) -> str | None:
    """The version ``package-lock.json`` records for ``package``."""
    try:
        lock = json.loads((tree / "package-lock.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    meta = lock.get("packages", {}).get(f"node_modules/{package}", {})
    return str(meta["version"]) if isinstance(meta, dict) and "version" in meta else None


def _exact(tree: Path, package: str) -> bool:
    """The package's specifier in package.json is an exact version (kept exact after the bump)."""
    data = json.loads((tree / "package.json").read_text(encoding="utf-8"))
    for section in ("dependencies", "devDependencies", "optionalDependencies"):
        spec = (data.get(section) or {}).get(package)
        if spec is not None:
            return str(spec)[:1].isdigit()
    return False


async def bump_npm(
    ctx: TaskContext, tree: Path, scratch: Path, package: str, new: str
) -> tuple[dict[str, object] | None, str | None, str | None]:
    """Tests before, ``npm install package@new`` on the manifest and lock only, tests after: the comparison, the
    version the lock file now records, or why npm refused the bump."""
    budget = ctx.task.timeout_s
    try:
        npm = npm_binary()
    except TaskSkipped as exc:
        return None, None, str(exc)
    before = await run_node_suite(tree, scratch, budget)
    argv = [npm, "install", f"{package}@{new}", "--package-lock-only", *NPM_QUIET]
    if _exact(tree, package):
        argv.append("--save-exact")
    try:
        code, out, err = await run_argv(argv, str(tree), budget)
    except TimeoutError as exc:
        raise TaskFailed(f"npm install {package}@{new} timed out after {budget:.0f} s") from exc
    if code != 0:
        return None, None, f"npm refused {package}@{new}: {(err or out).strip()[-500:]}"
    after = await run_node_suite(tree, scratch, budget)
    was, now = set(before.counts["failing"]), set(after.counts["failing"])
    tests: dict[str, object] = {
        "before": _line(before.counts, before.code),
        "after": _line(after.counts, after.code),
        "fixed": sorted(was - now),
        "regressions": sorted(now - was),
        "flaky": [],
        "still_failing": sorted(now & was),
    }
    return tests, locked_version(tree, package), None
