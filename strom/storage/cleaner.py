"""Log compaction: keep the latest record per key.

A pass over one PartitionLog whose topic has `cleanup.policy` containing
`compact`:
1. The cleanable range is the run of non-active segments from the log
   start whose newest record is older than `min.compaction.lag.ms` and that
   end at or below the last stable offset (Kafka's first uncleanable
   offset: nothing an open transaction may still abort is cleaned). The
   active segment is never cleaned.
2. Build the offset map: key -> latest offset, over the records below the
   first uncleanable offset, min(LSO, the active segment's base) as in
   Kafka, but for records of aborted transactions. A record at or past the
   LSO supersedes nothing: a read_committed reader does not see it yet, so
   the value before it must stay (plain records behind an open
   transaction included). And the last five batches of every producer (the
   idempotence window, producer_state.WINDOW) not idle for
   producer.id.expiration.ms.
3. Group consecutive cleanable segments whose sizes add up to at most
   `segment.bytes` (Kafka's groupSegmentsBySize), so cleaned segments that
   shrank are merged instead of piling up empty; rewrite each group into
   `<first base>.log.cleaned`, keeping a record if it is the latest for its
   key, or has no key (Kafka refuses keyless records on compacted topics;
   Strom keeps them), and dropping tombstones (null values) older than
   `delete.retention.ms`. Kept records keep their offsets (gaps are
   allowed); a rewritten batch keeps its codec, producer fields, timestamp
   type and `last_offset_delta` (Kafka's overrideLastOffset), so the
   sequence range a producer's batch covers is what it was.
   Transactions (Kafka's CleanedTransactionMetadata), walking the batches
   in offset order with the aborted transactions of the `.txnindex` files:
   a data batch of an aborted transaction loses all its records; one of a
   committed transaction is compacted like any other. A marker stays while
   any batch of its transaction is still in the log (read in this pass);
   after that it is removable, and removed once `delete.retention.ms` has
   passed since a pass first found it so: that pass stamps the time in the
   batch, as Kafka does (attribute bit 6, the delete horizon in the base
   timestamp). The cleaned segment's `.txnindex` keeps the entries of the
   ABORT markers that stay for their data.
4. A batch left with no record is still written, as a header with no
   records, when it is one of its producer's last five (Kafka's
   retainLastBatchSequence keeps one; five make the producer state rebuilt
   at load exactly the one before the restart, so any retry in flight is
   recognised) or the group's last batch (the cleaned segment then ends
   where the group ended: offsets stay addressable and a crash mid-swap is
   finished by deleting what the swap covers).
5. Swap it in: `.cleaned` -> `.swap` -> `.log` (PartitionLog.replace_segments);
   a crash mid-way is finished or rolled back at load, and the first
   segment's `.txnindex` is rebuilt then.

Runs on the maintenance thread; the log's lock is held only for the swap.
"""

import logging
import struct
from collections import deque

from strom.records.batch import BATCH_HEADER_SIZE, LOG_OVERHEAD, batch_records, build_batch, crc32c
from strom.records.codecs import MAX_DECOMPRESSED_BYTES
from strom.records.control import ABORT
from strom.storage import files
from strom.storage.log import PartitionLog, now_ms
from strom.storage.producer_state import WINDOW
from strom.storage.transactions import marker_at

log = logging.getLogger(__name__)


# A producer that wrote nothing for this long is forgotten by the cleaner
# (Kafka's producer.id.expiration.ms): its last batches are no longer kept.
PRODUCER_ID_EXPIRATION_MS = 86_400_000
_DELETE_HORIZON = 0x40  # batch attribute: base_timestamp holds the delete horizon
# Merging passes over the cleaned segments, each over fewer, smaller ones.
_MERGE_PASSES = 8


class _TxnWalk:
    """The transactions met walking batches in offset order (Kafka's
    CleanedTransactionMetadata): which data batches are aborted, which
    markers still have data of their transaction behind them."""

    def __init__(self, aborted: list, start: int):
        # aborted transactions still running at `start`, by first offset
        self._pending = sorted((e for e in aborted if e.last_offset >= start),
                               key=lambda e: e.first_offset)
        self._next = 0
        self._aborted: dict[int, list] = {}  # pid -> [entry, data batch seen]
        self._committed: set[int] = set()  # pids with data of an open/committed txn seen

    def _consume(self, offset: int) -> None:
        pending = self._pending
        while self._next < len(pending) and pending[self._next].first_offset <= offset:
            e = pending[self._next]
            self._aborted.setdefault(e.producer_id, [e, False])
            self._next += 1

    def data(self, header) -> bool:
        """A data batch: True if it belongs to an aborted transaction."""
        self._consume(header.last_offset)
        if not header.is_transactional:
            return False
        state = self._aborted.get(header.producer_id)
        if state is not None:
            state[1] = True
            return True
        self._committed.add(header.producer_id)
        return False

    def marker(self, kind: int | None, header):
        """A control batch: (removable, the index entry to keep or None)."""
        self._consume(header.last_offset)
        pid = header.producer_id
        if kind is None:
            return True, None  # emptied earlier, or no marker: ends nothing
        if kind == ABORT:
            state = self._aborted.pop(pid, None)
            if state is not None and state[1]:
                return False, state[0]
            return True, None
        if pid in self._committed:
            self._committed.discard(pid)
            return False, None
        return True, None


