"""Coverage-guided fuzzing of everything that reads bytes off the wire (atheris).

Targets, chosen by the input's first byte: the msgpack and JSON decoders
(every message type), a device's frames through decoding, the frame
assembler and the chunker (the end-pointer's pure path), signature checks
and sealed replies. A crash is any exception but the coded ones those
functions document. Run it::

    python -m tests.fuzz.wire -atheris_runs=1000000 [corpus_dir]

``tests/fuzz/test_fuzz.py`` runs it bounded in CI from a corpus of valid
records (:func:`write_seeds`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["streams", "agents"]):
    from cryptography.exceptions import InvalidTag

    from agents.endpointing import Chunker, FrameAssembler
    from streams import identity
    from streams.audio import AudioFrame, UtteranceStart, UtteranceStop
    from streams.codec import Codec, decode, encode
    from streams.context import DeviceContext
    from streams.endpoint import Endpoint, EndpointKind, Reset, ResetReason
    from streams.schema import Message, SerializationError

KEY = bytes(range(32))
TARGETS = 4


def _records(data: bytes) -> list[bytes]:
    """Split ``data`` into records, each prefixed by its 2-byte little-endian length."""
    out, i = [], 0
    while i + 2 <= len(data):
        n = int.from_bytes(data[i:i + 2], "little")
        out.append(data[i + 2:i + 2 + n])
        i += 2 + n
    return out


def _frames(data: bytes) -> None:
    """Records of one device, decoded and assembled as the end-pointer does."""
    if not data:
        return
    assembler = FrameAssembler(16000, reorder_window=data[0] % 7)
    chunker = Chunker(512)
    for raw in _records(data[1:]):
        try:
            message = decode(raw, Codec.MSGPACK)
        except SerializationError:
            continue
        if isinstance(message, AudioFrame):
            out, _ = assembler.push(message)
            chunker.push(out)
        elif isinstance(message, UtteranceStop):
            out, _ = assembler.flush()
            chunker.push(out)
            assert assembler.flush()[1] == []  # nothing left held
        assert chunker.held < 512


def one_input(data: bytes) -> None:
    """Feed one fuzzer input to the target its first byte picks (byte % 4)."""
    if not data:
        return
    target, rest = data[0] % TARGETS, data[1:]
    if target in (0, 1):
        codec = Codec.MSGPACK if target == 0 else Codec.JSON
        try:
            message = decode(rest, codec)
        except SerializationError:
            return
        if not isinstance(message, AudioFrame) or codec is Codec.MSGPACK:
            assert decode(encode(message, codec), codec) == message
    elif target == 2:
        _frames(rest)
    else:
        n = rest[0] if rest else 0
        device = rest[1:1 + n].decode(errors="replace")
        raw = rest[1 + n:]
        identity.verify(KEY, "audio", device.encode(), raw, raw[:33])
        identity.signature_of({"vs-sig": raw[:40]})
        try:
            plain = identity.open_reply(KEY, device, raw)
        except InvalidTag:
            return
        assert isinstance(plain, bytes)


def _seed_messages() -> list[tuple[int, bytes]]:
    pcm = bytes(640)
    audio: list[Message] = [
        UtteranceStart(device_id="d1", utterance_id="u1", sample_rate_hz=16000),
        *[AudioFrame(device_id="d1", utterance_id="u1", seq=s, pcm=pcm, sample_rate_hz=16000,
                     audio_ms=s * 20) for s in (0, 1, 3, 2, 100)],
        UtteranceStop(device_id="d1", utterance_id="u1", last_seq=100),
    ]
    other: list[Message] = [
        DeviceContext(device_id="d1", states={"oven": "on"}, contacts=("Ann",)),
        Endpoint(device_id="d1", utterance_id="u1", kind=EndpointKind.FINAL, revision=1,
                 at_ms=10, t_ms=20),
        Reset(device_id="d1", utterance_id="u1", cancelled_revision=0,
              reason=ResetReason.SPEECH_RESUMED, t_ms=5),
    ]
    seeds = [(0, encode(m, Codec.MSGPACK)) for m in audio + other]
    seeds += [(1, encode(m, Codec.JSON)) for m in other]
    return seeds


def write_seeds(directory: Path) -> Path:
    """Write a starting corpus of valid records (and one device's stream) to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    seeds = _seed_messages()
    for i, (target, raw) in enumerate(seeds):
        (directory / f"seed-{i}").write_bytes(bytes([target]) + raw)
    stream = b"".join(len(raw).to_bytes(2, "little") + raw for t, raw in seeds if t == 0)
    (directory / "seed-stream").write_bytes(bytes([2, 4]) + stream)
    (directory / "seed-reply").write_bytes(
        bytes([3, 2]) + b"d1" + identity.seal_reply(KEY, "d1", b"{}"))
    return directory


def main(argv: list[str]) -> None:
    """Run the fuzzer with libFuzzer's arguments (``-atheris_runs=N``, corpus dirs)."""
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
