"""The utterance ledger: per-utterance progress every worker reads."""

from __future__ import annotations

import time

from agents.ledger import RETENTION_S, Ledger


def test_an_entry_belongs_to_its_device_and_records_each_stage_once() -> None:
    ledger = Ledger()
    ledger.start("u1", "kitchen", 2, 40)
    assert ledger.get("u1", "intruder") is None
    assert not ledger.finished("u1", "kitchen", "asr")
    ledger.finish("u1", "kitchen", "asr", 2)
    ledger.finish("u1", "kitchen", "asr", 2)
    ledger.close("u1", "kitchen")
    entry = ledger.get("u1", "kitchen")
    assert entry is not None
    assert entry["done"] == ["asr"] and entry["open"] is False and entry["offset"] == 40
    # Another device cannot mark the utterance finished or close it.
    ledger.start("u2", "kitchen", 2, 41)
    ledger.close("u2", "intruder")
    assert ledger.table["u2"]["open"] is True


def test_a_stage_may_finish_an_utterance_the_end_pointer_never_recorded() -> None:
    ledger = Ledger()
    ledger.finish("u9", "hall", "arbiter", 1)
    assert ledger.finished("u9", "hall", "arbiter")
    assert not ledger.finished("u9", "hall", "nlu")


def test_prune_removes_old_entries_of_owned_partitions_only() -> None:
    ledger = Ledger()
    ledger.start("old-mine", "d", 0, 1)
    ledger.start("old-theirs", "d", 1, 1)
    ledger.start("new-mine", "d", 0, 2)
    for key in ("old-mine", "old-theirs"):
        ledger.table[key] = {**ledger.table[key], "at": 0.0}
    assert ledger.prune([0], now=RETENTION_S + 1.0) == 1
    assert sorted(ledger.table) == ["new-mine", "old-theirs"]


def test_undecided_utterances_are_those_no_outcome_ended_yet() -> None:
    ledger = Ledger()
    for utt, partition in (("ok", 0), ("eperr", 0), ("asrerr", 1), ("open", 1), ("away", 2)):
        ledger.start(utt, "d", partition, 0)
    ledger.finish("ok", "d", "asr", 0)
    ledger.finish("ok", "d", "arbiter", 0)
    ledger.close("eperr", "d", failed=True)
    ledger.finish("asrerr", "d", "asr", 1, failed=True)
    now = time.time()
    # An error is an outcome once the arbiter has published it (forwarded in band).
    assert ledger.unfinished([0, 1], within_s=30, now=now) == ["eperr", "asrerr", "open"]
    ledger.finish("eperr", "d", "arbiter", 0)
    ledger.finish("asrerr", "d", "arbiter", 1)
    assert ledger.unfinished([0, 1], within_s=30, now=now) == ["open"]
    assert ledger.unfinished([0, 1, 2], within_s=30, now=now) == ["open", "away"]
    assert ledger.unfinished([0, 1, 2], within_s=30, now=now + 60) == []  # abandoned
