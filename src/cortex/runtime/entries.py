"""What a released task's queue entry says, and what lets a worker's settle release a task (``coord.delivery``).

The coordinator releases a task by adding its entry to its master's inbox (``Entries.release``). When it does, it
also arms the settles that may release what follows the task (``Entries.arm``): a settle that is the first success
of a task adds each dependent whose every dependency has now settled a success straight to its queue, so a hop
between dependent tasks wakes one process, not three. The coordinator learns what a settle released from the
result entry and records it (``Dispatcher.released_by_settle``).
"""

from __future__ import annotations

import functools
import json

from cortex.coord.keys import RunKeys
from cortex.models.plan import Target
from cortex.models.task import Task
from cortex.runtime.graphrun import GraphRun
from cortex.runtime.records import TaskRecord


class Entries:
    """The run's task entries, made once per task, and the release keys written for settles."""

    def __init__(self, keys: RunKeys, targets: list[Target]) -> None:
        self.keys = keys
        self.targets = {t.name: _target_fields(t) for t in targets}
        self.inbox = functools.cache(keys.inbox)
        self._fields: dict[str, tuple[Task, list[str]]] = {}
        """By task id: the task and its entry's fields that only it decides (``fields``)."""
        self._armed: set[str] = set()
        """Tasks whose dependents a settle may release are written to Redis."""
        self._entered: set[str] = set()
        """Tasks whose entry and number of dependencies to wait for are written to Redis."""

    def fields(self, rec: TaskRecord) -> list[str]:
        """The fields of a task's entry that only the task decides, made once (until the task is replaced): what
        masters and workers read of it without parsing it, the task, and its target."""
        task = rec.task
        cached = self._fields.get(task.id)
        if cached is None or cached[0] is not task:
            fields = ["task_id", task.id, "worker_type", task.worker_type, "priority", str(task.priority)]
            fields += ["task", rec.task_json()]
            for name, value in self.targets.get(task.target or "", {}).items():
                fields += [name, value]
            cached = self._fields[task.id] = (task, fields)
        return cached[1]

    def release(self, rec: TaskRecord, stamp: str) -> list[str]:
        """The command that adds ``rec``'s current attempt to its master's inbox, released at ``stamp``."""
        inbox = self.inbox(rec.task.master)
        return ["XADD", inbox, "*", "attempt", str(rec.attempt), "released_ts", stamp, *self.fields(rec)]

    def arm(self, graph: GraphRun, task_id: str) -> list[list[str]]:
        """The commands that let settles release what follows ``task_id``: for it and, since a settle may release
        them without the coordinator, every task after it that a settle may release (``settle_releasable``), the
        dependents a settle of it releases, and each such dependent's entry and number of dependencies. Each task
        is armed once (the writes are idempotent: a coordinator taking over writes them again harmlessly)."""
        keys = self.keys
        commands: list[list[str]] = []
        stack = [task_id]
        while stack:
            parent = stack.pop()
            if parent in self._armed:
                continue
            self._armed.add(parent)
            after = graph.settle_releasable(parent)
            for dep_id in after:
                if dep_id not in self._entered:
                    self._entered.add(dep_id)
                    dep = graph.records[dep_id]
                    task = dep.task
                    where = [task.master, task.worker_type, str(task.priority), self.inbox(task.master)]
                    entry = json.dumps([*where, keys.queue(task.worker_type), *self.fields(dep)])
                    commands.append(["HSETNX", keys.release_waits, dep_id, str(len(task.depends_on))])
                    commands.append(["HSETNX", keys.release_entry, dep_id, entry])
                stack.append(dep_id)
            if after:
                commands.append(["HSET", keys.release_next, parent, json.dumps(after)])
        return commands

    def forget_armed(self) -> None:
        """A release script was lost (Redis went away before running it): arm again with the next releases."""
        self._armed.clear()
        self._entered.clear()


def _target_fields(t: Target) -> dict[str, str]:
    """What a task message says of its target: the plan's path, and the remote nodes check out when it has one."""
    fields = {"target_name": t.name, "target_path": t.path}
    if t.remote is not None:
        fields["target_remote"] = t.remote.model_dump_json()
    return fields
