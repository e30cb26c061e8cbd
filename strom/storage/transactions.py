"""A partition's transactions: the PartitionLog methods that serve them
(`PartitionTransactions`, mixed into PartitionLog), and rebuilding the
producer and transaction state from the log's batches.

Two rebuild entry points, both run under the log's lock:

- `load_producers`: the producer state table (producer_state.py) from the
  newest snapshot plus the batch headers after it; what the log builds on
  first use (the first producer batch, or the first read of the last
  stable offset after start-up).
- `rebuild`: the same, and along the way the `.txnindex` of every segment
  from the first one named on (txn_index.py): each ABORT marker that ends
  an open transaction is an entry of the segment holding it, with the
  transaction's first offset and the LSO right after the marker. The log
  calls it at load for the segments recovery re-read (an unclean stop)
  and those whose `.txnindex` is missing or fails its checks; it needs
  the state as of that segment's start, so it starts from a snapshot at
  or before it (else from the log start).

A marker's kind (COMMIT or ABORT) and coordinator epoch are in its one
record, so control batches are read whole (they are tiny; anything larger
than _MAX_MARKER_BYTES is not a marker the broker wrote and ends nothing).
An empty control batch (the cleaner emptied it) ends nothing, as in Kafka.
"""

import logging
import time
from bisect import bisect_left, bisect_right
from operator import attrgetter, itemgetter

from strom.records.control import ABORT, build_control_batch, marker_of
from strom.records.errors import InvalidRecordError
from strom.storage import producer_state
from strom.storage.errors import SuspectIndexError
from strom.storage.producer_state import ProducerStateTable
from strom.storage.txn_index import AbortedTxn

log = logging.getLogger(__name__)

_MAX_MARKER_BYTES = 4096
_LAST_OFFSET = attrgetter("last_offset")
_BASE_OFFSET = attrgetter("base_offset")
_SECOND = itemgetter(1)


class PartitionTransactions:
    """PartitionLog's transaction methods (a mixin: they use its lock,
    segments, producer state and append). Threads: as the log's."""

    def append_marker(self, producer_id: int, producer_epoch: int, commit: bool,
                      coordinator_epoch: int, now: int | None = None) :
        """Write the COMMIT or ABORT control batch that ends `producer_id`'s
        transaction in this partition (the transaction coordinator's
        WriteTxnMarkers). Raises InvalidProducerEpochError for an epoch below
        this partition's for the producer, CoordinatorFencedError for an
        older coordinator epoch (the log is unchanged). A marker with no
        transaction open is written all the same (a retry after a crash is
        harmless) and ends nothing."""
        with self._lock:
            table = self.producer_state
            table.check_marker(producer_id, producer_epoch, coordinator_epoch)
            timestamp = int(time.time() * 1000) if now is None else now
            batch = build_control_batch(producer_id, producer_epoch, commit, coordinator_epoch,
                                        timestamp)
            result = self.append(batch, validate=False, now=now)
            first = table.end_txn(producer_id, producer_epoch, coordinator_epoch, timestamp)
            if not commit and first >= 0:
                lso = table.first_unstable_offset
                self.active.txn_index.append(AbortedTxn(
                    producer_id, first, result.base_offset,
                    result.base_offset + 1 if lso is None else lso))
            return result

    def _open_transactions(self, positioned) -> list[int]:
        """Register the transactions the transactional batches about to be
        written open (append, under the lock); return their producer ids."""
        table = self._producers  # loaded by the check of these batches
        opened = []
        for _, h in positioned:
            pid = h.producer_id
            if pid >= 0 and h.attributes & 0x30 == 0x10 and pid not in table.ongoing:
                table.ongoing[pid] = h.base_offset
                opened.append(pid)
        return opened

    @property
    def last_stable_offset(self) -> int:
        """The first offset of the earliest open transaction, else the high
        watermark: read_committed readers see nothing at or past it. Read on
        every read_committed Fetch, so without the lock or a scan: the first
        open transaction is at the front of the producer table's `ongoing`
        (in offset order), and append registers a transaction there before
        the log end moves past its first batch, so reading the log end
        first and `ongoing` second never returns an offset past an open
        transaction's start. (A marker ends it after the write: the LSO
        lags the marker, never leads it.)"""
        end = self.segments[-1].next_offset
        table = self._producers
        if table is None:
            table = self.producer_state
        ongoing = table.ongoing
        if not ongoing:
            return end
        try:
            first = next(iter(ongoing.values()))
        except (RuntimeError, StopIteration):  # changed under us by another thread
            with self._lock:
                return self._locked_lso()
        # (retention may have deleted the start of an open transaction)
        start = self.log_start_offset
        return first if first >= start else start

    def _locked_lso(self) -> int:
        table = self.producer_state
        for first in table.ongoing.values():
            return max(first, self.log_start_offset)
        return self.log_end_offset

    def aborted_transactions(self, start_offset: int, end_offset: int) -> list[tuple[int, int]]:
        """(producer_id, first_offset) of the aborted transactions that hold
        offsets in [start_offset, end_offset), by first offset. Their
        markers are at or after `start_offset`, so the search starts at the
        segment holding it and stops at an entry whose LSO is past the range."""
        out = []
        with self._lock:
            segments = self.segments
            i = max(bisect_right(segments, start_offset, key=_BASE_OFFSET) - 1, 0)
            for seg in segments[i:]:
                entries = seg.txn_index.entries
                if not entries:
                    continue
                for k in range(bisect_left(entries, start_offset, key=_LAST_OFFSET), len(entries)):
                    e = entries[k]
                    if e.first_offset < end_offset:
                        out.append((e.producer_id, e.first_offset))
                    if e.last_stable_offset >= end_offset:
                        out.sort(key=_SECOND)
                        return out
        out.sort(key=_SECOND)
        return out

    def ongoing_transactions(self) -> dict[int, int]:
        """{producer_id: first offset} of the transactions open here."""
        with self._lock:
            return dict(self.producer_state.ongoing)

    def producers(self) -> list[dict]:
        """The producers this partition knows (DescribeProducers)."""
        with self._lock:
            return [
                {"producer_id": pid, "producer_epoch": e.epoch, "last_sequence": e.last_sequence,
                 "last_timestamp": e.last_timestamp, "coordinator_epoch": e.coordinator_epoch,
                 "current_txn_start_offset": e.current_txn_first_offset}
                for pid, e in sorted(self.producer_state.producers.items())
            ]

    def expire_producers(self, now: int, expiration_ms: int) -> int:
        """Forget producers idle for producer.id.expiration.ms with no open
        transaction (the maintenance pass). Returns how many went."""
        with self._lock:
            if self._closed or self._producers is None:
                return 0
            return self._producers.expire(now, expiration_ms)

    def _load_txn_index(self, seg, exists: bool) -> bool:
        """Load a trusted segment's `.txnindex`; False if it must be rebuilt."""
        if not exists:
            if seg.is_empty:
                return True  # nothing to index (an empty file is created with the segment)
            log.info("%s: segment %d has no transaction index: rebuilding it",
                     self.directory, seg.base_offset)
            return False
        try:
            seg.txn_index.load(seg.base_offset, seg.next_offset, seg.size)
            return True
        except (SuspectIndexError, OSError) as e:
            log.warning("%s: transaction index of segment %d: %s; rebuilding it",
                        self.directory, seg.base_offset, e)
            return False



