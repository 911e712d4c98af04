"""Events: every envelope goes to its pub/sub channel and to the run's event stream, in one pipeline.

Pub/sub is fire and forget: a message nobody is subscribed to is gone. The run's event stream is the durable
record (the archive keeps it as ``events.jsonl``); the channels are for whoever follows a run live (``cortex
watch``) and for the control messages processes obey, whose durable copy is the run's ``control`` hash.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cortex.coord.keys import CH_CONFLICTS, RunKeys
from cortex.models.messages import Envelope, StreamEvent


def emit(pipe: aredis.client.Pipeline, keys: RunKeys, channel: str, envelope: Envelope) -> None:
    """Queue the envelope's publication on ``pipe`` (the caller executes the pipeline); a conflict is counted too
    (``RunKeys.conflicts``, what the metrics show)."""
    for command in as_commands(keys, channel, envelope):
        pipe.execute_command(*command)


def as_commands(keys: RunKeys, channel: str, envelope: Envelope) -> list[list[str]]:
    """The same publication as raw Redis commands: for a task's effects (they run with the task's first successful
    settle, so an event about what a task produced is sent once however often the task ran), and for the
    coordinator's fenced batches."""
    data = envelope.dumps()
    out = [["XADD", keys.events, "*", "channel", channel, "data", data], ["PUBLISH", channel, data]]
    if channel == CH_CONFLICTS:
        out.append(["HINCRBY", keys.conflicts, str(envelope.context.get("event", "conflict")), "1"])
    return out


class Outbox:
    """Envelopes waiting to go out with the next pipeline the owner executes (the coordinator sends its events
    together with the writes they describe)."""

    def __init__(self, keys: RunKeys) -> None:
        self.keys = keys
        self._queued: list[tuple[str, Envelope]] = []

    def add(self, channel: str, envelope: Envelope) -> None:
        """Queue ``envelope`` for ``channel``."""
        self._queued.append((channel, envelope))

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def queued(self) -> list[tuple[str, Envelope]]:
        """What is waiting, oldest first."""
        return list(self._queued)

    def drain_commands(self) -> list[list[str]]:
        """Every waiting envelope as Redis commands (``as_commands``), forgotten here."""
        out = [c for channel, envelope in self._queued for c in as_commands(self.keys, channel, envelope)]
        self._queued = []
        return out


async def publish(redis: aredis.Redis, keys: RunKeys, channel: str, envelope: Envelope) -> None:
    """Publish one envelope now."""
    pipe = redis.pipeline(transaction=False)
    emit(pipe, keys, channel, envelope)
    await pipe.execute()


async def read_events(redis: aredis.Redis, keys: RunKeys, *, count: int = 10_000) -> list[StreamEvent]:
    """Every event of the run so far, oldest first, decoded."""
    import json

    out: list[StreamEvent] = []
    last = "-"
    while True:
        batch = await redis.xrange(keys.events, min=last, max="+", count=count)
        if last != "-" and batch:
            batch = batch[1:]
        if not batch:
            return out
        for entry_id, fields in batch:
            event = json.loads(fields["data"])
            out.append(StreamEvent.model_validate({**event, "channel": fields["channel"], "stream_id": entry_id}))
        last = batch[-1][0]


async def listen(redis: aredis.Redis, channel: str, *, tick_s: float = 1.0) -> AsyncGenerator[str | None, None]:
    """Messages published on ``channel``; None once subscribed and every ``tick_s`` without a message (so a caller
    can check whether its own client is still there). A lost connection is retried with backoff and the channel
    subscribed again; what was published meanwhile is missed (pub/sub keeps nothing), which is why run events also
    go to a stream.
    """
    delay = 0.05
    while True:
        pubsub = redis.pubsub()
        try:
            await pubsub.subscribe(channel)
            delay = 0.05
            yield None  # subscribed: from here on nothing published is missed while the connection holds
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=tick_s)
                yield None if msg is None else str(msg["data"])
        except (RedisConnectionError, RedisTimeoutError, OSError):
            yield None
            await asyncio.sleep(delay)  # backoff before subscribing again
            delay = min(2.0, delay * 2)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
