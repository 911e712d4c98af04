"""Running a target's pytest suite in the target's own environment (``pyenv``): once with coverage and a JUnit
report, then failing tests again to tell flaky from failing. Shared by the test runs, the pin bumps (before and
after) and the agents that fix tests.

A run says honestly what happened: ``passed`` or ``failed`` with the counts, ``no tests`` when pytest collected
none, and a task failure when the suite could not run at all (pytest's own exit codes 2 to 4, or no report).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cortex.errors import TaskFailed
from cortex.files import links_outside
from cortex.toolset.builtin import run_argv
from cortex.toolset.context import TaskContext
from cortex.toolset.junit import JunitCounts, parse_junit, pytest_config
from cortex.toolset.pyenv import Env, EnvSpec, Index, ensure_env, env_spec, target_environ, uv_binary

Status = Literal["passed", "failed", "no tests"]
NO_TESTS_COLLECTED = 5


@dataclass
class SuiteRun:
    """One run of a suite: pytest's exit code, what it reported, line coverage when measured."""

    code: int
    status: Status
    counts: JunitCounts
    coverage_percent: float | None = None
    flaky: list[str] = field(default_factory=list)
    failing: list[str] = field(default_factory=list)
    """Failing after the re-runs (flaky ones left out)."""


async def target_env(ctx: TaskContext, root: Path, *, timeout_s: float, name: str | None = None) -> tuple[Env, EnvSpec]:
    """The environment of the target at ``root`` (a repository, or a worktree of it named ``name``), built or
    reused."""
    uv = uv_binary()
    spec = await env_spec(root, uv)
    index = Index(ctx.services.target_index_url, list(ctx.services.target_find_links))
    envs = (ctx.services.state_dir / "envs").resolve()
    env = await ensure_env(spec, envs, uv, index, repository=name or root.name, timeout_s=timeout_s)
    return env, spec


def describe_env(env: Env, spec: EnvSpec) -> dict[str, object]:
    """What the task output says about where the tests ran."""
    return {
        "python": str(env.python),
        "key": env.key,
        "reused": env.reused,
        "build_s": env.build_s,
        "from": spec.sources or ["(no dependency files)"],
        "requirements": len(spec.requirements),
        "notes": spec.notes,
    }


def source_dirs(root: Path) -> list[Path]:
    """What coverage measures: ``src/`` for a src layout, else the repository (tests left out by ``--omit``).
    Every Python file of the target's packages counts, imported by a test or not."""
    return [root / "src"] if (root / "src").is_dir() else [root]


def _pytest_args(root: Path, config: Path) -> list[str]:
    """pytest confined to the target: its rootdir and its own configuration (or an empty one), no cache, and
    symbolic links that lead out of the target left out of collection."""
    ignored = [f"--ignore={root / rel}" for rel, _ in links_outside(root)]
    return ["pytest", "-q", "-p", "no:cacheprovider", f"--rootdir={root}", "-c", str(config), *ignored]


async def run_suite(env: Env, root: Path, scratch: Path, *, timeout_s: float, coverage: bool = True) -> SuiteRun:
    """Run the suite at ``root`` once in ``env``; with ``coverage``, under coverage of the target's sources."""
    junit = scratch / f"junit-{uuid.uuid4().hex[:8]}.xml"
    config = pytest_config(root, scratch)
    pytest_args = [*_pytest_args(root, config), f"--junitxml={junit}", "-o", "junit_family=xunit1"]
    data = scratch / f".coverage-{uuid.uuid4().hex[:8]}"
    if coverage:
        omit = ",".join(str(root / d / "*") for d in ("tests", "test"))
        sources = ",".join(str(p) for p in source_dirs(root))
        argv = [str(env.python), "-m", "coverage", "run", f"--data-file={data}", f"--source={sources}"]
        argv += [*_rcfile(root, scratch), f"--omit={omit}", "-m", *pytest_args]
    else:
        argv = [str(env.python), "-m", *pytest_args]
    try:
        code, out, err = await run_argv(argv, str(root), timeout_s, env=target_environ(root, env))
    except TimeoutError as exc:
        raise TaskFailed(f"the test suite of {root.name} timed out after {timeout_s:.0f} s") from exc
    if code == NO_TESTS_COLLECTED:
        return SuiteRun(code, "no tests", parse_junit(junit) if junit.exists() else _none())
    if code < 0:  # killed from outside (the OOM killer, an operator): nothing about the suite, try again
        raise TaskFailed(f"pytest running the suite of {root.name} was killed by signal {-code}")
    if code not in (0, 1) or not junit.exists():
        tail = (err or out).strip()[-600:]
        raise TaskFailed(f"pytest could not run the suite of {root.name} (exit {code}): {tail}", retryable=False)
    run = SuiteRun(code, "passed" if code == 0 else "failed", parse_junit(junit))
    if coverage:
        run.coverage_percent = await _coverage(env, root, data, scratch, timeout_s)
    return run


def _rcfile(root: Path, scratch: Path) -> list[str]:
    """coverage reads ``pyproject.toml`` for its settings and stops at one that does not parse: give it an empty
    configuration then (the broken manifest is reported by the inventory, not by failing the tests)."""
    import tomllib

    pyproject = root / "pyproject.toml"
    try:
        if pyproject.is_file():
            tomllib.loads(pyproject.read_text(encoding="utf-8"))
        return []
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        empty = scratch / "coveragerc"
        empty.write_text("[run]\n")
        return [f"--rcfile={empty}"]


def _none() -> JunitCounts:
    return JunitCounts(tests=0, failures=0, errors=0, skipped=0, passed=0, duration_s=0.0, failing=[])


async def _coverage(env: Env, root: Path, data: Path, scratch: Path, timeout_s: float) -> float | None:
    """Line coverage of the run, from coverage's JSON report (None when there was nothing to measure)."""
    report = scratch / f"coverage-{uuid.uuid4().hex[:8]}.json"
    argv = [str(env.python), "-m", "coverage", "json", f"--data-file={data}", "-o", str(report), "-q"]
    argv += _rcfile(root, scratch)
    code, _, _ = await run_argv(argv, str(root), timeout_s, env=target_environ(root, env))
    if code != 0 or not report.exists():
        return None
    return round(float(json.loads(report.read_text())["totals"]["percent_covered"]), 2)


async def rerun_failures(env: Env, root: Path, scratch: Path, run: SuiteRun, times: int, timeout_s: float) -> None:
    """Run each failing test ``times`` more: one that passes on a re-run is flaky, one that never does is
    failing. Fills ``run.flaky`` and ``run.failing``."""
    config = pytest_config(root, scratch)
    for node_id in run.counts["failing"]:
        passed = 0
        for _ in range(times):
            code, _, _ = await run_argv(
                [str(env.python), "-m", *_pytest_args(root, config), node_id],
                str(root),
                timeout_s,
                env=target_environ(root, env),
            )
            passed += code == 0
        (run.flaky if passed else run.failing).append(node_id)
