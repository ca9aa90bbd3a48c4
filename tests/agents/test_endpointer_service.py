"""The end-pointing agent's service, driven directly with a recording sender (no broker)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.base import Origin
from agents.endpointer import EndpointerService
from agents.ledger import Ledger
from infra.config import EndpointerConfig, Settings
from models.vad import SileroVad
from streams import topics
from streams.asr import NBest, Transcript
from streams.audio import AudioFrame, UtteranceStart, UtteranceStop
from streams.client import read_wav
from streams.codec import Codec, decode, encode
from streams.control import DeadLetter, ErrorEvent
from streams.endpoint import Endpoint, EndpointKind, Reset
from streams.nlu import Hypothesis, Interpretations
from streams.schema import Message

AUDIO = "voicestream.audio"


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Message]] = []
        #: The partition each record was pinned to (None: the partitioner chose).
        self.partitions: list[int | None] = []

    async def __call__(self, short: str, key: bytes, value: bytes,
                       partition: int | None = None) -> None:
        self.partitions.append(partition)
        self.sent.append((short, decode(value, topics.by_short(short).codec)))

    def kinds(self) -> list[tuple[str, str]]:
        out = []
        for _, m in self.sent:
            if isinstance(m, DeadLetter | ErrorEvent):
                out.append((m.TYPE.value, m.code))
            elif isinstance(m, Endpoint):
                out.append(("endpoint", m.kind.value))
            else:
                out.append((m.TYPE.value, ""))
        return out


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad()


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


_offsets = itertools.count()  # each record at a new offset, as a broker gives them


def batch(*messages: Message) -> list[tuple[Origin, bytes | None]]:
    """Records as their device sends them: keyed by its id."""
    return [(Origin(AUDIO, 0, next(_offsets), m.device_id.encode()),  # type: ignore[attr-defined]
             encode(m, Codec.MSGPACK)) for m in messages]


def frames(dev: str, utt: str, pcm: bytes, rate: int) -> Iterator[AudioFrame]:
    step = rate // 50 * 2
    for seq, i in enumerate(range(0, len(pcm), step)):
        yield AudioFrame(device_id=dev, utterance_id=utt, seq=seq, pcm=pcm[i:i + step],
                         sample_rate_hz=rate, audio_ms=seq * 20)


def service(rec: Recorder, vad: SileroVad, **kw: object) -> EndpointerService:
    return EndpointerService(Settings(**kw), rec, vad=vad,  # type: ignore[arg-type]
                             known_devices={"known": {"device_id": "known"}})


async def test_unknown_device_is_refused_when_required(rec: Recorder, vad: SileroVad) -> None:
    svc = service(rec, vad, require_known_devices=True)
    await svc.handle_batch(batch(UtteranceStart(device_id="stranger", utterance_id="u1",
                                                sample_rate_hz=16000)))
    assert rec.kinds() == [("dead-letter", "unknown-device"), ("error", "unknown-device")]
    await svc.handle_batch(batch(UtteranceStart(device_id="known", utterance_id="u2",
                                                sample_rate_hz=16000)))
    assert "known" in svc.sessions


async def test_moved_utterance_without_its_audio_ends_with_a_coded_error(
        rec: Recorder, vad: SileroVad, speech: dict[str, Path]) -> None:
    pcm, rate = read_wav(speech["whole"])
    ledger = Ledger()
    first = EndpointerService(Settings(), rec, vad=vad, ledger=ledger)
    all_frames = list(frames("d", "u1", pcm, rate))
    await first.handle_batch(batch(UtteranceStart(device_id="d", utterance_id="u1",
                                                  sample_rate_hz=rate), *all_frames[:20]))
    assert ledger.table["u1"]["open"] is True
    # A new worker with the same ledger (recovered from its changelog), no audio state.
    second = EndpointerService(Settings(), rec, vad=vad, ledger=ledger)
    await second.handle_batch(batch(*all_frames[20:25]))
    assert rec.kinds() == [("error", "worker-rebalanced")]
    assert ledger.table["u1"]["open"] is False
    await second.handle_batch(batch(*all_frames[25:]))
    assert len(rec.sent) == 1  # the rest of that utterance is dropped quietly


async def test_new_start_supersedes_an_open_utterance(rec: Recorder, vad: SileroVad) -> None:
    svc = service(rec, vad)
    await svc.handle_batch(batch(
        UtteranceStart(device_id="d", utterance_id="u1", sample_rate_hz=16000),
        AudioFrame(device_id="d", utterance_id="u1", seq=0, pcm=bytes(640),
                   sample_rate_hz=16000, audio_ms=0),
        UtteranceStart(device_id="d", utterance_id="u2", sample_rate_hz=16000),
    ))
    assert rec.kinds() == [("error", "superseded")]
    assert svc.sessions["d"].utterance_id == "u2"


async def test_a_stopped_utterance_and_the_next_start_in_one_batch_are_both_kept(
        rec: Recorder, vad: SileroVad, speech: dict[str, Path]) -> None:
    # A backlog (a worker catching up) hands a device's stop and its next start over
    # in one batch: the first utterance is decided from its own audio, not superseded.
    pcm, rate = read_wav(speech["whole"])
    svc = service(rec, vad)
    body = list(frames("d", "u1", pcm + bytes(rate * 2), rate))
    await svc.handle_batch(batch(
        UtteranceStart(device_id="d", utterance_id="u1", sample_rate_hz=rate), *body,
        UtteranceStop(device_id="d", utterance_id="u1", last_seq=body[-1].seq),
        UtteranceStart(device_id="d", utterance_id="u2", sample_rate_hz=rate),
    ))
    assert rec.kinds() == [("endpoint", "speculative"), ("endpoint", "final")]
    assert svc.sessions["d"].utterance_id == "u2"


async def test_open_utterances_are_bounded(rec: Recorder, vad: SileroVad) -> None:
    svc = service(rec, vad, max_open_utterances=2)
    await svc.handle_batch(batch(*[
        UtteranceStart(device_id=f"d{i}", utterance_id=f"u{i}", sample_rate_hz=16000)
        for i in range(3)]))
    assert rec.kinds() == [("dead-letter", "too-many-utterances"),
                           ("error", "too-many-utterances")]
    assert len(svc.sessions) == 2


async def test_idle_utterance_times_out(rec: Recorder, vad: SileroVad) -> None:
    svc = service(rec, vad, utterance_idle_timeout_s=5.0)
    await svc.handle_batch(batch(
        UtteranceStart(device_id="d", utterance_id="u1", sample_rate_hz=16000)))
    last_seen = svc.sessions["d"].last_seen
    await svc.expire(now=last_seen + 1)
    assert rec.kinds() == []
    await svc.expire(now=last_seen + 6)
    assert rec.kinds() == [("error", "stream-timeout")]
    assert svc.sessions == {}


async def test_batches_of_several_devices_match_one_by_one(
        vad: SileroVad, speech: dict[str, Path]) -> None:
    pcm, rate = read_wav(speech["paused"])
    devices = ["a", "b", "c"]
    streams = {d: [UtteranceStart(device_id=d, utterance_id=f"u-{d}", sample_rate_hz=rate),
                   *frames(d, f"u-{d}", pcm + bytes(rate * 4), rate)] for d in devices}
    together, alone = Recorder(), Recorder()
    svc = EndpointerService(Settings(), together, vad=vad)
    interleaved = [m for group in zip(*streams.values(), strict=True) for m in group]
    for i in range(0, len(interleaved), 30):
        await svc.handle_batch(batch(*interleaved[i:i + 30]))
    for d in devices:
        svc1 = EndpointerService(Settings(), alone, vad=vad)
        for m in streams[d]:
            await svc1.handle_batch(batch(m))
    key = lambda m: (m.utterance_id, m.to_wire().get("t_ms"))  # noqa: E731
    assert sorted((m for _, m in together.sent), key=key) == \
        sorted((m for _, m in alone.sent), key=key)
    assert len(together.sent) == 3 * 4  # speculative, reset, speculative, final each


async def test_stop_after_final_is_quiet(rec: Recorder, vad: SileroVad,
                                         speech: dict[str, Path]) -> None:
    pcm, rate = read_wav(speech["whole"])
    svc = service(rec, vad)
    msgs = [UtteranceStart(device_id="d", utterance_id="u", sample_rate_hz=rate),
            *frames("d", "u", pcm + bytes(rate * 4), rate)]
    await svc.handle_batch(batch(*msgs, UtteranceStop(device_id="d", utterance_id="u",
                                                      last_seq=len(msgs) - 2)))
    assert rec.kinds() == [("endpoint", "speculative"), ("endpoint", "final")]
    assert svc.sessions == {}


class FakeAudioLog:
    """The audio topic as a list: what :class:`agents.recovery.AudioLog` reads back."""

    def __init__(self) -> None:
        self.records: list[tuple[Origin, bytes | None]] = []
        self.reads = 0

    async def read(self, partition: int, start: int, end: int | None, key: bytes
                   ) -> list[tuple[Origin, bytes | None]]:
        self.reads += 1
        return [(o, v) for o, v in self.records if o.partition == partition and o.key == key
                and start <= o.offset and (end is None or o.offset < end)]


async def test_moved_utterance_is_carried_on_from_its_audio(
        vad: SileroVad, speech: dict[str, Path]) -> None:
    pcm, rate = read_wav(speech["whole"])
    records = batch(UtteranceStart(device_id="d", utterance_id="u1", sample_rate_hz=rate),
                    *frames("d", "u1", pcm + bytes(rate * 2), rate))
    alone = Recorder()
    await EndpointerService(Settings(), alone, vad=vad).handle_batch(records)
    log = FakeAudioLog()
    log.records = records
    ledger = Ledger()
    old, new = Recorder(), Recorder()
    await EndpointerService(Settings(), old, vad=vad, ledger=ledger).handle_batch(records[:30])
    entry = ledger.table["u1"]
    assert entry["open"] is True and entry["offset"] == records[0][0].offset
    # The partition moves: a new worker, the same ledger, none of the audio state.
    second = EndpointerService(Settings(), new, vad=vad, ledger=ledger,
                               audio_log=log)  # type: ignore[arg-type]
    await second.handle_batch(records[30:])
    assert log.reads == 1 and second.recovered == 1
    # The new worker makes every decision the single worker made, and no error.
    assert new.kinds() == alone.kinds()
    assert [m for _, m in new.sent] == [m for _, m in alone.sent]
    assert ("endpoint", "final") in new.kinds()
    # Records re-delivered after the move (below what it processed) are skipped quietly.
    await second.handle_batch(records[40:50])
    assert new.kinds() == alone.kinds()


@pytest.mark.parametrize("resume_at", [0, 40])
async def test_records_of_a_decided_utterance_re_delivered_after_a_move_are_skipped(
        vad: SileroVad, speech: dict[str, Path], resume_at: int) -> None:
    # The old owner decided u1 but died before committing: the new owner receives
    # its records again, from the start (0) or from mid-utterance (40).
    pcm, rate = read_wav(speech["whole"])
    records = batch(UtteranceStart(device_id="d", utterance_id="u1", sample_rate_hz=rate),
                    *frames("d", "u1", pcm + bytes(rate * 2), rate),
                    UtteranceStop(device_id="d", utterance_id="u1", last_seq=0))
    ledger, old, new = Ledger(), Recorder(), Recorder()
    await EndpointerService(Settings(), old, vad=vad, ledger=ledger).handle_batch(records)
    assert ("endpoint", "final") in old.kinds() and ledger.table["u1"]["open"] is False
    second = EndpointerService(Settings(), new, vad=vad, ledger=ledger)
    await second.handle_batch(records[resume_at:])
    assert new.sent == []  # no decision twice, no dead letter blaming the device
    # The device itself re-using the id at a new offset is still refused.
    await second.handle_batch(batch(UtteranceStart(device_id="d", utterance_id="u1",
                                                   sample_rate_hz=rate)))
    assert new.kinds() == [("dead-letter", "duplicate-start")]


def signed(key: bytes | None, *messages: Message, record_key: bytes | None = None
           ) -> list[tuple[Origin, bytes | None]]:
    """Records signed with ``key`` (None: unsigned), keyed by ``record_key`` or the device."""
    from streams.identity import sign

    out: list[tuple[Origin, bytes | None]] = []
    for m in messages:
        rkey = record_key if record_key is not None else m.device_id.encode()  # type: ignore[attr-defined]
        value = encode(m, Codec.MSGPACK)
        sig = sign(key, "audio", rkey, value) if key is not None else None
        out.append((Origin(AUDIO, 0, next(_offsets), rkey, sig), value))
    return out


async def test_a_device_speaks_only_for_itself(rec: Recorder, vad: SileroVad,
                                               tmp_path: Path) -> None:
    from streams.identity import device_key, new_master_key

    master = new_master_key(tmp_path / "master.key")
    svc = service(rec, vad, device_keys_file=str(tmp_path / "master.key"))
    victim, attacker = device_key(master, "victim"), device_key(master, "attacker")

    def start(utt: str) -> UtteranceStart:
        return UtteranceStart(device_id="victim", utterance_id=utt, sample_rate_hz=16000)

    # Keyed by the attacker, the payload claiming the victim (signed by the attacker).
    await svc.handle_batch(signed(attacker, start("u1"), record_key=b"attacker"))
    # Keyed as the victim: unsigned, then signed with the attacker's own key.
    await svc.handle_batch(signed(None, start("u2")))
    await svc.handle_batch(signed(attacker, start("u3")))
    # The victim's record with a valid signature but another value (replayed header).
    copied = signed(victim, start("u4"))[0][0]
    await svc.handle_batch([(copied, encode(start("u5"), Codec.MSGPACK))])
    assert rec.kinds() == [("dead-letter", "device-mismatch")] + \
        [("dead-letter", "device-unauthenticated")] * 3
    assert not svc.sessions  # nothing of them opened an utterance
    letters = [m for _, m in rec.sent if isinstance(m, DeadLetter)]
    assert all(letter.size_bytes > 0 and not letter.device_id for letter in letters)
    # The victim's own signed record is taken.
    await svc.handle_batch(signed(victim, start("u4")))
    assert [s.utterance_id for s in svc.sessions.values()] == ["u4"]
    assert len(rec.sent) == 4


async def test_without_a_master_key_the_key_must_still_match(rec: Recorder,
                                                             vad: SileroVad) -> None:
    svc = service(rec, vad)
    start = UtteranceStart(device_id="victim", utterance_id="u1", sample_rate_hz=16000)
    await svc.handle_batch(signed(None, start, record_key=b"attacker"))
    await svc.handle_batch(signed(None, start, record_key=b""))
    assert rec.kinds() == [("dead-letter", "device-mismatch")] * 2
    await svc.handle_batch(signed(None, start))
    assert "victim" in svc.sessions


async def test_a_draining_worker_finishes_open_utterances_and_leaves_new_ones(
        rec: Recorder, vad: SileroVad, speech: dict[str, Path]) -> None:
    pcm, rate = read_wav(speech["whole"])
    svc = service(rec, vad)
    open_frames = list(frames("a", "ua", pcm + bytes(rate * 2), rate))
    await svc.handle_batch(batch(UtteranceStart(device_id="a", utterance_id="ua",
                                                sample_rate_hz=rate), *open_frames[:10]))
    assert svc.busy() == 1
    svc.drain()
    new = batch(UtteranceStart(device_id="b", utterance_id="ub", sample_rate_hz=rate),
                *frames("b", "ub", pcm, rate))
    await svc.handle_batch(new)
    # The new utterance is left whole to the next owner: its start held unacknowledged
    # (the commit stays below it), its frames ignored without a dead letter.
    assert svc.held == {(new[0][0].partition, new[0][0].offset)}
    assert "b" not in svc.sessions and rec.kinds() == []
    # The open one goes on to its final end-point, and then nothing is busy.
    await svc.handle_batch(batch(*open_frames[10:]))
    assert rec.kinds() == [("endpoint", "speculative"), ("endpoint", "final")]
    assert svc.busy() == 0


def _bad_streams(rate: int) -> dict[str, list[Message]]:
    """Devices that send gaps, absurd sequence numbers, or records that break a stage."""
    def f(dev: str, seq: int, audio_ms: int) -> AudioFrame:
        return AudioFrame(device_id=dev, utterance_id=f"u-{dev}", seq=seq,
                          pcm=bytes(rate // 50 * 2), sample_rate_hz=rate, audio_ms=audio_ms)

    def start(dev: str) -> UtteranceStart:
        return UtteranceStart(device_id=dev, utterance_id=f"u-{dev}", sample_rate_hz=rate)

    return {
        "gaps": [start("gaps"), *[f("gaps", s, s * 30) for s in (0, 100, 200, 300)],
                 UtteranceStop(device_id="gaps", utterance_id="u-gaps", last_seq=300)],
        "huge-seq": [start("huge-seq"), f("huge-seq", 0, 0), f("huge-seq", 5 * 10**8, 10**9),
                     f("huge-seq", 10**18, 10**12)],
        "breaks": [start("breaks"), f("breaks", 0, 0), f("breaks", 1, 20)],
    }


@pytest.mark.parametrize("bad", ["gaps", "huge-seq", "breaks"])
async def test_a_bad_device_beside_a_good_one_touches_only_its_own_utterance(
        vad: SileroVad, speech: dict[str, Path], bad: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pcm, rate = read_wav(speech["paused"])
    good = [UtteranceStart(device_id="good", utterance_id="u-good", sample_rate_hz=rate),
            *frames("good", "u-good", pcm + bytes(rate * 4), rate)]
    alone, beside = Recorder(), Recorder()
    svc = EndpointerService(Settings(), alone, vad=vad)
    for i in range(0, len(good), 16):
        await svc.handle_batch(batch(*good[i:i + 16]))

    from agents import endpointing

    push = endpointing.FrameAssembler.push

    def breaking(self: endpointing.FrameAssembler, frame: AudioFrame) -> object:
        if frame.device_id == "breaks" and frame.seq == 1:
            raise RuntimeError("a bug that only this device's record finds")
        return push(self, frame)

    monkeypatch.setattr(endpointing.FrameAssembler, "push", breaking)
    svc = EndpointerService(Settings(), beside, vad=vad)
    bad_msgs = _bad_streams(rate)[bad]
    # The bad device's records sit in the same batches as the good device's.
    mixed: list[Message] = []
    for i, m in enumerate(good):
        mixed.append(m)
        if i % 8 == 1 and bad_msgs:
            mixed.append(bad_msgs.pop(0))
    for i in range(0, len(mixed), 16):
        await svc.handle_batch(batch(*mixed[i:i + 16]))

    mine = [m for _, m in beside.sent if getattr(m, "device_id", "") == "good"]
    assert mine == [m for _, m in alone.sent]
    assert not [m for _, m in beside.sent if isinstance(m, DeadLetter) and
                m.key == "good"]
    theirs = [m for _, m in beside.sent if getattr(m, "device_id", "") == bad or
              getattr(m, "key", "") == bad]
    if bad == "breaks":
        assert ("dead-letter", "internal-error") in [
            (m.TYPE.value, m.code) for m in theirs if isinstance(m, DeadLetter)]
        errors = [m for m in theirs if isinstance(m, ErrorEvent)]
        assert [e.code for e in errors] == ["internal-error"]
        assert "breaks" not in svc.sessions
    else:
        # Its own utterance ends (a gap-filled no-speech, or still open), uncrashed.
        assert all(not isinstance(m, DeadLetter) or m.code == "duplicate-frame"
                   for m in theirs)


# --- semantic final end-pointing: the transcripts topic ------------------------------

TRANSCRIPTS = "voicestream.transcripts"


def transcript_record(spec: Endpoint, text: str, *, revision: int | None = None,
                      partition: int = 0, language: str = "en"
                      ) -> list[tuple[Origin, bytes | None]]:
    """The ASR's speculative transcript of ``spec`` as a transcripts-topic record."""
    t = Transcript(device_id=spec.device_id, utterance_id=spec.utterance_id,
                   kind=EndpointKind.SPECULATIVE,
                   revision=spec.revision if revision is None else revision,
                   at_ms=spec.at_ms, t_ms=spec.t_ms, engine="test",
                   nbest=(NBest(text=text, score=0.0),), language=language)
    return [(Origin(TRANSCRIPTS, partition, next(_offsets), spec.device_id.encode()),
             encode(t, topics.TRANSCRIPTS.codec))]


