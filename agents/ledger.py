"""The utterance ledger: what every worker knows about each recent utterance.

One entry per utterance id, in a table every worker reads whole (a Faust
global table, changelogged to Kafka): the device, the partition and offset of
its start on the audio topic, whether the end-pointer still has it open, and
which stages have finished it. It is what lets a partition move between
workers without losing or repeating an utterance:

- the new owner of an audio partition finds an open utterance's start offset
  and re-reads its audio (:mod:`agents.recovery`);
- records re-delivered after a move (everything after the old owner's last
  commit) are recognised as finished work by the stages that finished them,
  and skipped: each stage is an idempotent consumer.

Stages hold their Kafka acknowledgement of an utterance's input until they
have finished it, so the committed offset never passes work that a dying
worker still held; the ledger then stops the new owner from doing twice what
the old one did finish. Entries are kept for ``RETENTION_S`` and pruned by the
worker that owns their partition.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, MutableMapping
from typing import Any

#: How long a closed utterance's entry is kept; far beyond any re-delivery.
RETENTION_S = 600.0


class Ledger:
    """Per-utterance progress over a mapping (a global table in a worker, a dict in tests)."""

    def __init__(self, table: MutableMapping[str, Any] | None = None) -> None:
        self.table: MutableMapping[str, Any] = table if table is not None else {}

    def get(self, utterance_id: str, device_id: str) -> dict[str, Any] | None:
        """The utterance's entry, if it exists and belongs to ``device_id``."""
        entry = self.table.get(utterance_id)
        if not isinstance(entry, dict) or entry.get("device_id") != device_id:
            return None
        return entry

    def start(self, utterance_id: str, device_id: str, partition: int, offset: int) -> None:
        """Record an utterance's start (its audio begins at ``offset`` of ``partition``)."""
        self.table[utterance_id] = {"device_id": device_id, "partition": partition,
                                    "offset": offset, "open": True, "done": [],
                                    "at": time.time()}

    def close(self, utterance_id: str, device_id: str, *, failed: bool = False) -> None:
        """The end-pointer has decided the utterance: a final end-point, or an error
        (``failed``; later stages forward it to the arbiter as the outcome)."""
        entry = self.get(utterance_id, device_id)
        if entry is not None and entry["open"]:
            self.table[utterance_id] = {**entry, "open": False, "failed": failed,
                                        "at": time.time()}

    def unfinished(self, partitions: Iterable[int], within_s: float,
                   now: float | None = None) -> list[str]:
        """Utterances on ``partitions`` changed in the last ``within_s`` and not decided.

        Decided: the arbiter published its outcome (a decision, or the error with
        which an earlier stage ended the utterance, forwarded to it in band).
        """
        owned = set(partitions)
        cutoff = (time.time() if now is None else now) - within_s
        return [k for k, v in list(self.table.items()) if isinstance(v, dict)
                and v.get("partition") in owned and v.get("at", 0) >= cutoff
                and "arbiter" not in v.get("done", ())]

    def finish(self, utterance_id: str, device_id: str, stage: str, partition: int, *,
               failed: bool = False) -> None:
        """Record that ``stage`` has published its last word on the utterance.

        ``failed``: that word was an error event (forwarded in band to the arbiter).
        """
        entry = self.get(utterance_id, device_id) or {
            "device_id": device_id, "partition": partition, "offset": None, "open": False,
            "done": []}
        if stage not in entry["done"]:
            self.table[utterance_id] = {**entry, "done": [*entry["done"], stage],
                                        "failed": failed or bool(entry.get("failed")),
                                        "at": time.time()}

    def finished(self, utterance_id: str, device_id: str, stage: str) -> bool:
        """Whether ``stage`` already finished the utterance (on this worker or another)."""
        entry = self.get(utterance_id, device_id)
        return entry is not None and stage in entry["done"]

    def prune(self, partitions: Iterable[int], now: float | None = None) -> int:
        """Delete entries older than ``RETENTION_S`` on ``partitions``; return how many."""
        owned = set(partitions)
        cutoff = (time.time() if now is None else now) - RETENTION_S
        old = [k for k, v in list(self.table.items()) if isinstance(v, dict)
               and v.get("partition") in owned and v.get("at", 0) < cutoff]
        for key in old:
            del self.table[key]
        return len(old)

    def __len__(self) -> int:
        return len(self.table)