def clean(plog: PartitionLog, now: int | None = None,
          producer_id_expiration_ms: int = PRODUCER_ID_EXPIRATION_MS) -> int:
    """Compact `plog` once; return the number of records removed."""
    now = now_ms() if now is None else now
    cfg = plog.config
    lso = plog.last_stable_offset
    segments = plog.segments_snapshot()
    cleanable = _cleanable(segments, now - cfg.min_compaction_lag_ms, lso)
    if not any(not s.is_empty for s in cleanable):
        return 0
    limit = max(MAX_DECOMPRESSED_BYTES, cfg.max_message_bytes)  # as append allowed
    aborted = [e for seg in segments for e in seg.txn_index.entries]
    latest: dict[bytes, int] = {}
    last_batches: dict[int, deque] = {}
    walk = _TxnWalk(aborted, 0)
    uncleanable = min(lso, segments[-1].base_offset)
    for seg in segments:
        for pos, header, raw in seg.batches():
            if header.producer_id >= 0 and header.max_timestamp >= now - producer_id_expiration_ms:
                last_batches.setdefault(header.producer_id, deque(maxlen=WINDOW)).append(
                    header.base_offset)
            if header.is_control:
                marker = marker_at(seg, pos, header)
                walk.marker(marker and marker[0], header)
                continue
            if walk.data(header) or header.last_offset >= uncleanable:
                continue  # aborted, or not visible to read_committed yet: supersedes nothing
            for r in batch_records(raw, 0, limit):
                if r.key is not None:
                    latest[r.key] = r.offset
    retained = {base for bases in last_batches.values() for base in bases}
    removed = 0
    groups = _groups(segments, cleanable, cfg.segment_bytes)
    walk = _TxnWalk(aborted, groups[0][0].base_offset if groups else 0)
    for group in groups:
        removed += _clean_group(plog, group, latest, retained, now, walk)
    # Groups were sized by what the segments held before; what they hold now
    # is often far less, so merge the cleaned neighbours in the same pass.
    for _ in range(_MERGE_PASSES):
        segments = plog.segments_snapshot()
        cleanable = _cleanable(segments, now - cfg.min_compaction_lag_ms, lso)
        groups = _groups(segments, cleanable, cfg.segment_bytes)
        if not any(len(g) > 1 for g in groups):
            break
        aborted = [e for seg in segments for e in seg.txn_index.entries]
        walk = _TxnWalk(aborted, groups[0][0].base_offset)
        for group in groups:
            if len(group) == 1:  # walked (headers only), so markers see the data before them
                _walk_headers(group[0], walk)
            else:
                removed += _clean_group(plog, group, latest, retained, now, walk)
    return removed


def _walk_headers(seg, walk: _TxnWalk) -> None:
    for pos, header in seg.headers():
        if header.is_control:
            marker = marker_at(seg, pos, header)
            walk.marker(marker and marker[0], header)
        else:
            walk.data(header)


def _cleanable(segments, max_timestamp: int, lso: int) -> list:
    """The non-active segments from the start up to the first one too
    young (min.compaction.lag.ms) or reaching past the LSO."""
    out = []
    for seg in segments[:-1]:
        if seg.max_timestamp >= max_timestamp or seg.next_offset > lso:
            break
        out.append(seg)
    return out


def _groups(segments, cleanable, max_bytes: int) -> list[list]:
    """Runs of adjacent cleanable segments, each at most `max_bytes` and
    2**31 offsets long (relative offsets in the indexes are 32-bit)."""
    ok = set(map(id, cleanable))
    groups, current, size = [], [], 0
    for seg in segments[:-1]:
        fits = (current and size + seg.size <= max_bytes
                and seg.next_offset - current[0].base_offset <= 0x7FFFFFFF)
        if id(seg) not in ok or not fits:
            if current:
                groups.append(current)
            current, size = [], 0
        if id(seg) in ok:
            current.append(seg)
            size += seg.size
    if current:
        groups.append(current)
    return groups