async def until_speculative(svc: EndpointerService, rec: Recorder, pcm: bytes,
                            rate: int) -> tuple[Endpoint, list[AudioFrame]]:
    """Feed frames one by one until the speculative end-point; return it and the rest."""
    await svc.handle_batch(batch(UtteranceStart(device_id="d", utterance_id="u",
                                                sample_rate_hz=rate)))
    rest = list(frames("d", "u", pcm + bytes(rate * 4), rate))
    while rest:
        await svc.handle_batch(batch(rest.pop(0)))
        specs = [m for _, m in rec.sent if isinstance(m, Endpoint)]
        if specs:
            assert specs[0].kind is EndpointKind.SPECULATIVE
            return specs[0], rest
    raise AssertionError("no speculative end-point")


def semantic(rec: Recorder, vad: SileroVad, on: bool = True) -> EndpointerService:
    return service(rec, vad, endpointer=EndpointerConfig(semantic=on))


async def test_complete_transcript_confirms_the_final_at_once(
        rec: Recorder, vad: SileroVad, speech: dict[str, Path]) -> None:
    pcm, rate = read_wav(speech["whole"])
    svc = semantic(rec, vad)
    spec, rest = await until_speculative(svc, rec, pcm, rate)
    for _ in range(5):  # the transcript arrives ~100 ms of audio later
        await svc.handle_batch(batch(rest.pop(0)))
    await svc.on_transcript(*transcript_record(spec, "what is the weather like today")[0])
    assert rec.kinds() == [("endpoint", "speculative"), ("endpoint", "final")]
    final = rec.sent[-1][1]
    assert isinstance(final, Endpoint) and final.revision == 0
    assert final.t_ms - final.at_ms < svc.settings.endpointer.final_silence_ms
    assert rec.partitions[-1] == 0  # co-partitioned with its input
    await svc.handle_batch(batch(*rest))
    assert rec.kinds() == [("endpoint", "speculative"), ("endpoint", "final")]


