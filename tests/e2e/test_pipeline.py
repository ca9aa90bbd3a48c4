"""The whole pipeline through the CLI: context changes meaning, gating, skills, restarts."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.demo import audio_path
from streams import topics
from streams.client import EventWatcher
from streams.codec import Codec, encode
from streams.directive import Directive, ResponseStatus, SkillResponse
from tests.conftest import VOICESTREAM, connection, env_with, send

pytestmark = pytest.mark.broker


def context(broker: str, device: str, *pairs: str) -> None:
    args = [a for p in pairs for a in ("--set", p)]
    run = subprocess.run([*VOICESTREAM, "context", "--device", device, "--broker", broker,
                          *args], capture_output=True, text=True, timeout=60, env=env_with())
    assert run.returncode == 0, run.stderr


def decision(events: list[dict[str, object]]) -> dict[str, object]:
    [d] = [e for e in events if e["type"] in ("directive", "declined")]
    return d


def final_interpretation(events: list[dict[str, object]]) -> dict[str, object]:
    [i] = [e for e in events if e["type"] == "interpretation" and e["kind"] == "final"]
    return i


def test_same_audio_in_different_context_means_different_things(stack: str) -> None:
    context(stack, "ctx-oven", "states.oven=on", "states.oven_temperature=180")
    context(stack, "ctx-screen", "has_screen=true")
    context(stack, "ctx-speaker", "has_screen=false")
    _, oven = send(stack, audio_path("temperature.wav"), "ctx-oven", "--fast")
    _, plain = send(stack, audio_path("temperature.wav"), "ctx-plain", "--fast")
    best = final_interpretation(oven)["interpretations"][0]  # type: ignore[index]
    assert best["intent"] == "iot_appliance_query" and "states.oven=on" in best["context"]
    assert decision(oven)["skill"] == "smart-home"
    answers = [e for e in oven if e["type"] == "skill-response" and e["status"] == "done"]
    assert answers and "180 degrees" in str(answers[0]["text"])
    assert final_interpretation(plain)["interpretations"][0]["intent"] == "weather_query"  # type: ignore[index]
    # No weather skill runs: a clear decline, not silence.
    assert decision(plain)["reason"] == "skill-unavailable"

    _, screen = send(stack, audio_path("hunger_games.wav"), "ctx-screen", "--fast")
    _, speaker = send(stack, audio_path("hunger_games.wav"), "ctx-speaker", "--fast")
    film, book = decision(screen), decision(speaker)
    assert (film["skill"], film["intent"]) == ("video", "play_video")
    assert (book["skill"], book["intent"]) == ("media", "play_audiobook")


@pytest.mark.parametrize("device", ["ctx-loop", "ctx-never-published"])
def test_smart_home_state_feeds_back_so_it_resolves(stack: str, device: str) -> None:
    if device == "ctx-loop":
        context(stack, device, "location=kitchen")
    _, on = send(stack, audio_path("light_on.wav"), device, "--fast")
    # The skill publishes its context update before its answer, and send returned
    # after the answer: the update is in the topic before the next request starts.
    assert decision(on)["skill"] == "smart-home"
    assert any(e["type"] == "skill-response" and e["status"] == "done" for e in on)
    _, off = send(stack, audio_path("turn_it_off.wav"), device, "--fast")
    d = decision(off)
    assert d["skill"] == "smart-home" and d["intent"] in ("iot_hue_lightoff", "iot_wemo_off")
    assert any(s["type"] == "device_type" and "light" in s["value"]  # type: ignore[index]
               for s in d["slots"])  # type: ignore[union-attr]
    assert any(str(c).startswith("states.kitchen") for c in d["context"])  # type: ignore[union-attr]


def test_paused_command_reaches_its_skill_once_for_the_confirmed_revision(stack: str) -> None:
    skill_topic = topics.TopicSpec("skill.timers", Codec.JSON, topics.Role.OUTPUT,
                                   topics.SKILL_DIRECTIVES.kinds)
    utt = f"gated-{time.time_ns()}"

    async def run() -> tuple[int, list[dict[str, object]], list[Directive]]:
        seen: list[Directive] = []
        async with EventWatcher(connection(stack), specs=[skill_topic]) as watch:
            loop = asyncio.get_running_loop()
            code, events = await loop.run_in_executor(None, lambda: send(
                stack, audio_path("alarm_paused.wav"), "gate-1", "--utterance", utt))
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                for r in await watch.records(timeout_ms=200):
                    from streams.codec import decode

                    m = decode(r.value or b"", Codec.JSON)
                    if isinstance(m, Directive) and m.utterance_id == utt:
                        seen.append(m)
        return code, events, seen

    code, events, on_topic = asyncio.run(run())
    assert code == 0
    assert [e["cancelled_revision"] for e in events if e["type"] == "reset"] == [0]
    [directive] = [e for e in events if e["type"] == "directive"]
    assert directive["revision"] == 1 and directive["directive_id"] == f"{utt}/1"
    assert [(d.revision, d.intent) for d in on_topic] == [(1, "alarm_set")]
    assert [(s.type, s.value) for s in on_topic[0].slots] == [("time", "07:30")]


def test_unknown_intent_is_declined_out_of_domain(stack: str, tmp_path: Path) -> None:
    from infra.eval_natural import synthesize
    from tests.conftest import _pad, write_wav

    # A natural voice (flite's slt): espeak-ng's robotic one at this rate was heard
    # right by one engine and not by another.
    wav = write_wav(tmp_path / "joke.wav", _pad(synthesize("tell me a joke about cats", "slt")))
    code, events = send(stack, wav, "ood-1", "--fast")
    assert code == 0
    d = decision(events)
    assert d["type"] == "declined" and d["reason"] == "out-of-domain"
    assert "general_joke" in str(d["detail"])


def test_malformed_registry_stops_the_worker_with_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "skills.toml"
    bad.write_text('[[skill]]\nname = "x"\nintents = ["play_music"]\ncolour = "red"\n')
    run = subprocess.run([*VOICESTREAM, "up"], capture_output=True, text=True, timeout=120,
                         env=env_with(VOICESTREAM_SKILLS_REGISTRY=str(bad)))
    assert run.returncode != 0
    assert "skills.toml: skill 'x'" in run.stderr or "unknown keys ['colour']" in run.stderr


def test_restarted_skill_does_not_act_twice(stack: str, tmp_path: Path) -> None:
    from aiokafka import AIOKafkaProducer

    bootstrap = connection(stack)
    acts = tmp_path / "acts.txt"
    directive = Directive(directive_id="restart-u/0", device_id="probe-1",
                          utterance_id="restart-u", revision=0, skill="restart-probe",
                          intent="iot_wemo_on")

    async def publish_twice() -> None:
        producer = AIOKafkaProducer(**bootstrap.producer())
        await producer.start()
        try:
            for _ in range(2):  # a redelivered duplicate, as after a producer retry
                await producer.send_and_wait("voicestream.skill.restart-probe",
                                             encode(directive, Codec.JSON), key=b"probe-1")
        finally:
            await producer.stop()

    def start(mode: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "tests.e2e.skill_proc", stack,
                                 str(acts), mode], stdout=subprocess.PIPE, text=True,
                                env=env_with())
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    async def make_topic() -> None:  # the probe's topic, as the registry would make it
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(**bootstrap.client())
        await admin.start()
        try:
            if "voicestream.skill.restart-probe" not in await admin.list_topics():
                await admin.create_topics([NewTopic("voicestream.skill.restart-probe", 1, 1)])
        finally:
            await admin.close()

    asyncio.run(make_topic())
    first = start("die")
    asyncio.run(publish_twice())
    assert first.wait(timeout=60) == -9  # killed itself inside the handler, after acting
    second = start("live")
    try:
        async def responses() -> list[SkillResponse]:
            out: list[SkillResponse] = []
            async with EventWatcher(bootstrap, specs=[topics.RESPONSES],
                                    from_beginning=True) as watch:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    for r in await watch.records(timeout_ms=200):
                        from streams.codec import decode

                        m = decode(r.value or b"", Codec.JSON)
                        if isinstance(m, SkillResponse) and m.directive_id == "restart-u/0":
                            out.append(m)
                    if any(m.status is ResponseStatus.INTERRUPTED for m in out):
                        break
            return out

        answers = asyncio.run(responses())
    finally:
        second.terminate()
        second.wait(timeout=30)
    assert acts.read_text().splitlines() == ["restart-u/0"]  # acted exactly once
    statuses = [m.status for m in answers]
    assert statuses[0] is ResponseStatus.ACCEPTED
    assert ResponseStatus.INTERRUPTED in statuses and ResponseStatus.DONE not in statuses
