"""What a task handler gets and how it registers. A handler takes a ``TaskContext`` and returns a JSON-able dict,
or raises ``TaskFailed`` (or any exception) to fail the attempt. Handlers never invent results: a missing tool
fails. ``cortex.toolset.registry`` finds the handler of a kind.

Handlers know their task, its target and the services a worker offers (``Services``); they know nothing of how
tasks are scheduled or delivered. What they produce beyond their output goes through the context: Redis effects
applied once per task (``effect``), lineage events sent with them (``lineage``), and locks whose contention is
reported on the conflicts channel (``lock``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis.asyncio as aredis

from cortex.coord import events
from cortex.coord.keys import CH_CONFLICTS, CH_LINEAGE, RunKeys
from cortex.coord.locks import FencedLock
from cortex.models.messages import Envelope, MessageType
from cortex.models.task import Task

if TYPE_CHECKING:
    from cortex.catalog.client import CatalogClient

Output = dict[str, Any]
Handler = Callable[["TaskContext"], Awaitable[Output]]

HANDLERS: dict[str, Handler] = {}
"""Task kind -> handler, filled by ``task_kind`` as the handler modules are imported."""


@dataclass
class Services:
    """What a worker offers its tasks, built at the process edge from settings."""

    state_dir: Path = Path(".cortex")
    """Where tasks write what they produce for the run (patches, dashboards) under ``runs/<run id>/``."""
    osv_path: Path | None = None
    """OSV advisories (a directory or an osv.dev zip); None: the bundled subset."""
    osv_api: str | None = None
    """OSV API for an online lookup besides the offline database; None: offline only."""
    model: str | None = None
    """``provider:model`` for tasks that need one (a master's own model in the roster wins)."""
    env: dict[str, str] = field(default_factory=dict)
    """Provider keys and endpoints (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``...), read at the process edge."""
    catalog: CatalogClient | None = None
    """The catalog client of this worker (its own cache and write queue), when the run has a catalog."""
    target_index_url: str | None = None
    """Index for the targets' own dependencies (their test environments): None for PyPI, ``none`` for none."""
    target_find_links: list[str] = field(default_factory=list)
    """Local directories of wheels for the targets' dependencies."""


@dataclass
class TaskContext:
    """What a handler may use: its task, the confined target directory, the run's Redis keys and the worker's
    services."""

    task: Task
    attempt: int
    target_path: Path | None
    run_id: str
    worker_id: str
    redis: aredis.Redis
    keys: RunKeys
    services: Services = field(default_factory=Services)
    target_remote: str | None = None
    """The git remote the target was checked out from (its URL without credentials), when it came from one."""
    effects: list[list[str]] = field(default_factory=list)
    """Redis commands applied atomically with the task's successful result, once per task per run."""

    def effect(self, *command: str) -> None:
        """Apply the Redis ``command`` if and when this attempt's success is the task's first (exactly once)."""
        self.effects.append(list(command))

    def lineage(self, edges: list[tuple[str, str, str]], *, recorded_in: str = "catalog") -> None:
        """Announce the lineage edges ``(upstream, relation, downstream)`` this task recorded, on the lineage
        channel, once, with the task's success (a task effect)."""
        if not edges:
            return
        env = Envelope(
            run_id=self.run_id,
            sender=self.worker_id,
            to="all",
            type=MessageType.lineage,
            task_id=self.task.id,
            context={
                "recorded_in": recorded_in,
                "tasks": [
                    {
                        "task": self.task.id,
                        "worker": self.worker_id,
                        "master": self.task.master,
                        "edges": [list(e) for e in edges],
                    }
                ],
            },
        )
        self.effects.extend(events.as_commands(self.keys, CH_LINEAGE, env))

    def lock(self, resource: str, ttl_ms: int) -> FencedLock:
        """A fenced lock on ``resource`` held by this worker; every wait for it and every write it refuses is
        published on the conflicts channel."""
        return FencedLock(self.redis, resource, ttl_ms=ttl_ms, owner=self.worker_id, on_conflict=self._conflict)

    async def _conflict(self, event: str, details: dict[str, Any]) -> None:
        env = Envelope(
            run_id=self.run_id,
            sender=self.worker_id,
            to="all",
            type=MessageType.conflict,
            task_id=self.task.id,
            context={"event": event, **details},
        )
        await events.publish(self.redis, self.keys, CH_CONFLICTS, env)

    def require_target(self) -> Path:
        """The target directory, or a clear failure when the task has none or it vanished."""
        from cortex.errors import TaskFailed

        if self.target_path is None:
            raise TaskFailed(f"task {self.task.id} has no target", retryable=False)
        if self.target_path.is_symlink():  # the plan named a directory; a link put there since is not followed
            raise TaskFailed(f"target {self.target_path} is a symbolic link now: not followed", retryable=False)
        if not self.target_path.is_dir():
            raise TaskFailed(f"target directory {self.target_path} does not exist", retryable=False)
        return self.target_path


def task_kind(name: str) -> Callable[[Handler], Handler]:
    """Register ``fn`` as the handler of task kind ``name``."""

    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


def count_by(items: list[dict[str, Any]], key: str) -> dict[str, int]:
    """How many items have each value of ``key``, by value."""
    counts: dict[str, int] = {}
    for item in items:
        counts[str(item[key])] = counts.get(str(item[key]), 0) + 1
    return dict(sorted(counts.items()))