async def test_incomplete_transcript_waits_the_full_silence(
        rec: Recorder, vad: SileroVad, speech: dict[str, Path]) -> None:
    pcm, rate = read_wav(speech["whole"])
    svc = semantic(rec, vad)
    spec, rest = await until_speculative(svc, rec, pcm, rate)
    await svc.on_transcript(*transcript_record(spec, "set a timer for")[0])
    assert rec.kinds() == [("endpoint", "speculative")]
    await svc.handle_batch(batch(*rest))
    final = rec.sent[-1][1]
    assert isinstance(final, Endpoint) and final.kind is EndpointKind.FINAL
    assert final.t_ms - final.at_ms >= svc.settings.endpointer.final_silence_ms


async def test_another_language_s_transcript_waits_the_full_silence(
        rec: Recorder, vad: SileroVad, speech: dict[str, Path]) -> None:
    # The end-of-turn model reads English; a complete German request is not judged by it.
    pcm, rate = read_wav(speech["whole"])
    svc = semantic(rec, vad)
    spec, rest = await until_speculative(svc, rec, pcm, rate)
    await svc.on_transcript(*transcript_record(spec, "wie wird das wetter heute",
                                               language="de")[0])
    assert rec.kinds() == [("endpoint", "speculative")]
    await svc.handle_batch(batch(*rest))
    final = rec.sent[-1][1]
    assert isinstance(final, Endpoint) and final.kind is EndpointKind.FINAL
    assert final.t_ms - final.at_ms >= svc.settings.endpointer.final_silence_ms


