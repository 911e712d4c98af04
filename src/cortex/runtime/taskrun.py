"""Running one task message in a worker: its handler on its target, and what it produced as a ``TaskResult``.
The worker (``runtime.worker``) claims, times out, cancels and settles; this is the part in between."""

from __future__ import annotations

import json
import logging
import time
import traceback
from typing import Any

import redis.asyncio as aredis
from pydantic import ValidationError

from cortex.coord.keys import RunKeys
from cortex.errors import TaskFailed, TaskSkipped
from cortex.models.handoff import Handoff
from cortex.models.result import Outcome, TaskResult
from cortex.models.task import Task
from cortex.observability import logs
from cortex.runtime import checkouts
from cortex.toolset.context import Services, TaskContext
from cortex.toolset.registry import find_handler

_to_json = json.JSONEncoder(default=str).encode
"""``json.dumps(value, default=str)`` with one encoder for every task."""


async def execute(
    redis: aredis.Redis, keys: RunKeys, worker_id: str, task: Task, fields: dict[str, str], services: Services
) -> tuple[TaskResult, list[list[str]]]:
    """Run one task message (``task`` is its task): its result (never raises for a task's own errors) and, when it
    succeeded, the Redis effects to apply with it. The task's timeout is the caller's (``Worker._run``)."""
    started = time.time()
    ctx = TaskContext(
        task=task,
        attempt=int(fields["attempt"]),
        target_path=None,
        run_id=keys.run_id,
        worker_id=worker_id,
        redis=redis,
        keys=keys,
        services=services,
    )
    outcome, handoffs, error, retryable = Outcome.failed, [], "", True
    output: dict[str, Any] = {}
    # at debug level: the claim (``running``, the ``assigned`` event) already says what a worker holds, and two log
    # lines a task were two fifths of a worker's time per no-op task
    logs.event("task-started", logging.DEBUG, task=task.id, attempt=ctx.attempt, kind=task.kind)
    try:
        handler = await find_handler(task.kind)
        if handler is None:
            raise TaskFailed(f"no handler for task kind {task.kind!r}", retryable=False)
        ctx.target_path = await checkouts.resolve(fields, services.state_dir)
        ctx.target_remote = checkouts.remote_url(fields)
        produced = await handler(ctx)
        await checkouts.publish(fields, ctx.target_path, produced)
        # as JSON (what is not JSON, such as a path, becomes its text), without the handoffs it asks for
        output = json.loads(_to_json(produced)) if produced else {}
        handoffs = [Handoff.model_validate(h) for h in output.pop("handoffs", [])]
        outcome = Outcome.succeeded
    except TaskSkipped as exc:
        outcome, error, retryable = Outcome.skipped, str(exc), False
    except TaskFailed as exc:
        error, retryable = str(exc), exc.retryable
    except TimeoutError:  # a wait of the handler's own (a tool's timeout)
        error = f"timed out after {task.timeout_s:g} s"
    except ValidationError as exc:  # a handler returned a handoff that is not one: a bug in that handler
        error, retryable = f"handler returned an invalid handoff: {exc.errors()[0]['msg']}", False
    except Exception as exc:  # a handler bug fails its task, never the worker
        tail = traceback.format_exception_only(exc)[-1].strip()
        error = f"{type(exc).__name__} in handler: {tail}"
    result = TaskResult(
        task_id=task.id,
        attempt=ctx.attempt,
        worker=worker_id,
        started=started,
        finished=time.time(),
        released_ts=float(fields["released_ts"]) if fields.get("released_ts") else None,
        outcome=outcome,
        output=output if outcome is Outcome.succeeded else {},
        handoffs=handoffs,
        error=error,
        retryable=retryable,
    )
    return result, (ctx.effects if outcome is Outcome.succeeded else [])
