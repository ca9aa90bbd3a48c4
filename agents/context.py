"""The device-context agent: keeps the newest context of every device in a table.

Later stages read the table to bias recognition and resolve meaning; the
end-pointer reads it to refuse unknown devices when configured to.
"""

from __future__ import annotations

from typing import Any

import faust

from agents.base import Origin, Publisher, SendFn
from infra.config import Settings
from streams import topics
from streams.context import DeviceContext

STAGE = "context"


def register(app: faust.App, settings: Settings, send: SendFn) -> Any:
    """Create the context table and the agent that fills it; return the table."""
    topic = app.topic(settings.topic(topics.CONTEXT.short), key_serializer="raw",
                      value_serializer="raw", partitions=settings.partitions)
    table = app.Table("device-context", key_type=str,
                      partitions=settings.partitions, default=None, use_partitioner=True)
    pub = Publisher(STAGE, send)

    @app.agent(topic, name="context", concurrency=1)
    async def context(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            origin = Origin(msg.topic, msg.partition, msg.offset, msg.key)
            ctx = await pub.decode(topics.CONTEXT, origin, msg.value)
            if isinstance(ctx, DeviceContext):
                table[ctx.device_id] = ctx.to_wire()
                pub.log.info("context.updated", device_id=ctx.device_id, **ctx.redacted())

    return table
