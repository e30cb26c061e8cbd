"""Rebuilding a partition's producer and transaction state from its batches.

Two entry points, both run under the log's lock:

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

from strom.records.control import ABORT, marker_of
from strom.records.errors import InvalidRecordError
from strom.storage import producer_state
from strom.storage.producer_state import ProducerStateTable
from strom.storage.txn_index import AbortedTxn

log = logging.getLogger(__name__)

_MAX_MARKER_BYTES = 4096


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
            try:
                seg.txn_index.reset(entries)
                seg.txn_index.sync()  # trusted from now on, as any segment's
            except OSError as e:  # derived: kept in memory, the file fixed at close
                log.warning("%s: writing the transaction index of segment %d failed: %s",
                            plog.directory, seg.base_offset, e)
                seg.txn_index.entries = entries
                seg.txn_index.failed = True
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
    a snapshot at or before it (the log keeps one, see snapshot_producers),
    else from the log start. When the newest snapshot is past that point,
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
