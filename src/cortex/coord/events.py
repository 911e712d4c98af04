"""Events: every envelope goes to its pub/sub channel and to the run's event stream (pub/sub drops messages
nobody hears; the stream is what the archive keeps)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cortex.coord.keys import RunKeys
from cortex.models.messages import Envelope


def emit(pipe: aredis.client.Pipeline, keys: RunKeys, channel: str, envelope: Envelope) -> None:
    """Queue the envelope's publication on ``pipe`` (the caller executes the pipeline)."""
    data = envelope.dumps()
    pipe.xadd(keys.events, {"channel": channel, "data": data})
    pipe.publish(channel, data)


async def publish(redis: aredis.Redis, keys: RunKeys, channel: str, envelope: Envelope) -> None:
    """Publish one envelope now."""
    pipe = redis.pipeline(transaction=False)
    emit(pipe, keys, channel, envelope)
    await pipe.execute()


async def read_events(redis: aredis.Redis, keys: RunKeys, *, count: int = 10_000) -> list[dict[str, Any]]:
    """Every event of the run so far, oldest first, decoded."""
    import json

    out: list[dict[str, Any]] = []
    last = "-"
    while True:
        batch = await redis.xrange(keys.events, min=last, max="+", count=count)
        if last != "-" and batch:
            batch = batch[1:]
        if not batch:
            return out
        for entry_id, fields in batch:
            event = json.loads(fields["data"])
            event["channel"] = fields["channel"]
            event["stream_id"] = entry_id
            out.append(event)
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