def _clean_group(plog: PartitionLog, group: list, latest: dict[bytes, int], retained: set[int],
                 now: int, walk: _TxnWalk) -> int:
    out: list[bytes] = []
    removed = 0
    changed = False
    kept_aborted = []  # `.txnindex` entries of the markers that stay
    final = None  # base offset of the group's last batch
    for seg in group:
        for _, header in seg.headers():
            final = header.base_offset
    cfg = plog.config
    for seg in group:
        for pos, header, raw in seg.batches():
            if header.is_control:
                marker = marker_at(seg, pos, header)
                removable, entry = walk.marker(marker and marker[0], header)
                if entry is not None:
                    kept_aborted.append(entry)
                kept_raw = _clean_marker(cfg, header, raw, removable, now)
                dropped = 0
            elif walk.data(header):
                kept_raw, dropped = None, header.records_count  # an aborted transaction's
            else:
                kept_raw, dropped = _clean_batch(cfg, header, raw, latest, now)
            removed += dropped
            if kept_raw is None and (header.base_offset in retained or header.base_offset == final):
                kept_raw = raw if not header.records_count else empty_batch(header)
            if kept_raw is not raw:
                changed = True
            if kept_raw is not None:
                out.append(kept_raw)
    if not changed and len(group) == 1:
        return 0
    first = group[0]
    cleaned_path = first.path(files.LOG_SUFFIX + files.CLEANED_SUFFIX)
    plog.medium.remove(cleaned_path)
    f = plog.medium.open(cleaned_path)
    try:
        if out:
            f.append(out, sum(len(b) for b in out))
        f.sync()
    finally:
        f.close()
    plog.replace_segments(group, cleaned_path, aborted=kept_aborted)
    log.info("%s: compacted %d segment(s) from %d into one, removed %d records", plog.directory,
             len(group), first.base_offset, removed)
    return removed


def _clean_marker(cfg, header, raw: bytes, removable: bool, now: int):
    """A control batch: kept as it is, stamped with its delete horizon (the
    first pass that finds it removable), or gone (None) once that passed."""
    if not removable:
        return raw
    if header.attributes & _DELETE_HORIZON:
        return None if header.base_timestamp <= now else raw
    if not header.records_count:
        return None  # emptied earlier: written again only if still needed
    records = batch_records(raw, 0, len(raw))
    stamped = bytearray(build_batch(
        records, base_offset=header.base_offset, timestamp_type=header.timestamp_type,
        producer_id=header.producer_id, producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence, partition_leader_epoch=header.partition_leader_epoch,
        is_transactional=True, is_control=True, base_timestamp=now + cfg.delete_retention_ms,
    ))
    _ATTRIBUTES.pack_into(stamped, 21, header.attributes | _DELETE_HORIZON)
    _LAST_OFFSET_DELTA.pack_into(stamped, 23, header.last_offset_delta)
    _sign(stamped)
    return bytes(stamped)


def _clean_batch(cfg, header, raw: bytes, latest: dict[bytes, int], now: int):
    """(the batch to write or None, records removed)."""
    if not header.records_count:
        return None, 0  # an empty batch kept earlier: written again only if still needed
    records = batch_records(raw, 0, max(MAX_DECOMPRESSED_BYTES, cfg.max_message_bytes))
    kept = [
        r for r in records
        if (r.key is None or latest.get(r.key) == r.offset)
        and not (r.value is None and r.timestamp < now - cfg.delete_retention_ms)
    ]
    if len(kept) == len(records):
        return raw, 0
    if not kept:
        return None, len(records)
    rebuilt = bytearray(build_batch(
        kept, base_offset=header.base_offset, compression=header.compression,
        timestamp_type=header.timestamp_type, producer_id=header.producer_id,
        producer_epoch=header.producer_epoch, base_sequence=header.base_sequence,
        partition_leader_epoch=header.partition_leader_epoch,
        base_timestamp=header.base_timestamp, is_transactional=header.is_transactional,
    ))
    _LAST_OFFSET_DELTA.pack_into(rebuilt, 23, header.last_offset_delta)
    _sign(rebuilt)
    return bytes(rebuilt), len(records) - len(kept)


def empty_batch(header) -> bytes:
    """A batch with the header fields of `header` and no records (Kafka
    writes these for a producer's last batch, DefaultRecordBatch.writeEmptyHeader)."""
    out = bytearray(BATCH_HEADER_SIZE)
    _EMPTY.pack_into(
        out, 0, header.base_offset, BATCH_HEADER_SIZE - LOG_OVERHEAD,
        header.partition_leader_epoch, 2, 0, header.attributes & ~0x07,
        header.last_offset_delta, header.base_timestamp, header.max_timestamp,
        header.producer_id, header.producer_epoch, header.base_sequence, 0,
    )
    _sign(out)
    return bytes(out)


def _sign(batch: bytearray) -> None:
    _CRC.pack_into(batch, 17, crc32c(memoryview(batch)[21:]))


_EMPTY = struct.Struct(">qiibIhiqqqhii")
_LAST_OFFSET_DELTA = struct.Struct(">i")
_ATTRIBUTES = struct.Struct(">h")
_CRC = struct.Struct(">I")
