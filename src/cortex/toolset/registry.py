"""Task kinds and their handlers. A handler takes a ``TaskContext`` and returns a JSON-able dict, or raises
``TaskFailed`` (or any exception) to fail the attempt. Handlers never invent results: a missing tool fails."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aredis

from cortex.coord.keys import RunKeys
from cortex.models.task import Task

Output = dict[str, Any]
Handler = Callable[["TaskContext"], Awaitable[Output]]

_HANDLERS: dict[str, Handler] = {}
LAZY_KINDS = dict.fromkeys(("development.fix-tests", "review.branch", "documentation.runbook"), "cortex.agents.tasks")
"""Kinds whose module is imported on first use: the agent layer costs over a second of imports, paid only by a
worker that runs a task needing a model."""


@dataclass
class TaskContext:
    """What a handler may use: its task, the confined target directory, and the run's Redis keys."""

    task: Task
    attempt: int
    target_path: Path | None
    run_id: str
    worker_id: str
    redis: aredis.Redis
    keys: RunKeys
    extra: dict[str, Any] = field(default_factory=dict)
    effects: list[list[str]] = field(default_factory=list)
    """Redis commands applied atomically with the task's successful result, once per task per run."""

    def effect(self, *command: str) -> None:
        """Apply the Redis ``command`` if and when this attempt's success is the task's first (exactly once)."""
        self.effects.append(list(command))

    def require_target(self) -> Path:
        """The target directory, or a clear failure when the task has none or it vanished."""
        from cortex.errors import TaskFailed

        if self.target_path is None:
            raise TaskFailed(f"task {self.task.id} has no target", retryable=False)
        if not self.target_path.is_dir():
            raise TaskFailed(f"target directory {self.target_path} does not exist", retryable=False)
        return self.target_path


def task_kind(name: str) -> Callable[[Handler], Handler]:
    """Register ``fn`` as the handler of task kind ``name``."""

    def register(fn: Handler) -> Handler:
        _HANDLERS[name] = fn
        return fn

    return register


def handler_for(kind: str) -> Handler | None:
    """The handler of ``kind``, importing the toolset modules on first use."""
    if not _HANDLERS:
        from cortex.toolset import (  # noqa: F401  (importing registers the handlers)
            aggregate,
            builtin,
            chaos,
            cicd,
            development,
            inventory,
            monitoring,
            security,
            testing,
        )
    if kind in LAZY_KINDS and kind not in _HANDLERS:
        importlib.import_module(LAZY_KINDS[kind])
    return _HANDLERS.get(kind)


def known_kinds() -> list[str]:
    """Every registered task kind."""
    handler_for("")
    return sorted({*_HANDLERS, *LAZY_KINDS})


def count_by(items: list[dict[str, Any]], key: str) -> dict[str, int]:
    """How many items have each value of ``key``, by value."""
    counts: dict[str, int] = {}
    for item in items:
        counts[str(item[key])] = counts.get(str(item[key]), 0) + 1
    return dict(sorted(counts.items()))
