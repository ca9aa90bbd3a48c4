"""Tables on disk: Faust's RocksDB store (rocksdict), writable outside a stream's event.

Faust's store puts a key into the RocksDB of the partition of the event being
processed, and asserts there is one. Our stages write their tables (the
utterance ledger, the device context) from their own batch handlers, and the
tables use the producer's partitioner for their changelogs, so here a write
without an event, or to a table that uses the partitioner, goes to the
partition its changelog record goes to: the producer's default partitioner
(murmur2 of the key bytes) over the table's partitions. A restart then finds
every key where the changelog's recovery would have put it, and reads only
the changelog written since its last persisted offset, not all of it.

Registered as the ``vsrocksdb://`` store (entry point ``faust.stores``);
selected with the ``table_store = "rocksdb"`` setting.
"""

from __future__ import annotations

from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from faust.stores import rocksdb
from faust.streams import current_event


class Store(rocksdb.Store):
    """RocksDB table storage whose writes need no current event."""

    def partition_for(self, key: bytes) -> int:
        """The partition a write of ``key`` belongs to (see the module)."""
        event = current_event()
        if event is not None and not self.table.use_partitioner:
            return int(event.message.partition)
        count = int(self.table.partitions or self.app.conf.topic_partitions)
        every = list(range(count))
        return int(DefaultPartitioner()(key, every, every))

    def _set(self, key: bytes, value: Any) -> None:
        partition = self.partition_for(key)
        self._key_index[key] = partition
        self._db_for_partition(partition).put(key, value)
