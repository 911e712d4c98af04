"""Control messages a master or worker obeys, and how they are sent.

``drain``: finish the current task, take no new one (a worker hands back entries it claimed and has not started; a
master stops dispatching from its inbox). ``resume``: take work again. ``cancel``: a worker stops the task it is
running, which ends ``failed`` with who cancelled it and is not retried.

A command is published on the process's own channel (``cortex:worker:{id}`` or ``cortex:master:{name}``) and also
kept in the run's ``control`` hash, because pub/sub drops what nobody hears: a process that was reconnecting or
restarting reads the hash at start and every ``RECHECK_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Literal

import redis.asyncio as aredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from cortex.coord import events
from cortex.coord.keys import RunKeys, master_channel, worker_channel
from cortex.models.messages import Envelope, MessageType
from cortex.observability import logs

Command = Literal["drain", "resume", "cancel"]
RECHECK_S = 2.0


def channel_of(process_id: str) -> str:
    """The channel a process listens on: ``master-<name>`` on its master's channel, a worker on its own."""
    if process_id.startswith("master-"):
        return master_channel(process_id.removeprefix("master-"))
    return worker_channel(process_id)


async def send(
    redis: aredis.Redis, keys: RunKeys, process_id: str, command: Command, *, by: str, task_id: str | None = None
) -> None:
    """Record ``command`` for ``process_id`` in the run's control hash and publish it on the process's channel."""
    field = f"cancel:{task_id}" if command == "cancel" else process_id
    pipe = redis.pipeline(transaction=True)
    if command == "resume":
        pipe.hdel(keys.control, process_id)
    else:
        pipe.hset(keys.control, field, json.dumps({"command": command, "by": by, "at": time.time(), "to": process_id}))
    env = Envelope(
        run_id=keys.run_id,
        sender=by,
        to=process_id,
        type=MessageType.control,
        task_id=task_id,
        context={"command": command},
    )
    events.emit(pipe, keys, channel_of(process_id), env)
    await pipe.execute()


class Control:
    """What the control messages addressed to ``process_id`` ask of it now. ``on_cancel(task_id, by)`` is called
    when a cancel for a task arrives."""

    def __init__(self, redis: aredis.Redis, keys: RunKeys, process_id: str) -> None:
        self.redis = redis
        self.keys = keys
        self.process_id = process_id
        self.draining_by: str | None = None
        """Who asked this process to drain, while it drains."""
        self.on_cancel: Callable[[str, str], bool] | None = None
        """Stops the task if this process runs it; True when it did."""
        self.changed = asyncio.Event()
        """Set whenever a command arrives (a draining loop waits on it instead of polling)."""

    @property
    def draining(self) -> bool:
        """Take no new work."""
        return self.draining_by is not None

    async def _apply(self, command: str, by: str, task_id: str | None) -> None:
        """Obey ``command`` and say so on the process's channel (``draining``, ``resumed``, ``cancelling``)."""
        if command == "drain" and not self.draining:
            self.draining_by, ack = by, "draining"
        elif command == "resume" and self.draining:
            self.draining_by, ack = None, "resumed"
        elif command == "cancel" and task_id and self.on_cancel is not None and self.on_cancel(task_id, by):
            ack = "cancelling"
        else:
            return  # nothing changes: already so, or not running that task
        self.changed.set()
        env = Envelope(
            run_id=self.keys.run_id,
            sender=self.process_id,
            to="all",
            type=MessageType.control,
            task_id=task_id,
            context={"event": ack, "by": by},
        )
        with contextlib.suppress(RedisError):
            await events.publish(self.redis, self.keys, channel_of(self.process_id), env)

    async def recheck(self) -> None:
        """Read the standing commands from the run's control hash (at start, and after messages may have been
        missed). An entry that is not a command (another version's, or damaged) is skipped and logged."""
        try:
            raw = await self.redis.hgetall(self.keys.control)
        except RedisError:
            return  # Redis restarting: the next recheck will do
        standing = _command(raw, self.process_id)
        if standing is None and self.draining:
            await self._apply("resume", "control hash", None)
        elif standing is not None:
            await self._apply(standing["command"], standing["by"], None)
        for field in raw:
            if field.startswith("cancel:") and (cancel := _command(raw, field)) and cancel.get("to") == self.process_id:
                await self._apply("cancel", cancel["by"], field.removeprefix("cancel:"))

    async def follow(self, stop: asyncio.Event) -> None:
        """Obey the messages on the process's channel until ``stop`` is set; re-read the hash now and then. An
        unexpected error is logged and following starts again a second later: a process that stopped listening
        would go on working deaf to drains and cancels."""
        while not stop.is_set():
            try:
                await self._follow(stop)
            except Exception as exc:
                logs.event(
                    "control-error", logging.WARNING, process=self.process_id, error=f"{type(exc).__name__}: {exc}"
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

    async def _follow(self, stop: asyncio.Event) -> None:
        await self.recheck()
        checked = time.monotonic()
        stream = events.listen(self.redis, channel_of(self.process_id), tick_s=0.5)
        try:
            async for data in stream:
                if stop.is_set():
                    return
                if data is not None:
                    await self._obey(data)
                if time.monotonic() - checked > RECHECK_S:
                    await self.recheck()
                    checked = time.monotonic()
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()

    async def _obey(self, data: str) -> None:
        if '"type":"control"' not in data:
            # most of what a process hears on its channel is its own and its peers' task events (every dispatch,
            # claim and completion): skip them without parsing, which cost each one a wake-up's worth of CPU
            return
        try:
            env = Envelope.model_validate_json(data)
        except ValidationError:
            return  # not a Cortex envelope: nothing to obey
        if env.type is MessageType.control and env.run_id == self.keys.run_id and env.to == self.process_id:
            await self._apply(str(env.context.get("command")), env.sender, env.task_id)


def _command(raw: dict[str, str], field: str) -> dict[str, str] | None:
    """The command stored under ``field`` of the control hash, or None when there is none or it is not one."""
    if field not in raw:
        return None
    try:
        value = json.loads(raw[field])
        if isinstance(value, dict) and isinstance(value.get("command"), str) and isinstance(value.get("by"), str):
            return value
    except ValueError:
        pass
    logs.event("control-error", logging.WARNING, field=field, error="not a control command; ignored")
    return None
