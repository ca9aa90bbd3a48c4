"""Semantic final end-pointing in a running worker: it follows transcripts and interpretations.

``voicestream up --skills`` with ``endpointer.semantic`` and an NLU weight; a
bundled command streamed in real time. The end-pointer judges the speculative
transcript's words, then, when the speculative interpretation of the same
revision arrives before the final silence has passed, judges them again with
the interpretation's confidence. Both silences are raised to 4 s here, and the
device keeps its microphone open 6 s, so that on a loaded machine, where a
decode can take seconds, the final still comes after both (the logic of each
judgement: tests/agents/test_endpointer_service.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.demo import audio_path
from infra.process import Process
from streams.client import DeviceClient, EventWatcher, read_wav
from streams.directive import Directive
from tests.conftest import connection, env_with, isolated

pytestmark = pytest.mark.broker


async def test_the_end_pointer_reads_the_interpretation_s_confidence(
        tmp_path: Path, broker_kind: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("kafka_cluster").url if broker_kind == "kafka" else ""
    env = {**isolated(tmp_path, url), "VOICESTREAM_ENDPOINTER__SEMANTIC": "true",
           "VOICESTREAM_ENDPOINTER__NLU_WEIGHT": "0.2",
           "VOICESTREAM_ENDPOINTER__FINAL_SILENCE_MS": "4000",
           "VOICESTREAM_ENDPOINTER__SEMANTIC_MIN_SILENCE_MS": "4000"}
    worker = Process(["up", "--skills"], env_with(**env))
    try:
        conn = connection(worker.wait_ready(180))
        # The models load after 'ready': a first decode that waited for them would come
        # after both silences on a slow machine, and the end-pointer would judge nothing.
        assert worker.log_events("asr.warm", timeout_s=180), worker.stderr[-20:]
        prefix = env["VOICESTREAM_TOPIC_PREFIX"]
        pcm, rate = read_wav(audio_path("light_on.wav"))
        async with EventWatcher(conn, topic_prefix=prefix) as watch, \
                DeviceClient(conn, "kitchen-1", topic_prefix=prefix) as device:
            utt = await device.stream(pcm, rate, tail_ms=6000)
            outcome = await watch.outcome(utt, timeout_s=60)
        assert isinstance(outcome, Directive), outcome
        turns = [e for e in worker.events("turn") if e.get("utterance_id") == utt]
        trail = [line for line in worker.stderr if utt in line]
        # First the words alone, then the same revision with the NLU's confidence.
        assert turns and turns[0]["nlu_confidence"] is None, trail
        judged = [t for t in turns if t["nlu_confidence"] is not None]
        assert judged and 0.0 < float(judged[0]["nlu_confidence"]) <= 1.0, trail
        assert judged[0]["revision"] == turns[0]["revision"]
        assert "silence_ms" in judged[0] and "words" not in judged[0]  # never the words
    finally:
        code = worker.stop()
        worker.kill()
    assert code == 0, "\n".join(worker.stderr[-20:])
