"""Following a live run: every envelope published on the five channels for one run, as it happens, until the run
ends. This is ``cortex watch``; pub/sub keeps nothing, so a watcher sees what is published while it listens (the
run's event stream, archived as ``events.jsonl``, has everything)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import redis.asyncio as aredis
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cortex.coord.keys import CH_CONFLICTS, CH_LINEAGE, MASTER_CHANNELS, RUNS, WORKER_CHANNELS, RunKeys
from cortex.errors import RunNotFound
from cortex.models.messages import Envelope, MessageType


@dataclass(frozen=True)
class Event:
    """One envelope and the channel it came on."""

    channel: str
    envelope: Envelope

    @property
    def ends_run(self) -> bool:
        """The coordinator's last message of a run."""
        env = self.envelope
        return env.type is MessageType.control and env.context.get("event") == "run-ended"


async def latest_run(redis: aredis.Redis) -> str:
    """The latest run that is live in this Redis; ``RunNotFound`` when there is none."""
    for candidate in await redis.zrevrange(RUNS, 0, 20):
        if await redis.exists(RunKeys(candidate).plan):
            return str(candidate)
    raise RunNotFound("no live run in this Redis: start one with `cortex run`, or name a run id")


class _Liveness:
    """Whether a followed run is there: it may not have started yet (waited for up to ``wait_s``), and it is gone
    once its keys are, after it was seen."""

    def __init__(self, redis: aredis.Redis, run_id: str, wait_s: float) -> None:
        self.redis, self.run_id, self.wait_s = redis, run_id, wait_s
        self.deadline = time.monotonic() + wait_s
        self.started = False

    async def gone(self) -> bool:
        if await self.redis.exists(RunKeys(self.run_id).plan):
            self.started = True
            return False
        if self.started:
            return True
        if time.monotonic() >= self.deadline:
            why = f"did not start within {self.wait_s:.0f} s" if self.wait_s else "is not live in this Redis"
            raise RunNotFound(f"run {self.run_id!r} {why} (it ended, or never started here)")
        return False


async def follow(
    redis: aredis.Redis,
    run_id: str,
    *,
    wait_s: float = 0.0,
    idle_check_s: float = 1.0,
    on_ready: Callable[[], None] | None = None,
) -> AsyncIterator[Event]:
    """The run's envelopes as they are published. ``on_ready`` is called once subscribed (nothing published from
    then on is missed while the connection holds). A run that has not started yet is waited for up to ``wait_s``.
    Ends after the coordinator's ``run-ended`` message, or once the run's keys are gone (the message was missed).
    A lost connection is retried; what was published meanwhile is missed."""
    life = _Liveness(redis, run_id, wait_s)
    await life.gone()  # raises at once when the run is not there and not waited for
    delay = 0.05
    while True:
        pubsub = redis.pubsub()
        try:
            await pubsub.psubscribe(MASTER_CHANNELS, WORKER_CHANNELS)
            await pubsub.subscribe(CH_LINEAGE, CH_CONFLICTS)
            if on_ready is not None:
                on_ready()
                on_ready = None
            delay = 0.05
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=idle_check_s)
                if msg is None:
                    if await life.gone():
                        return
                    continue
                try:
                    env = Envelope.model_validate_json(msg["data"])
                except ValidationError:
                    continue  # not a Cortex envelope
                if env.run_id != run_id:
                    continue
                life.started = True
                event = Event(str(msg["channel"]), env)
                yield event
                if event.ends_run:
                    return
        except (RedisConnectionError, RedisTimeoutError, OSError):
            await asyncio.sleep(delay)  # backoff before subscribing again
            delay = min(2.0, delay * 2)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


def _brief(value: object) -> str:
    """A context value in a few characters: lists and mappings by their size, tasks by their ids."""
    if isinstance(value, list):
        ids = [v.get("task_id") or v.get("task") for v in value if isinstance(v, dict)]
        if ids and all(ids) and len(ids) <= 3:
            return ",".join(str(i) for i in ids)
        return f"[{len(value)}]"
    if isinstance(value, dict):
        return f"{{{len(value)}}}"
    return str(value)


def describe(event: Event) -> str:
    """One line for people: time, channel, type, sender and receiver, task, and the message's content."""
    env = event.envelope
    stamp = time.strftime("%H:%M:%S", time.localtime(env.ts)) + f".{int(env.ts % 1 * 1000):03d}"
    context = " ".join(f"{k}={_brief(v)}" for k, v in env.context.items())
    task = f" {env.task_id}" if env.task_id else ""
    return f"{stamp} {event.channel} {env.type.value} {env.sender}->{env.to}{task} {context}".rstrip()
