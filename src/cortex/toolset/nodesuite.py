"""Running a Node package's own tests: in a copy of the package (so ``node_modules`` never lands in the
repository), with its locked dependencies installed by ``npm ci --ignore-scripts`` when it has a lock file (no
install script of any dependency runs), then ``npm test`` with node's JUnit reporter."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cortex.errors import TaskFailed, TaskSkipped
from cortex.toolset.builtin import run_argv
from cortex.toolset.junit import JunitCounts, parse_junit
from cortex.toolset.workdirs import copy_target

NPM_QUIET = ["--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]


def npm_binary() -> str:
    """npm, or a skip: Node suites need npm and node, which Cortex itself does not."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise TaskSkipped("npm and node are not installed here; Node test suites need them")
    return npm


@dataclass
class NodeRun:
    """A Node suite's run: npm's exit code, its counts, and what was installed first."""

    code: int
    counts: JunitCounts
    installed: str
    notes: list[str] = field(default_factory=list)


async def run_node_suite(root: Path, scratch: Path, timeout_s: float) -> NodeRun:
    """The package's test script in a copy of it under ``scratch``."""
    npm = npm_binary()
    copy = copy_target(root, scratch / f"node-{uuid.uuid4().hex[:8]}")
    installed = "nothing (no package-lock.json)"
    if (copy / "package-lock.json").is_file():
        try:
            code, out, err = await run_argv([npm, "ci", *NPM_QUIET], str(copy), timeout_s)
        except TimeoutError as exc:
            raise TaskFailed(f"npm ci for {root.name} timed out after {timeout_s:.0f} s") from exc
        if code != 0:
            raise TaskFailed(f"npm ci for {root.name} failed (exit {code}): {(err or out).strip()[-600:]}")
        installed = "npm ci --ignore-scripts (package-lock.json)"
    junit = scratch / f"node-junit-{uuid.uuid4().hex[:8]}.xml"
    env = {"NODE_OPTIONS": f"--test-reporter=junit --test-reporter-destination={junit}", "CI": "true"}
    try:
        code, out, err = await run_argv([npm, "test", "--silent"], str(copy), timeout_s, env=env)
    except TimeoutError as exc:
        raise TaskFailed(f"npm test for {root.name} timed out after {timeout_s:.0f} s") from exc
    if not junit.exists():
        tail = (err or out).strip()[-500:]
        raise TaskFailed(f"npm test for {root.name} exited with {code} and wrote no test report: {tail}")
    return NodeRun(code, parse_junit(junit), installed)
