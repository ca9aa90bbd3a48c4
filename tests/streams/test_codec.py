"""Codec round trips and the error table: every bad payload gets its own code."""

from __future__ import annotations

import msgpack
import orjson
import pytest

from streams.asr import NBest, Transcript, WordTime
from streams.audio import AudioFrame, UtteranceStart, UtteranceStop
from streams.codec import MAX_PAYLOAD_BYTES, Codec, decode, encode
from streams.context import DeviceContext
from streams.control import DeadLetter, ErrorEvent, payload_digest
from streams.endpoint import Endpoint, EndpointKind, Reset, ResetReason
from streams.schema import Message, SerializationError, ValidationError

FRAME = AudioFrame(
    device_id="dev-1", utterance_id="u-1", seq=3, pcm=b"\x01\x00" * 320,
    sample_rate_hz=16000, audio_ms=60,
)

MESSAGES: list[Message] = [
    UtteranceStart(device_id="dev-1", utterance_id="u-1", sample_rate_hz=16000),
    FRAME,
    UtteranceStop(device_id="dev-1", utterance_id="u-1", last_seq=10),
    DeviceContext(
        device_id="dev-1", has_screen=True, states={"oven": "on"},
        contacts=("Ada Lovelace",), appliances=("oven",),
    ),
    Endpoint(
        device_id="dev-1", utterance_id="u-1", kind=EndpointKind.FINAL,
        revision=1, at_ms=900, t_ms=1800,
    ),
    Reset(
        device_id="dev-1", utterance_id="u-1", cancelled_revision=0,
        reason=ResetReason.SPEECH_RESUMED, t_ms=1200,
    ),
    Transcript(
        device_id="dev-1", utterance_id="u-1", kind=EndpointKind.SPECULATIVE, revision=0,
        at_ms=900, t_ms=1000, engine="whisper",
        nbest=(NBest(text="turn on the lights", score=-0.2,
                     words=(WordTime(word="turn", start_ms=0, end_ms=320),
                            WordTime(word="on", start_ms=320, end_ms=520))),
               NBest(text="turn on the light", score=-0.4)),
    ),
    ErrorEvent(
        device_id="dev-1", utterance_id="u-1", stage="endpointer", code="no-speech",
        message="no speech in 5000 ms",
    ),
    DeadLetter(
        stage="endpointer", code="undecodable", message="x", topic="t", partition=0,
        offset=5, size_bytes=2, digest=payload_digest(b"\xff\x00"),
    ),
]


# Audio travels as msgpack only: JSON has no bytes type.
PAIRS = [(m, c) for m in MESSAGES for c in Codec if not (c is Codec.JSON and m is FRAME)]


@pytest.mark.parametrize(("message", "codec"), PAIRS,
                         ids=[f"{m.TYPE.value}-{c.value}" for m, c in PAIRS])
def test_round_trip(message: Message, codec: Codec) -> None:
    assert decode(encode(message, codec), codec) == message


def test_json_refuses_audio_bytes() -> None:
    with pytest.raises(SerializationError) as info:
        encode(FRAME, Codec.JSON)
    assert info.value.code == "unencodable"


def frame_dict(**changes: object) -> dict[str, object]:
    data = FRAME.to_wire()
    data.update(changes)
    return data


def packed(data: object) -> bytes:
    return msgpack.packb(data, use_bin_type=True)


ERRORS = [
    ("garbage", b"\xc1\xff\x00garbage", "undecodable"),
    ("truncated", packed(FRAME.to_wire())[:-5], "undecodable"),
    ("not-an-object", packed([1, 2, 3]), "not-an-object"),
    ("no-version", packed({k: v for k, v in FRAME.to_wire().items() if k != "v"}),
     "missing-schema-version"),
    ("future-version", packed(frame_dict(v=99)), "unsupported-schema-version"),
    ("version-not-int", packed(frame_dict(v="1")), "wrong-type"),
    ("unknown-type", packed(frame_dict(type="telepathy")), "unknown-message-type"),
    ("missing-field", packed({k: v for k, v in FRAME.to_wire().items() if k != "pcm"}),
     "missing-field"),
    ("seq-is-str", packed(frame_dict(seq="3")), "wrong-type"),
    ("seq-is-bool", packed(frame_dict(seq=True)), "wrong-type"),
    ("pcm-is-str", packed(frame_dict(pcm="abc")), "wrong-type"),
    ("negative-seq", packed(frame_dict(seq=-1)), "invalid-value"),
    ("bad-device-id", packed(frame_dict(device_id="")), "invalid-value"),
    ("bad-format", packed(frame_dict(sample_format="f32le")), "invalid-value"),
    ("oversized", b"\x00" * (MAX_PAYLOAD_BYTES + 1), "payload-too-large"),
]


@pytest.mark.parametrize(("raw", "code"), [(r, c) for _, r, c in ERRORS],
                         ids=[name for name, _, _ in ERRORS])
def test_decode_errors_have_codes(raw: bytes, code: str) -> None:
    with pytest.raises(SerializationError) as info:
        decode(raw, Codec.MSGPACK)
    assert info.value.code == code


def test_errors_chain_their_cause() -> None:
    with pytest.raises(SerializationError) as info:
        decode(b"{not json", Codec.JSON)
    assert isinstance(info.value.__cause__, orjson.JSONDecodeError)


def test_unknown_fields_are_ignored() -> None:
    data = frame_dict(colour="blue")
    assert decode(packed(data), Codec.MSGPACK) == FRAME


def test_construction_in_code_is_strict() -> None:
    with pytest.raises(ValidationError):
        Endpoint(device_id="d", utterance_id="u", kind=EndpointKind.FINAL, revision=0,
                 at_ms=500, t_ms=100)


def test_context_redaction_hides_names() -> None:
    ctx = DeviceContext(device_id="d", contacts=("Ada Lovelace",), appliances=("oven",))
    assert "Ada" not in repr(ctx.redacted())
    assert ctx.redacted()["contacts"] == 1
