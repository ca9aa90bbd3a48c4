"""The one-line descriptions ``send`` prints."""

from __future__ import annotations

from infra.trace import describe


def test_send_shows_a_language_other_than_english() -> None:
    event = {"type": "transcript", "kind": "final", "revision": 0, "compute_ms": 444.0,
             "nbest": [{"text": "打開廚房的燈"}], "language": "zh"}
    assert describe(event).endswith('"打開廚房的燈" (1-best, zh, 444 ms)')
    assert describe({**event, "language": "en"}).endswith("(1-best, 444 ms)")
