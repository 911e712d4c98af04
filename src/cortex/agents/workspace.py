"""The tools an implementation agent works with, confined to one git worktree: read, list and write files, run
the tests, show the diff. A file is written only under a fenced lock on that file of the repository (failure
scenario 8), held until the task ends, so two tasks changing the same file take turns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic_ai import Tool

from cortex.coord.locks import FencedLock
from cortex.errors import TaskFailed
from cortex.files import SKIP_DIRS
from cortex.toolset.context import TaskContext
from cortex.toolset.development import describe, run_pytest
from cortex.toolset.gitops import git

MAX_READ = 100_000
"""Characters of a file an agent may read at once."""


class Workspace:
    """A worktree ``tree`` of repository ``repo``; ``scratch`` holds test reports."""

    def __init__(
        self, ctx: TaskContext, repo: Path, tree: Path, scratch: Path, writable: Callable[[str], bool] | None = None
    ) -> None:
        self.ctx = ctx
        self.writable = writable or (lambda _path: True)
        self.repo = repo
        self.tree = tree.resolve()
        self.scratch = scratch
        self.locks: dict[str, FencedLock] = {}
        self.written: list[str] = []

    def _path(self, path: str) -> Path:
        full = (self.tree / path).resolve()
        if not full.is_relative_to(self.tree) or ".git" in full.relative_to(self.tree).parts:
            raise ValueError(f"{path!r} is outside the repository")
        return full

    async def read_file(self, path: str) -> str:
        """Return the text of a file of the repository (path relative to its root)."""
        return self._path(path).read_text(encoding="utf-8", errors="replace")[:MAX_READ]

    async def list_files(self) -> list[str]:
        """List the repository's files (relative paths), without vendored or generated directories."""
        return sorted(
            str(p.relative_to(self.tree))
            for p in self.tree.rglob("*")
            if p.is_file() and not SKIP_DIRS & set(p.relative_to(self.tree).parts)
        )

    async def write_file(self, path: str, content: str) -> str:
        """Replace a file of the repository with ``content`` (the whole new text)."""
        full = self._path(path)
        if not self.writable(path):
            return f"{path}: this task may not write that file"
        lock = self.locks.get(path)
        if lock is None:
            resource = f"file:{self.repo.resolve()}/{path}"
            lock = self.ctx.lock(resource, ttl_ms=int(self.ctx.task.timeout_s * 1000))
            await lock.acquire(timeout_s=self.ctx.task.timeout_s)
            self.locks[path] = lock
        if not await lock.still_held():
            raise TaskFailed(f"lock on {path} expired and was taken; write refused")
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(content, encoding="utf-8")
        self.written.append(path)
        return f"wrote {len(content)} characters to {path}"

    async def run_tests(self) -> str:
        """Run the repository's test suite; returns the counts and the failing tests."""
        code, counts = await run_pytest(self.ctx, self.tree, self.scratch, self.ctx.task.timeout_s)
        failing = ", ".join(counts.get("failing", [])) or "none"
        return f"{describe(counts, code)}; failing: {failing}"

    async def show_diff(self) -> str:
        """Show the changes made so far (git diff)."""
        return await git(self.tree, "diff") or "(no changes)"

    def tools(self) -> list[Tool[Any]]:
        """The workspace's methods as agent tools."""
        return [Tool(f) for f in (self.read_file, self.list_files, self.write_file, self.run_tests, self.show_diff)]

    async def release(self) -> None:
        """Give up every file lock (at the end of the task)."""
        for lock in self.locks.values():
            await lock.release()
        self.locks.clear()
