"""A good device beside each bad one: the bad input is dead-lettered, the good utterance whole.

Every bad device of :data:`BAD` streams at the same time as a good device of
its own, their records interleaved on the audio topic, on both brokers. Each
good device must get the directive a device streaming alone gets (the same
skill, intent and slots); the bad ones get their coded dead letters, and the
worker serves on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from streams import topics
from streams.audio import AudioFrame
from streams.client import EventWatcher, read_wav
from streams.codec import Codec, encode
from streams.control import DeadLetter
from streams.directive import Declined, Directive
from streams.schema import Message
from tests.conftest import connection
from tests.e2e.test_bad_input import frame, frames_of, start, stop

pytestmark = pytest.mark.broker
AUDIO = topics.AUDIO.name(topics.DEFAULT_PREFIX)
Records = list[tuple[bytes, bytes]]  # (record key, value)


def at(dev: str, utt: str, seq: int, audio_ms: int, pcm: bytes) -> bytes:
    return encode(AudioFrame(device_id=dev, utterance_id=utt, seq=seq, pcm=pcm,
                             sample_rate_hz=16000, audio_ms=audio_ms), Codec.MSGPACK)


def own(dev: str, values: list[bytes]) -> Records:
    return [(dev.encode(), v) for v in values]


# name -> (records of the bad device, given its id, utterance id and 20 ms frames;
#          dead-letter codes expected for it)
BAD: dict[str, tuple[Callable[[str, str, list[bytes]], Records], set[str]]] = {
    # The probe that took an end-pointer down: four frames 100 apart, then a stop.
    "gap-storm": (lambda d, u, f: own(d, [start(d, u), *[at(d, u, s, s * 30, f[0])
                                                         for s in (0, 100, 200, 300)],
                                          stop(d, u, 300)]), set()),
    "huge-seq": (lambda d, u, f: own(d, [start(d, u), at(d, u, 0, 0, f[0]),
                                         at(d, u, 5 * 10**8, 10**7, f[1]),
                                         at(d, u, 2**62, 2**40, f[2]), stop(d, u, 2**62)]),
                 set()),
    "garbage": (lambda d, u, f: [(d.encode(), b"\x00\xffnot msgpack")] * 5, {"undecodable"}),
    "impersonation": (lambda d, u, f: [(d.encode(), frame("victim-x", u, i, fr))
                                       for i, fr in enumerate(f[:20])], {"device-mismatch"}),
    "rate-change": (lambda d, u, f: own(d, [start(d, u), frame(d, u, 0, f[0]),
                                            frame(d, u, 1, f[1][:320], rate=8000)]),
                    {"sample-rate-changed"}),
    "oversized": (lambda d, u, f: [(d.encode(), b"\x00" * 300_000)], {"payload-too-large"}),
    "duplicates": (lambda d, u, f: own(d, [start(d, u), *[frame(d, u, 0, f[0])] * 5]),
                   {"duplicate-frame"}),
    "out-of-order": (lambda d, u, f: own(d, [start(d, u), *[frame(d, u, s, f[s]) for s in
                                                            (5, 3, 9, 0, 20, 25, 28, 1, 2, 30)],
                                             stop(d, u, 30)]), {"late-frame"}),
}


def interleave(*streams: Records) -> Records:
    """Round-robin over the streams, so that bad records sit among the good ones."""
    out: Records = []
    longest = max(len(s) for s in streams)
    step = {id(s): max(1, longest // max(len(s), 1)) for s in streams}
    for i in range(longest):
        for s in streams:
            k, rem = divmod(i, step[id(s)])
            if rem == 0 and k < len(s):
                out.append(s[k])
    return out


async def test_a_bad_device_never_touches_a_good_one(stack: str, speech: dict[str, Path]
                                                     ) -> None:
    bootstrap = connection(stack)
    pcm, rate = read_wav(speech["whole"])
    good_frames = frames_of(pcm + bytes(rate * 2 * 2))
    run = f"iso{id(stack) % 10_000}"

    def good(dev: str) -> Records:
        u = f"{dev}-u"
        return own(dev, [start(dev, u), *[frame(dev, u, i, fr) for i, fr in
                                          enumerate(good_frames)], stop(dev, u, 0)])

    streams = {"alone": good(f"{run}-alone")}
    records = list(streams["alone"])
    for name, (build, _) in BAD.items():
        bad = build(f"{run}-bad-{name}", f"{run}-bad-{name}-u", good_frames)
        records += interleave(good(f"{run}-good-{name}"), bad)
    wanted = {f"{run}-alone-u", *(f"{run}-good-{n}-u" for n in BAD)}
    letters_wanted = {(f"{run}-bad-{n}", code) for n, (_, codes) in BAD.items()
                      for code in codes}

    seen: list[Message] = []
    async with EventWatcher(bootstrap, specs=[topics.DIRECTIVES, topics.DEAD_LETTERS]) as watch:
        producer = AIOKafkaProducer(**bootstrap.producer())
        await producer.start()
        try:
            for key, value in records:
                await producer.send(AUDIO, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()

        def done() -> bool:
            decided = {m.utterance_id for m in seen if isinstance(m, Directive | Declined)}
            letters = {(m.key, m.code) for m in seen if isinstance(m, DeadLetter)}
            return wanted <= decided and letters_wanted <= letters

        try:
            async with asyncio.timeout(120):
                async for _topic, message in watch.messages():
                    if isinstance(message, Message):
                        seen.append(message)
                    if done():
                        break
        except TimeoutError:
            pass  # the assertions say what is missing

    decisions = {m.utterance_id: m for m in seen if isinstance(m, Directive | Declined)}
    alone = decisions.get(f"{run}-alone-u")
    assert alone is not None, decisions
    for name in BAD:
        got = decisions.get(f"{run}-good-{name}-u")
        assert got is not None, name
        assert (type(got), got.intent, same(got)) == (type(alone), alone.intent, same(alone)), name
    letters = {(m.key, m.code) for m in seen if isinstance(m, DeadLetter)}
    assert letters_wanted - letters == set()
    # No dead letter blames a good device.
    assert not {k for k, _ in letters if "-good-" in k or k.endswith("-alone")}


def same(decision: Directive | Declined) -> object:
    """What must match between a good device and the one streaming alone."""
    if isinstance(decision, Directive):
        return decision.skill, decision.slots
    return decision.reason
