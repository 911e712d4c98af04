"""Incremental runs, the planner's part: each task's cache key, and which tasks the plan expects to reuse.

A task's result depends on its kind, its parameters, its target as it stands (``TargetMeasures.revision``: every
file's path, size and modification time, and the commit checked out), and the versions of Cortex, the tools and
the advisory data (the ``fingerprint`` the caller computes). Equal keys, equal inputs: a recorded result is reused
instead of running again, like a build cache. Tasks over the whole run (aggregation), tasks that need a model
(their output is not a function of their inputs) and targets never measured get no key and always run. A task is
reused only when every task it depends on was reused too: what depends on a task that ran, runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Protocol

from cortex.models.plan import Target
from cortex.models.task import Task


class ResultCache(Protocol):
    """What the planner asks of the recorded results (``runtime.cache`` implements it)."""

    fingerprint: str
    """Digest of the Cortex and tool versions and the advisory data."""

    def runs_of(self, keys: list[str]) -> Mapping[str, str]:
        """The run that recorded each key found (key -> run id); keys not recorded are left out."""
        ...


def cache_key(task: Task, target: Target | None, fingerprint: str) -> str | None:
    """The key of ``task``'s result, or None when it is never reused."""
    if task.requires_model or target is None or target.measures is None or not target.measures.revision:
        return None
    commit = target.remote.commit if target.remote else None
    blob = [fingerprint, task.id, task.kind, task.params, target.name, target.measures.revision, commit]
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:32]


def keyed(tasks: list[Task], targets: list[Target], fingerprint: str) -> list[Task]:
    """``tasks`` with their cache keys."""
    by_name = {t.name: t for t in targets}
    out = []
    for t in tasks:
        key = cache_key(t, by_name.get(t.target or ""), fingerprint)
        out.append(t if key is None else t.model_copy(update={"cache_key": key}))
    return out


def expected_reuse(tasks: list[Task], order: list[str], found: Mapping[str, str]) -> dict[str, str]:
    """The tasks (id -> run) whose key was recorded and whose dependencies are all reused too; ``order``: the
    task ids in dependency order (``Dag.order``)."""
    by_id = {t.id: t for t in tasks}
    reused: dict[str, str] = {}
    for task_id in order:
        key = by_id[task_id].cache_key
        if key is not None and key in found and all(d in reused for d in by_id[task_id].depends_on):
            reused[task_id] = found[key]
    return dict(sorted(reused.items()))
