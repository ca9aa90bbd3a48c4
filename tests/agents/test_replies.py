"""The replies agent seals each device's results for that device alone."""

from __future__ import annotations

from agents.base import DeviceGate
from agents.replies import Replier
from streams import identity, topics
from streams.codec import Codec, decode, encode
from streams.control import ErrorEvent
from streams.directive import Directive
from streams.endpoint import Reset, ResetReason
from streams.schema import Message

MASTER = bytes(range(32))


class Sent(list[tuple[str, bytes, bytes, int | None]]):
    async def __call__(self, short: str, key: bytes, value: bytes,
                       partition: int | None = None) -> None:
        self.append((short, key, value, partition))


def directive(device: str) -> Directive:
    return Directive(directive_id="u1/0", device_id=device, utterance_id="u1", revision=0,
                     skill="smart-home", intent="iot_hue_lighton")


async def test_a_devices_results_open_with_its_key_only() -> None:
    sent = Sent()
    replier = Replier(DeviceGate(MASTER), sent)
    raw = encode(directive("kitchen-1"), Codec.JSON)
    assert await replier.on_record(topics.DIRECTIVES, 3, raw)
    [(short, key, sealed, partition)] = sent
    # Keyed by the device and on the partition of what it answers, like every output.
    assert (short, key, partition) == ("replies", b"kitchen-1", 3)
    assert b"iot_hue_lighton" not in sealed and b"kitchen-1" not in sealed
    mine = identity.device_key(MASTER, "kitchen-1")
    message: Message = decode(identity.open_reply(mine, "kitchen-1", sealed), Codec.JSON)
    assert message == directive("kitchen-1")
    other = identity.device_key(MASTER, "hall-1")
    for key_, device in ((other, "hall-1"), (other, "kitchen-1")):
        try:
            identity.open_reply(key_, device, sealed)
        except identity.InvalidTag:
            continue
        raise AssertionError("another device opened the reply")


async def test_one_copy_of_a_reset_and_an_error_and_device_messages_are_copied() -> None:
    sent = Sent()
    replier = Replier(DeviceGate(MASTER), sent)
    reset = encode(Reset(device_id="d", utterance_id="u", cancelled_revision=0,
                         reason=ResetReason.SPEECH_RESUMED, t_ms=5), Codec.JSON)
    assert not await replier.on_record(topics.TRANSCRIPTS, 0, reset)  # a forwarded copy
    assert await replier.on_record(topics.ENDPOINTS, 0, reset)
    assert not await replier.on_record(topics.DIRECTIVES, 0, b"{not json")
    error = encode(ErrorEvent(device_id="d", utterance_id="u", stage="endpointer",
                              code="no-speech", message="no speech"), Codec.JSON)
    for forwarded in (topics.ENDPOINTS, topics.TRANSCRIPTS, topics.INTERPRETATIONS):
        assert not await replier.on_record(forwarded, 0, error)
    assert await replier.on_record(topics.DIRECTIVES, 0, error)  # the outcome's copy
    assert [s[0] for s in sent] == ["replies"] * 2 and replier.sealed == 2