async def test_transcript_of_a_cancelled_revision_or_fixed_mode_is_ignored(
        rec: Recorder, vad: SileroVad, speech: dict[str, Path]) -> None:
    pcm, rate = read_wav(speech["whole"])
    svc = semantic(rec, vad)
    spec, _ = await until_speculative(svc, rec, pcm, rate)
    await svc.on_transcript(*transcript_record(spec, "what is the weather like today",
                                               revision=spec.revision + 1)[0])
    await svc.on_transcript(*transcript_record(spec, "what is the weather like today",
                                               partition=1)[0])
    assert rec.kinds() == [("endpoint", "speculative")]
    fixed_rec = Recorder()
    fixed = semantic(fixed_rec, vad, on=False)
    assert fixed.turn is None
    spec, _ = await until_speculative(fixed, fixed_rec, pcm, rate)
    await fixed.on_transcript(*transcript_record(spec, "what is the weather like today")[0])
    assert fixed_rec.kinds() == [("endpoint", "speculative")]


async def test_reset_then_stale_transcript_cannot_confirm_the_new_revision(
        rec: Recorder, vad: SileroVad, speech: dict[str, Path]) -> None:
    pcm, rate = read_wav(speech["paused"])  # "set a timer" 400 ms "for ten minutes"
    svc = semantic(rec, vad)
    spec, rest = await until_speculative(svc, rec, pcm, rate)
    while rest and not any(isinstance(m, Reset) for _, m in rec.sent):
        await svc.handle_batch(batch(rest.pop(0)))
    assert ("reset", "") in rec.kinds()
    await svc.on_transcript(*transcript_record(spec, "what is the weather like today")[0])
    assert ("endpoint", "final") not in rec.kinds()
    await svc.handle_batch(batch(*rest))
    finals = [m for _, m in rec.sent if isinstance(m, Endpoint) and m.kind is EndpointKind.FINAL]
    assert [f.revision for f in finals] == [1]


