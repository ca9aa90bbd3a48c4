"""Replies: each device's results, sealed for it, on the ``replies`` topic.

Runs where devices sign their input (a device master key is configured).
The pipeline's own topics then stay closed to devices (by ACL); what a
device may see of its utterances (end-points, the end-pointer's resets,
transcripts, interpretations, the arbiter's decision, errors, the skills'
answers) is copied here, encrypted under that device's key
(:func:`streams.identity.seal_reply`). Every device may read the topic; it
can open its own records only. The copy is at least once: after a rebalance
a device may see a reply twice.
"""

from __future__ import annotations

from typing import Any

import faust

from agents.base import DeviceGate, Origin, Publisher, SendFn, isolated
from infra import logs
from streams import identity, topics
from streams.codec import decode
from streams.schema import MessageType, SerializationError
from streams.settings import Settings

STAGE = "replies"
#: The topics copied, and the codec of each (all JSON today).
SOURCES = (topics.ENDPOINTS, topics.TRANSCRIPTS, topics.INTERPRETATIONS, topics.DIRECTIVES,
           topics.RESPONSES)

log = logs.get(f"voicestream.{STAGE}", stage=STAGE)


class Replier:
    """Seals one output record for its device; the agent sends what it returns."""

    def __init__(self, gate: DeviceGate, send: SendFn) -> None:
        assert gate.signing
        self._gate = gate
        self._send = send
        self.sealed = 0
        self.pub = Publisher(STAGE, send)

    async def on_record(self, spec: topics.TopicSpec, partition: int, raw: bytes | None) -> bool:
        """Copy one record of ``spec``'s topic to ``replies``; False if it is not a device's."""
        try:
            message = decode(raw or b"", spec.codec)
        except SerializationError:
            return False  # the stage that wrote it is at fault, and it dead-letters its input
        device_id = getattr(message, "device_id", None)
        if not isinstance(device_id, str) or message.TYPE not in topics.REPLIES.kinds:
            return False
        if message.TYPE is MessageType.RESET and spec is not topics.ENDPOINTS:
            return False  # later stages forward the end-pointer's reset; the device needs one
        if message.TYPE is MessageType.ERROR and spec is not topics.DIRECTIVES:
            return False  # forwarded in band; the device needs the outcome's copy
        assert raw is not None
        sealed = identity.seal_reply(self._gate.key(device_id), device_id, raw)
        await self._send(topics.REPLIES.short, device_id.encode(), sealed, partition)
        self.sealed += 1
        return True


def register(app: faust.App, settings: Settings, send: SendFn, gate: DeviceGate) -> Replier:
    """Create the replies agent on ``app``."""
    replier = Replier(gate, send)
    by_name = {settings.topic(spec.short): spec for spec in SOURCES}
    source = app.topic(*by_name, key_serializer="raw", value_serializer="raw",
                       partitions=settings.partitions)

    @app.agent(source, name="replies", concurrency=1)
    async def replies(stream: Any) -> None:
        async for event in stream.events():
            m = event.message
            await isolated(replier.pub, Origin(m.topic, m.partition, m.offset, m.key),
                           replier.on_record(by_name[m.topic], m.partition, m.value))

    log.info("replies.on", sources=[spec.short for spec in SOURCES])
    return replier
