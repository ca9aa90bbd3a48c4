"""Semantic final end-pointing in a running worker: it follows transcripts and interpretations.

``voicestream up --skills`` with ``endpointer.semantic`` and an NLU weight; a
bundled command streamed in real time. The end-pointer judges the speculative
transcript's words, then, when the speculative interpretation of the same
revision arrives before the final silence has passed, judges them again with
the interpretation's confidence. Both silences are raised to 3 s here (the
device's stop, 2 s of trailing silence later, ends the wait) so that on a
loaded machine, where a decode can take a second, the final still comes after
both (the logic of each judgement: tests/agents/test_endpointer_service.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from infra.demo import audio_path
from infra.process import Process
from tests.conftest import VOICESTREAM, env_with, isolated

pytestmark = pytest.mark.broker


def test_the_end_pointer_reads_the_interpretation_s_confidence(
        tmp_path: Path, broker_kind: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("kafka_cluster").url if broker_kind == "kafka" else ""
    env = {**isolated(tmp_path, url), "VOICESTREAM_ENDPOINTER__SEMANTIC": "true",
           "VOICESTREAM_ENDPOINTER__NLU_WEIGHT": "0.2",
           "VOICESTREAM_ENDPOINTER__FINAL_SILENCE_MS": "3000",
           "VOICESTREAM_ENDPOINTER__SEMANTIC_MIN_SILENCE_MS": "3000"}
    worker = Process(["up", "--skills"], env_with(**env))
    try:
        broker = worker.wait_ready(180)
        # The first decode after a start can take seconds on a loaded machine: the
        # second command is the one looked at.
        for _ in range(2):
            run = subprocess.run([*VOICESTREAM, "send", str(audio_path("light_on.wav")),
                                  "--device", "kitchen-1", "--broker", broker, "--json"],
                                 capture_output=True, text=True, timeout=90,
                                 env=env_with(**env))
            assert run.returncode == 0, run.stderr[-2000:]
        events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        [directive] = [e for e in events if e["type"] == "directive"]
        utt = directive["utterance_id"]
        turns = [e for e in worker.events("turn") if e.get("utterance_id") == utt]
        trail = [line for line in worker.stderr if utt in line]
        # First the words alone, then the same revision with the NLU's confidence.
        assert turns and turns[0]["nlu_confidence"] is None, trail
        judged = [t for t in turns if t["nlu_confidence"] is not None]
        assert judged and 0.0 < float(judged[0]["nlu_confidence"]) <= 1.0, turns
        assert judged[0]["revision"] == turns[0]["revision"]
        assert "silence_ms" in judged[0] and "words" not in judged[0]  # never the words
    finally:
        code = worker.stop()
        worker.kill()
    assert code == 0, "\n".join(worker.stderr[-20:])
