"""Log compaction: keep the latest record per key.

A pass over one PartitionLog whose topic has `cleanup.policy` containing
`compact`:
1. The cleanable range is every non-active segment whose newest record is
   older than `min.compaction.lag.ms`. The active segment is never cleaned.
2. Build the offset map: key -> latest offset, over the whole log (records
   in the active segment also supersede older ones), and the last five
   batches of every producer (the idempotence window, producer_state.WINDOW).
3. Group consecutive cleanable segments whose sizes add up to at most
   `segment.bytes` (Kafka's groupSegmentsBySize), so cleaned segments that
   shrank are merged instead of piling up empty; rewrite each group into
   `<first base>.log.cleaned`, keeping a record if it is the latest for its
   key, or has no key (Kafka refuses keyless records on compacted topics;
   Strom keeps them), and dropping tombstones (null values) older than
   `delete.retention.ms`. Kept records keep their offsets (gaps are
   allowed); a rewritten batch keeps its codec, producer fields, timestamp
   type and `last_offset_delta` (Kafka's overrideLastOffset), so the
   sequence range a producer's batch covers is what it was. Control and
   transactional batches are copied unchanged.
4. A batch left with no record is still written, as a header with no
   records, when it is one of its producer's last five (Kafka's
   retainLastBatchSequence keeps one; five make the producer state rebuilt
   at load exactly the one before the restart, so any retry in flight is
   recognised) or the group's last batch (the cleaned segment then ends
   where the group ended: offsets stay addressable and a crash mid-swap is
   finished by deleting what the swap covers).
5. Swap it in: `.cleaned` -> `.swap` -> `.log` (PartitionLog.replace_segments);
   a crash mid-way is finished or rolled back at load.

Runs on the maintenance thread; the log's lock is held only for the swap.
"""

import logging
import struct
from collections import deque

from strom.records.batch import BATCH_HEADER_SIZE, LOG_OVERHEAD, batch_records, build_batch, crc32c
from strom.records.codecs import MAX_DECOMPRESSED_BYTES
from strom.storage import files
from strom.storage.log import PartitionLog, now_ms
from strom.storage.producer_state import WINDOW

log = logging.getLogger(__name__)


# A producer that wrote nothing for this long is forgotten by the cleaner
# (Kafka's producer.id.expiration.ms): its last batches are no longer kept.
PRODUCER_ID_EXPIRATION_MS = 86_400_000
# Merging passes over the cleaned segments, each over fewer, smaller ones.
_MERGE_PASSES = 8


def clean(plog: PartitionLog, now: int | None = None) -> int:
    """Compact `plog` once; return the number of records removed."""
    now = now_ms() if now is None else now
    cfg = plog.config
    segments = plog.segments_snapshot()
    cleanable = [s for s in segments[:-1] if s.max_timestamp < now - cfg.min_compaction_lag_ms]
    if not any(not s.is_empty for s in cleanable):
        return 0
    limit = max(MAX_DECOMPRESSED_BYTES, cfg.max_message_bytes)  # as append allowed
    latest: dict[bytes, int] = {}
    last_batches: dict[int, deque] = {}
    for seg in segments:
        for _, header, raw in seg.batches():
            if header.producer_id >= 0 and header.max_timestamp >= now - PRODUCER_ID_EXPIRATION_MS:
                last_batches.setdefault(header.producer_id, deque(maxlen=WINDOW)).append(
                    header.base_offset)
            if header.is_control:
                continue
            for r in batch_records(raw, 0, limit):
                if r.key is not None:
                    latest[r.key] = r.offset
    retained = {base for bases in last_batches.values() for base in bases}
    removed = 0
    for group in _groups(segments, cleanable, cfg.segment_bytes):
        removed += _clean_group(plog, group, latest, retained, now)
    # Groups were sized by what the segments held before; what they hold now
    # is often far less, so merge the cleaned neighbours in the same pass.
    for _ in range(_MERGE_PASSES):
        segments = plog.segments_snapshot()
        cleanable = [s for s in segments[:-1] if s.max_timestamp < now - cfg.min_compaction_lag_ms]
        groups = [g for g in _groups(segments, cleanable, cfg.segment_bytes) if len(g) > 1]
        if not groups:
            break
        for group in groups:
            removed += _clean_group(plog, group, latest, retained, now)
    return removed


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
                 now: int) -> int:
    out: list[bytes] = []
    removed = 0
    final = None  # base offset of the group's last batch
    for seg in group:
        for _, header in seg.headers():
            final = header.base_offset
    for seg in group:
        for _, header, raw in seg.batches():
            kept_raw, dropped = _clean_batch(plog.config, header, raw, latest, now)
            removed += dropped
            if kept_raw is None and (header.base_offset in retained or header.base_offset == final):
                kept_raw = empty_batch(header)
            if kept_raw is not None:
                out.append(kept_raw)
    if not removed and len(group) == 1:
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
    plog.replace_segments(group, cleaned_path)
    log.info("%s: compacted %d segment(s) from %d into one, removed %d records", plog.directory,
             len(group), first.base_offset, removed)
    return removed


def _clean_batch(cfg, header, raw: bytes, latest: dict[bytes, int], now: int):
    """(the batch to write or None, records removed)."""
    if header.is_control or header.is_transactional:
        return raw, 0
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
        base_timestamp=header.base_timestamp,
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
_CRC = struct.Struct(">I")
