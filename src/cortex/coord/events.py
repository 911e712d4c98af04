"""Events: every envelope goes to its pub/sub channel and to the run's event stream (pub/sub drops messages
nobody hears; the stream is what the archive keeps)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aredis

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
