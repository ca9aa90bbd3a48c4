"""The device-context agent: keeps the newest context of every device in a table.

Later stages read the table to bias recognition and resolve meaning; the
end-pointer reads it to refuse unknown devices when configured to.
"""

from __future__ import annotations

from typing import Any

import faust

from agents.base import DeviceGate, Origin, Publisher, SendFn, isolated
from infra import metrics
from streams import topics
from streams.context import DeviceContext
from streams.directive import ContextUpdate
from streams.identity import signature_of
from streams.settings import Settings

STAGE = "context"
#: Recent-activity items kept per device.
HISTORY_LIMIT = 50


def merge(current: dict[str, Any] | None, update: ContextUpdate) -> dict[str, Any]:
    """Apply a partial update to a context table value (pure)."""
    base = dict(current) if current else DeviceContext(device_id=update.device_id).to_wire()
    states = dict(base.get("states") or {})
    for name, value in update.states.items():
        if value:
            states[name] = value
        else:
            states.pop(name, None)
    base["states"] = states
    if update.playing is not None:
        base["playing"] = dict(update.playing)
    if update.history:
        base["history"] = [*(base.get("history") or []), *update.history][-HISTORY_LIMIT:]
    return base


def register(app: faust.App, settings: Settings, send: SendFn,
             gate: DeviceGate | None = None) -> Any:
    """Create the context table and the agent that fills it; return the table.

    Context updates come from skills (trusted by ACL); snapshots from devices
    pass ``gate`` first.
    """
    gate = gate if gate is not None else DeviceGate(settings.device_master_key())
    # Snapshots from devices and partial updates from skills, both keyed by device id.
    topic = app.topic(settings.topic(topics.CONTEXT.short),
                      settings.topic(topics.CONTEXT_UPDATES.short), key_serializer="raw",
                      value_serializer="raw", partitions=settings.partitions)
    updates_name = settings.topic(topics.CONTEXT_UPDATES.short)
    # Global: every worker holds every device's context, so the worker that owns a
    # device's audio partition finds it whichever partitioner the device used.
    table = app.GlobalTable("device-context", key_type=str,
                            partitions=settings.partitions, default=None, use_partitioner=True)
    pub = Publisher(STAGE, send)

    async def take(origin: Origin, raw: bytes | None) -> None:
        if origin.topic == updates_name:
            update = await pub.decode(topics.CONTEXT_UPDATES, origin, raw)
            if isinstance(update, ContextUpdate):
                table[update.device_id] = merge(table.get(update.device_id), update)
                metrics.CONTEXTS.inc()
                pub.log.info("context.merged", device_id=update.device_id,
                             source=update.source, states=len(update.states))
            return
        ctx = await pub.decode(topics.CONTEXT, origin, raw)
        if isinstance(ctx, DeviceContext) and await gate.admit(
                pub, topics.CONTEXT, origin, raw or b"", ctx):
            table[ctx.device_id] = ctx.to_wire()
            metrics.CONTEXTS.inc()
            pub.log.info("context.updated", device_id=ctx.device_id, **ctx.redacted())

    @app.agent(topic, name="context", concurrency=1)
    async def context(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            origin = Origin(msg.topic, msg.partition, msg.offset, msg.key,
                            signature_of(msg.headers))
            await isolated(pub, origin, take(origin, msg.value))

    return table