# --- semantic final end-pointing: the interpretation's confidence ------------------

INTERPRETATIONS = "voicestream.interpretations"


def interpretation_record(spec: Endpoint, score: float, *, revision: int | None = None,
                          partition: int = 0) -> tuple[Origin, bytes | None]:
    """The NLU's speculative interpretation of ``spec``, its best hypothesis scored ``score``."""
    i = Interpretations(device_id=spec.device_id, utterance_id=spec.utterance_id,
                        kind=EndpointKind.SPECULATIVE,
                        revision=spec.revision if revision is None else revision,
                        t_ms=spec.t_ms, interpretations=(
                            Hypothesis(intent="alarm_set", score=score, text="x"),))
    return (Origin(INTERPRETATIONS, partition, next(_offsets), spec.device_id.encode()),
            encode(i, topics.INTERPRETATIONS.codec))


def nlu_led(rec: Recorder, vad: SileroVad) -> EndpointerService:
    """Semantic end-pointing that takes its score from the interpretation alone."""
    return service(rec, vad, endpointer=EndpointerConfig(semantic=True, nlu_weight=1.0))


async def past_speculative(svc: EndpointerService, rec: Recorder, wav: Path
                           ) -> tuple[Endpoint, list[AudioFrame]]:
    """The speculative end-point of ``wav``, and the frames after the 5 that follow it
    (about 100 ms of audio: when its transcript would come)."""
    pcm, rate = read_wav(wav)
    spec, rest = await until_speculative(svc, rec, pcm, rate)
    for _ in range(5):
        await svc.handle_batch(batch(rest.pop(0)))
    return spec, rest


