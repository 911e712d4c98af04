"""Generic task kinds: ``command`` runs a program in the target (no shell); ``builtin.noop`` and
``builtin.sleep`` are synthetic workloads for measuring the engine itself (benchmarks, tests)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
import time

from cortex.errors import TaskFailed
from cortex.toolset.context import Output, TaskContext, task_kind
from cortex.toolset.slots import tool_slot

_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: Linux kills it when the worker that started it dies. A worker killed by SIGKILL
    runs no cleanup, and the tool it ran (pytest, uv, git) must not go on writing in the task's directory while
    the task's next attempt reclaims it."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@task_kind("builtin.noop")
async def noop(ctx: TaskContext) -> Output:
    """Does nothing: measures dispatch overhead."""
    return {}


@task_kind("builtin.sleep")
async def sleep(ctx: TaskContext) -> Output:
    """Waits ``params.seconds``: a task of known length for makespan measurements."""
    seconds = float(ctx.task.params.get("seconds", 0))
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    return {"slept_s": round(time.perf_counter() - started, 4)}


async def run_argv(
    argv: list[str], cwd: str, timeout_s: float, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run ``argv`` (never through a shell) in ``cwd`` with a timeout, once one of the host's tool slots is free
    (``slots``: as many tools at once as the host has CPUs); returns code, stdout, stderr. The timeout counts from
    the start of the program, not of the wait."""
    async with tool_slot():
        return await _run(argv, cwd, timeout_s, env)


async def _run(argv: list[str], cwd: str, timeout_s: float, env: dict[str, str] | None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        preexec_fn=_die_with_parent,  # noqa: PLW1509  (no threads fork here: the worker's loop thread does)
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@task_kind("command")
async def command(ctx: TaskContext) -> Output:
    """Run ``params.argv`` in the target directory; non-zero exit fails the attempt with the program's stderr."""
    root = ctx.require_target()
    argv = ctx.task.params.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise TaskFailed("params.argv must be a non-empty list of strings", retryable=False)
    try:
        code, out, err = await run_argv(argv, str(root), ctx.task.timeout_s)
    except FileNotFoundError as exc:
        raise TaskFailed(f"program not found: {argv[0]}", retryable=False) from exc
    except TimeoutError as exc:
        raise TaskFailed(f"{argv[0]} timed out after {ctx.task.timeout_s:.0f} s") from exc
    if code != 0:
        raise TaskFailed(f"{argv[0]} exited with {code}: {err.strip()[-500:]}")
    return {"exit_code": code, "stdout_tail": out[-2000:]}
