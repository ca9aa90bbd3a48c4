"""py-spy samples summarised: areas, thread roles, busy shares and the named bottleneck."""

from __future__ import annotations

from infra.profiling import RATE_HZ, bottleneck, summarise

LOOP = "run (asyncio/runners.py:118);BaseEventLoop.run_forever (asyncio/base_events.py:607)"
POOL = "Thread._bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:83)"
RAW = [
    f"{LOOP};Agent._execute_actor (faust/agents/agent.py:698);loads (streams/codec.py:102) 30",
    f"{LOOP};Fetcher._fetch (aiokafka/consumer/fetcher.py:400) 10",
    f"{LOOP};EpollSelector.select (selectors.py:468) 20",
    f"{LOOP};Agent._execute_actor (faust/agents/agent.py:698) 40",
    f"{POOL};SileroVad.probabilities (models/vad.py:97);"
    "Session.run (onnxruntime/capi/onnxruntime_inference_collection.py:395) 25",
    f"{POOL};FrameAssembler._release (agents/endpointing.py:255) 5",
    "not a sample line",
]


def test_samples_go_to_the_innermost_frame_s_area_and_thread_role() -> None:
    p = summarise(RAW)
    assert p["samples"] == 130
    assert p["areas"]["model inference (onnxruntime)"] == round(25 / 130, 3)
    # A stage's own frame counts as the stage; decoding called by Faust as decoding.
    assert p["areas"]["message decoding (streams.codec / schema)"] == round(30 / 130, 3)
    assert p["areas"]["Faust streams and agents"] == round(40 / 130, 3)
    assert p["areas"]["stages (agents/, models/)"] == round(5 / 130, 3)
    assert p["threads"] == {"event loop (main thread)": round(100 / 130, 3),
                            "VAD thread (end-pointer)": round(25 / 130, 3),
                            "other executor threads": round(5 / 130, 3)}
    assert "busy" not in p


def test_the_bottleneck_is_the_busiest_thread_and_its_busiest_non_waiting_area() -> None:
    wall = 100 / RATE_HZ  # the loop was sampled in every sample of the run
    p = summarise(RAW, wall)
    # Waiting in select (20 of the loop's 100 samples) is not busy.
    assert p["busy"] == {"event loop (main thread)": 0.8, "VAD thread (end-pointer)": 0.25,
                         "other executor threads": 0.05}
    assert bottleneck(p) == "event loop (main thread) busy 80%, most in Faust streams " \
                            "and agents (40%)"
    assert bottleneck(summarise([])) is None