async def test_confident_interpretation_confirms_words_that_looked_unfinished(
        rec: Recorder, vad: SileroVad, speech: dict[str, Path]) -> None:
    svc = nlu_led(rec, vad)
    spec, _ = await past_speculative(svc, rec, speech["whole"])
    await svc.on_transcript(*transcript_record(spec, "set a timer for")[0])
    assert rec.kinds() == [("endpoint", "speculative")]  # the words alone: wait
    # Another partition's or another revision's interpretation changes nothing ...
    await svc.on_interpretation(*interpretation_record(spec, 0.99, partition=1))
    await svc.on_interpretation(*interpretation_record(spec, 0.99, revision=spec.revision + 1))
    assert rec.kinds() == [("endpoint", "speculative")]
    # ... the judged revision's, confident, confirms the final at once.
    await svc.on_interpretation(*interpretation_record(spec, 0.99))
    assert rec.kinds() == [("endpoint", "speculative"), ("endpoint", "final")]
    final = rec.sent[-1][1]
    assert isinstance(final, Endpoint)
    assert final.t_ms - final.at_ms < svc.settings.endpointer.final_silence_ms


async def test_unsure_interpretation_makes_complete_words_wait_longer(
        rec: Recorder, vad: SileroVad, speech: dict[str, Path]) -> None:
    pcm, rate = read_wav(speech["whole"])
    svc = nlu_led(rec, vad)
    spec, rest = await until_speculative(svc, rec, pcm, rate)
    await svc.on_transcript(*transcript_record(spec, "what is the weather like today")[0])
    await svc.on_interpretation(*interpretation_record(spec, 0.1))
    await svc.handle_batch(batch(*rest))
    finals = [m for _, m in rec.sent if isinstance(m, Endpoint) and m.kind is EndpointKind.FINAL]
    assert len(finals) == 1
    assert finals[0].t_ms - finals[0].at_ms >= svc.settings.endpointer.final_silence_ms


async def test_interpretation_without_judged_words_is_ignored(
        rec: Recorder, vad: SileroVad, speech: dict[str, Path]) -> None:
    svc = nlu_led(rec, vad)
    spec, _ = await past_speculative(svc, rec, speech["whole"])
    await svc.on_interpretation(*interpretation_record(spec, 0.99))
    await svc.on_interpretation(Origin(INTERPRETATIONS, 0, next(_offsets), b"d"), b"\x00junk")
    assert rec.kinds() == [("endpoint", "speculative")]
