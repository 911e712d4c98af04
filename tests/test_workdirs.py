"""Work survives its worker: a fix task killed (SIGKILL) inside its git worktree leaves nothing that blocks the
next attempt, which makes the fix on the same branch; the run's end leaves no worktree or directory behind; a fix
that is not on its branch is reported lost; a handoff that failed fails the run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis.asyncio as aredis

from cortex.coord.keys import RunKeys
from cortex.coord.server import EmbeddedRedis
from cortex.models.task import Estimate, Task, TaskState
from cortex.runtime.graphrun import GraphRun
from cortex.runtime.runstate import RunState
from cortex.toolset.context import Services, TaskContext
from cortex.toolset.gitops import branch_worktree, git, trailers
from cortex.toolset.workdirs import lost_fix, reclaim_run, work_root

pytestmark = pytest.mark.timeout(120)

TASK = Task(
    id="development.bump-pin:app",
    master="development",
    kind="development.bump-pin",
    worker_type="implementation",
    target="app",
    timeout_s=60,
    estimate=Estimate(seconds=1, tokens=0),
)


def _repo(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "requirements.txt").write_text("requests==2.0.0\n")
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
        subprocess.run(["git", *argv], cwd=path, check=True, env={**env, "GIT_COMMITTER_EMAIL": "t@t"})
    return path


def _worktrees(root: Path) -> list[str]:
    out = subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=root, capture_output=True, text=True)
    return [line.split(" ", 1)[1] for line in out.stdout.splitlines() if line.startswith("worktree ")]


HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    import redis.asyncio as aredis
    from cortex.coord.keys import RunKeys
    from cortex.models.task import Task
    from cortex.toolset.context import Services, TaskContext
    from cortex.toolset.gitops import branch_worktree

    async def main():
        url, state, root, task = sys.argv[1:5]
        redis = aredis.Redis.from_url(url, decode_responses=True)
        ctx = TaskContext(task=Task.model_validate_json(task), attempt=1, target_path=Path(root), run_id="r1",
                          worker_id="implementation-worker-01", redis=redis, keys=RunKeys("r1"),
                          services=Services(state_dir=Path(state)))
        async with branch_worktree(ctx, Path(root), "cortex/fix-requests-2.32.0") as place:
            (place.tree / "requirements.txt").write_text("requests==2.32.0\\n")  # half-done work
            print(place.tree, flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.mark.integration
def test_a_fix_killed_inside_its_worktree_is_made_by_the_next_attempt(
    tmp_path: Path, redis_server: EmbeddedRedis
) -> None:
    root = _repo(tmp_path / "fleet" / "app")
    state = tmp_path / "state"
    killed = subprocess.Popen(  # the first attempt, in a worker of its own
        [sys.executable, "-c", HOLDER, redis_server.url, str(state), str(root), TASK.model_dump_json()],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert killed.stdout is not None
    tree = Path(killed.stdout.readline().strip())
    assert tree.is_dir() and tree.is_relative_to(work_root(state, "r1"))
    killed.send_signal(signal.SIGKILL)  # no cleanup runs: the worktree stays registered, holding its branch
    killed.wait(timeout=10)
    killed.stdout.close()
    assert str(tree) in _worktrees(root)

    commit = asyncio.run(_second_attempt(redis_server.url, state, root))
    ahead = subprocess.run(
        ["git", "rev-list", "--count", "main..cortex/fix-requests-2.32.0"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    assert ahead == "1"
    assert lost_fix(root, "cortex/fix-requests-2.32.0", commit) is None
    assert _worktrees(root) == [str(root)]  # the killed attempt's worktree was reclaimed, ours removed

    state_of_run = RunState.new(_plan_with(root), "r1", state, model_configured=False)
    reclaim_run(state, "r1", state_of_run.plan)
    assert not work_root(state, "r1").exists()


async def _second_attempt(url: str, state: Path, root: Path) -> str:
    """The redelivered attempt, as a worker runs it: the same task of the same run, on the same branch."""
    redis = aredis.Redis.from_url(url, decode_responses=True)
    ctx = TaskContext(
        task=TASK,
        attempt=1,
        target_path=root,
        run_id="r1",
        worker_id="implementation-worker-02",
        redis=redis,
        keys=RunKeys("r1"),
        services=Services(state_dir=state),
    )
    async with asyncio.timeout(60):  # the killed holder's lock lease runs out in 15 s, not the task's 60
        async with branch_worktree(ctx, root, "cortex/fix-requests-2.32.0") as place:
            assert place.branch.name == "cortex/fix-requests-2.32.0" and place.tree is not None
            assert (place.tree / "requirements.txt").read_text() == "requests==2.0.0\n"  # noqa: ASYNC240  (a clean start)
            (place.tree / "requirements.txt").write_text("requests==2.32.0\n")  # noqa: ASYNC240
            await git(place.tree, "commit", "-q", "-am", "Bump requests\n\n" + trailers(ctx))
            commit = await git(place.tree, "rev-parse", "HEAD")
    await redis.aclose()
    return commit


def _plan_with(root: Path):  # type: ignore[no-untyped-def]
    from cortex.chaos.plan import chaos_plan
    from cortex.models.plan import Target

    plan = chaos_plan(1)
    return plan.model_copy(update={"targets": [Target(name="app", path=str(root), traits=[])]})


def test_the_run_end_removes_worktrees_left_by_killed_attempts(tmp_path: Path) -> None:
    root = _repo(tmp_path / "app")
    state = tmp_path / "state"
    stray = work_root(state, "r9") / "some-task" / "tree"
    stray.parent.mkdir(parents=True)
    (stray.parent / ".cortex-run").write_text("r9\n")
    subprocess.run(["git", "worktree", "add", "-q", "-b", "cortex/x", str(stray)], cwd=root, check=True)
    assert reclaim_run(state, "r9", _plan_with(root)) == 1
    assert _worktrees(root) == [str(root)] and not work_root(state, "r9").exists()


def test_a_fix_not_on_its_branch_is_lost(tmp_path: Path) -> None:
    root = _repo(tmp_path / "app")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    assert "does not exist" in (lost_fix(root, "cortex/fix-a", "abc") or "")
    subprocess.run(["git", "branch", "cortex/fix-a"], cwd=root, check=True)
    assert "not at the reported" in (lost_fix(root, "cortex/fix-a", "0" * 40) or "")
    assert lost_fix(root, "cortex/fix-a", head) is None


def test_a_failed_handoff_fails_the_run_and_a_skipped_one_does_not(tmp_path: Path) -> None:
    state = RunState.new(_plan_with(tmp_path), "r1", tmp_path, model_configured=False)
    graph: GraphRun = state.graph
    for rec in graph.records.values():
        rec.state = TaskState.succeeded
    fix = graph.add(TASK.model_copy(update={"origin": "handoff:security"}))
    fix.state = TaskState.skipped  # no model configured, say
    assert state.all_required_succeeded
    fix.state = TaskState.failed  # "already checked out": the fix was asked for and not made
    assert not state.all_required_succeeded


def test_a_suite_killed_by_a_signal_is_retried_not_failed_for_good(tmp_path: Path) -> None:
    from cortex.errors import TaskFailed
    from cortex.toolset.pyenv import Env
    from cortex.toolset.suites import run_suite

    python = tmp_path / "python"
    python.write_text("#!/bin/sh\nkill -9 $$\n")  # an interpreter killed from outside as it runs the suite
    python.chmod(0o755)
    root = _repo(tmp_path / "app")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(TaskFailed) as info:
        asyncio.run(run_suite(Env(python, "k", True, 0.0), root, scratch, timeout_s=30, coverage=False))
    assert "killed by signal 9" in str(info.value) and info.value.retryable