def marker_at(seg, pos: int, header) -> tuple[int, int] | None:
    """(ABORT or COMMIT, coordinator_epoch) of the control batch at `pos`."""
    if not header.records_count or header.size > _MAX_MARKER_BYTES:
        return None
    try:
        return marker_of(seg.log_file.pread(pos, header.size))
    except InvalidRecordError as e:
        log.warning("%s: control batch at offset %d is not a transaction marker (%s): it ends "
                    "no transaction", seg.directory, header.base_offset, e)
        return None


def apply(table: ProducerStateTable, seg, pos: int, header) -> AbortedTxn | None:
    """Replay one batch into `table`; the index entry of an ABORT marker
    that ended an open transaction, else None."""
    pid = header.producer_id
    if pid < 0:
        return None
    if header.is_control:
        marker = marker_at(seg, pos, header)
        if marker is None:
            return None
        kind, coordinator_epoch = marker
        first = table.end_txn(pid, header.producer_epoch, coordinator_epoch, header.max_timestamp)
        if kind != ABORT or first < 0:
            return None
        lso = table.first_unstable_offset
        return AbortedTxn(pid, first, header.base_offset,
                          header.base_offset + 1 if lso is None else lso)
    if header.base_sequence >= 0 or header.is_transactional:
        table.update(header)
    return None


def _replay(plog, start: int, table: ProducerStateTable, rebuild_from: int | None = None,
            ) -> ProducerStateTable:
    """Apply the batches from offset `start` on to `table`; rebuild the
    `.txnindex` of the segments from index `rebuild_from` on."""
    for i, seg in enumerate(plog.segments):
        rebuilding = rebuild_from is not None and i >= rebuild_from
        if seg.next_offset <= start and not rebuilding:
            continue
        entries = []
        for pos, header in seg.headers():
            if header.base_offset >= start and header.producer_id >= 0:
                entry = apply(table, seg, pos, header)
                if entry is not None:
                    entries.append(entry)
        if rebuilding:
            # Trusted from now on, as any segment's; a failed write removes
            # the file (rebuilt again next time) and keeps `entries` serving.
            seg.txn_index.reset(entries)
            seg.txn_index.sync()
    return table


def load_producers(plog) -> ProducerStateTable:
    """The producer state at the log end: snapshot, then the batches after it."""
    loaded = producer_state.load_snapshot(plog.medium, plog.directory, plog.log_end_offset)
    start, table = loaded if loaded else (-1, ProducerStateTable())
    return _replay(plog, start, table)


def rebuild(plog, first: int) -> ProducerStateTable:
    """Rebuild the `.txnindex` of plog.segments[first:] and return the
    producer state at the log end.

    The index needs the open transactions as of that segment's start: from
    a snapshot at or before it (the log keeps one for each of its last few
    segments, PartitionLog._snapshot_bases), else from the log start. When
    the newest snapshot is past that point,
    the producer state returned is still built from it (it remembers
    producers whose segments retention deleted)."""
    base = plog.segments[first].base_offset
    newest = producer_state.load_snapshot(plog.medium, plog.directory, plog.log_end_offset)
    if newest is not None and newest[0] <= base:
        start, table = newest
    else:
        older = producer_state.load_snapshot(plog.medium, plog.directory, plog.log_end_offset,
                                             at_most=base)
        start, table = older if older else (-1, ProducerStateTable())
    table = _replay(plog, start, table, rebuild_from=first)
    log.info("%s: rebuilt the transaction index of %d segment(s) from offset %d (state from "
             "offset %d)", plog.directory, len(plog.segments) - first, base, start)
    if newest is not None and newest[0] > base:
        table = _replay(plog, newest[0], newest[1])
    return table
